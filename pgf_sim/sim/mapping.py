"""Which N:M pattern the hardware actually executes for a layer's weight pattern.

Rule: a layer runs at the rate of the *best* native hardware pattern it complies with
(``NM.complies_with``: every tensor with the layer's pattern is also a valid layout of the
hardware pattern, e.g. 1:8 is a valid 2:4 layout, so an A100 runs a 1:8 layer at its 2:4
rate). Best = fewest executed MACs (lowest density), ties broken by smaller storage. When no
native pattern fits, the layer runs dense; its weights are stored compressed or dense as the
hardware's ``sparse.unsupported`` says.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..core.pattern import NM
from .hardware import Hardware

MODE_DENSE = 0  # the layer itself is dense
MODE_NATIVE = 1  # runs on a native sparse pattern (compressed K, compressed storage)
MODE_DENSE_COMPRESSED = 2  # no native fit: dense math, weights stored in the layer's N:M format
MODE_DENSE_FALLBACK = 3  # no native fit: dense math on dense-stored weights
MODE_NAMES = ("dense", "native", "dense math, compressed storage", "dense, no native pattern")


@lru_cache(maxsize=65536)
def best_native(n: int, m: int, native: tuple[NM, ...]) -> NM | None:
    """The native pattern a layer with pattern n:m runs on, or None if none fits."""
    layer = NM(n, m)
    fits = [p for p in native if layer.complies_with(p)]
    if not fits:
        return None
    return min(fits, key=lambda p: (p.density, p.storage_fraction(16), p.m))


def map_patterns(pat_n: np.ndarray, pat_m: np.ndarray, hw: Hardware) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Executed pattern and mode per layer.

    pat_n, pat_m: integer arrays of any (equal) shape; dense layers have n == m.
    Returns ``(exec_n, exec_m, mode)`` of the same shape: the pattern the arrays execute
    (1:1 when dense math) and one of the ``MODE_*`` codes (names in ``MODE_NAMES``).
    Vectorised: compliance is decided once per distinct pattern, then gathered.
    """
    exec_n, exec_m, mode = map_patterns_many(pat_n, pat_m, [hw])
    return exec_n[0], exec_m[0], mode[0]


def map_patterns_many(pat_n: np.ndarray, pat_m: np.ndarray, hws) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``map_patterns`` for several targets at once: arrays of shape (H,) + pat_n.shape."""
    pat_n = np.asarray(pat_n, dtype=np.int64)
    pat_m = np.asarray(pat_m, dtype=np.int64)
    if pat_n.shape != pat_m.shape:
        raise ValueError(f"pat_n shape {pat_n.shape} != pat_m shape {pat_m.shape}")
    # One integer key per pattern (N < 2**31): a 1-D unique is far cheaper than unique(axis=1).
    keys, inverse = np.unique(pat_n.ravel() << 32 | pat_m.ravel(), return_inverse=True)
    pairs = list(zip((keys >> 32).tolist(), (keys & 0xFFFFFFFF).tolist()))
    u_n = np.ones((len(hws), len(pairs)), dtype=np.int64)
    u_m = np.ones((len(hws), len(pairs)), dtype=np.int64)
    u_mode = np.zeros((len(hws), len(pairs)), dtype=np.int8)
    for h, hw in enumerate(hws):
        native = hw.sparse.native_patterns
        fallback = MODE_DENSE_COMPRESSED if hw.sparse.unsupported == "dense_compressed" else MODE_DENSE_FALLBACK
        for i, (n, m) in enumerate(pairs):
            if n == m:
                continue
            hit = best_native(n, m, native)
            if hit is None:
                u_mode[h, i] = fallback
            else:
                u_n[h, i], u_m[h, i], u_mode[h, i] = hit.n, hit.m, MODE_NATIVE
    shape = (len(hws),) + pat_n.shape
    inverse = inverse.ravel()
    return u_n[:, inverse].reshape(shape), u_m[:, inverse].reshape(shape), u_mode[:, inverse].reshape(shape)


def describe_mapping(pat_n: np.ndarray, pat_m: np.ndarray, hw: Hardware) -> list[str]:
    """Per-layer text such as ``"1:8 -> 2:4 (native)"`` or ``"1:3 -> dense (no native pattern)"``."""
    exec_n, exec_m, mode = map_patterns(pat_n, pat_m, hw)
    out = []
    for n, m, en, em, md in zip(np.ravel(pat_n), np.ravel(pat_m), exec_n.ravel(), exec_m.ravel(), mode.ravel()):
        layer = "dense" if n == m else f"{n}:{m}"
        if md == MODE_NATIVE:
            out.append(f"{layer} -> {en}:{em} (native)")
        elif md == MODE_DENSE:
            out.append("dense")
        else:
            out.append(f"{layer} -> {MODE_NAMES[md]}")
    return out
