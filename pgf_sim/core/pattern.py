"""The N:M pattern value type and its pure arithmetic (no torch).

Vocabulary (fixed project-wide): ``N:M`` means N weights *kept* out of every M consecutive
weights along the reduction dimension. density = N/M, sparsity = 1 - N/M. Tools that count
pruned weights (Wanda, torch.ao's zeros_per_block) are converted at the boundary.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from .errors import ConfigError

MAX_M = 1024  # largest group size accepted anywhere (patterns, hardware YAML, schedules)


_DIGITS = re.compile(r"[0-9]{1,18}")

@dataclass(frozen=True, order=True)
class NM:
    """N kept out of every M consecutive weights of the reduction dimension."""

    n: int
    m: int

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or isinstance(self.m, bool) or not (
            isinstance(self.n, int) and isinstance(self.m, int)
        ):
            raise ConfigError(f"N:M pattern needs integers, got n={self.n!r}, m={self.m!r}")
        if not 1 <= self.n <= self.m:
            raise ConfigError(f"N:M pattern {self.n}:{self.m} is invalid: need 1 <= N <= M")
        if self.m > MAX_M:
            raise ConfigError(f"N:M pattern {self.n}:{self.m}: M must be <= {MAX_M} (group sizes beyond that "
                              "have no hardware or training use; metadata alone would be >= 11 bits per value)")

    @classmethod
    def parse(cls, value: "str | NM | tuple[int, int] | list[int]") -> "NM":
        """Parse ``"2:4"`` (also ``"dense"`` -> 1:1, an ``NM``, or ``(2, 4)``) into an ``NM``."""
        if isinstance(value, NM):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            # whole numbers only: int() would turn [2.9, 4.1] into 2:4 and [true, 4] into 1:4
            if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return cls(value[0], value[1])
        if isinstance(value, str) and len(value) <= 64:
            text = value.strip().lower()
            if text == "dense":
                return DENSE
            parts = text.split(":")
            # ASCII digits only: str.isdigit() also accepts '²', '٢' and '２', which int() either
            # rejects with a traceback or silently reads as 2
            if len(parts) == 2 and all(_DIGITS.fullmatch(p.strip()) for p in parts):
                return cls(int(parts[0]), int(parts[1]))
        hint = ""
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 1:8 as a base-60 integer (1*60 + 8 = 68).
            hint = "; in YAML quote patterns (\"1:8\"): unquoted, 1:8 is read as the number 68"
        shown = repr(value)[:80].encode("ascii", "backslashreplace").decode("ascii")
        raise ConfigError(f"cannot parse N:M pattern {shown}: expected 'N:M' with ASCII digits (e.g. '2:4'), "
                          f"[N, M] whole numbers, or 'dense'{hint}")

    @property
    def density(self) -> float:
        return self.n / self.m

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    @property
    def is_dense(self) -> bool:
        return self.n == self.m

    @property
    def index_bits(self) -> int:
        """Metadata bits per kept value: the index of the value inside its group, ceil(log2 M).

        2 bits for 2:4 as in NVIDIA's ``mma.sp`` format; SCALE-Sim v3 and Sparseloop model
        general N:M the same way.
        """
        return 0 if self.is_dense else math.ceil(math.log2(self.m))

    def storage_fraction(self, value_bits: int) -> float:
        """Compressed size / dense size for values of ``value_bits`` bits (values + metadata).

        2:4 fp16: (2*16 + 2*2) / (4*16) = 36/64 = 56.25%, PyTorch's semi-structured layout.
        """
        if self.is_dense:
            return 1.0
        return self.n * (value_bits + self.index_bits) / (self.m * value_bits)

    def complies_with(self, hw: "NM") -> bool:
        """True if every tensor with this pattern is also a valid ``hw`` layout.

        Worst case over all placements: each aligned group of ``self.m`` holds at most
        ``self.n`` non-zeros; an aligned window of ``hw.m`` must hold at most ``hw.n``.
        So 1:8 complies with 2:4 (a 4-window holds <= 1), 4:8 does not (all 4 may fall in
        one 4-window), 1:8 complies with 2:16 (a 16-window spans two 8-groups).
        """
        return _worst_case_window(self.n, self.m, hw.m) <= hw.n

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


DENSE = NM(1, 1)


@lru_cache(maxsize=4096)
def _worst_case_window(n: int, m: int, window: int) -> int:
    """Max non-zeros any aligned ``window`` can hold when each aligned ``m``-group holds <= n.

    Windows start at multiples of ``window``; relative to the m-group it starts in, a window
    starts at an offset that is a multiple of g = gcd(m, window), and every such offset occurs
    (k * window mod m runs over all multiples of g). At offset o the window covers the group's
    last min(m - o, window) places, then whole groups, then a partial one; each group adds at
    most min(n, overlap). O(m / g) steps, however large lcm(m, window) is.
    """
    worst = 0
    for offset in range(0, m, math.gcd(m, window)):
        first = min(m - offset, window)
        full, last = divmod(window - first, m)
        worst = max(worst, min(n, first) + full * n + min(n, last))
    return worst
