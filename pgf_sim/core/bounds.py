"""The bounds of every numeric command-line flag, checked in one place before a command runs.

argparse turns ``--temperature nan`` into a float NaN and ``--chars 99999999999`` into an int
without a word; these then surface as ``nanx`` in a table, invalid JSON (``Infinity``), an
OverflowError deep in NumPy, or a command that runs for days. ``check_flags`` refuses them in
one line naming the flag, the value and the valid range. YAML values go through the strict
loader (``pgf_sim.core.config``: finite floats, bounded integers), hardware fields through
their loader.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from .errors import ConfigError

MAX_DIM = 2**31 - 1  # batch, sequence length, GEMM sizes (as pgf_sim.sim.workloads.MAX_DIM)


class Bound(NamedTuple):
    low: float
    high: float
    whole: bool = False
    low_open: bool = False  # the low end itself is excluded (alpha > 0)

    def describe(self) -> str:
        left = "(" if self.low_open else "["
        return f"{left}{_num(self.low)}, {_num(self.high)}]"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


# argparse dest -> bound; a flag that is absent (None) or "auto" is left alone
FLAGS: dict[str, Bound] = {
    "temperature": Bound(1e-3, 1e3),
    "chars": Bound(1, 1_000_000, whole=True),
    "seed": Bound(0, 2**32 - 1, whole=True),
    "budget": Bound(0.0, 1e9),
    "limit": Bound(-1e12, 1e12),
    "max_drop": Bound(0.0, 1e9),
    "alpha": Bound(0.0, 0.5, low_open=True),
    "finetune_steps": Bound(0, 10_000_000, whole=True),
    "threads": Bound(1, 4096, whole=True),
    "batch": Bound(1, MAX_DIM, whole=True),
    "seq_len": Bound(1, MAX_DIM, whole=True),
    "steps": Bound(1, 1_000_000_000, whole=True),
    "max_footprint": Bound(1.0, 1e18),
}


def check_flags(args: Any) -> None:
    """Refuse any numeric flag of ``args`` (an argparse namespace) outside ``FLAGS``."""
    for dest, bound in FLAGS.items():
        value = getattr(args, dest, None)
        if value is None or isinstance(value, str) or isinstance(value, bool):
            continue
        check_number(f"--{dest.replace('_', '-')}", value, bound)
    batch, seq = getattr(args, "batch", None), getattr(args, "seq_len", None)
    if isinstance(batch, int) and isinstance(seq, int) and batch * seq > MAX_DIM:
        raise ConfigError(f"--batch {batch} x --seq-len {seq} = {batch * seq} rows, over {MAX_DIM} "
                          "(a GEMM dimension must fit in 32 bits)")


def check_number(name: str, value: float, bound: Bound) -> float:
    """``value`` if it is finite and inside ``bound``; else a ConfigError naming ``name``."""
    what = "a whole number" if bound.whole else "a finite number"
    if not isinstance(value, (int, float)) or not math.isfinite(value) or (bound.whole and value != int(value)):
        raise ConfigError(f"{name} must be {what} in {bound.describe()}, got {value!r}")
    low_ok = value > bound.low if bound.low_open else value >= bound.low
    if not low_ok or value > bound.high:
        raise ConfigError(f"{name} must be {what} in {bound.describe()}, got {value!r}")
    return value
