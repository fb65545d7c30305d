"""Tiling models behind the cost model: cycles on matrix arrays, DRAM and on-chip traffic.

Pure NumPy on broadcastable arrays; ``cost.py`` combines them. Split so that the parts that do
not depend on the tile shape are computed once per op, not once per candidate tile.
"""
from __future__ import annotations

import numpy as np


def compute_cycles(m, n, k_steps, products_per_launch, launches, *, tile_m, tile_n, tile_k, units,
                   macs_per_cycle_per_unit, fill_drain_cycles, weight_load_cycles):
    """(cycles, tiles_m, tiles_n) of the matrix arrays for ``launches`` launches of a GEMM.

    Each launch splits every (m x n) output into tile_m x tile_n tiles; tiles are spread over
    ``units`` in waves (wave quantisation: a partly filled last wave costs a full wave; NVIDIA
    "Matrix Multiplication Background" guide). Per K step a tile costs rows x tile_n x tile_k
    / MACs-per-cycle, but at least ``weight_load_cycles`` (a weight-stationary array shifts in
    its next weight block one row per cycle, double-buffered as in the TPU v1 paper, Jouppi et
    al. ISCA 2017), plus one pipeline fill/drain per tile (rows + cols cycles, SCALE-Sim).
    Columns are padded to tile_n and K to whole K steps (tile quantisation); rows stream, so a
    single short tile costs only its rows.
    ``k_steps`` = ceil(executed K / tile_k), see ``k_steps``.
    """
    tiles_m = np.ceil(m / tile_m)
    tiles_n = np.ceil(n / tile_n)
    rows = np.minimum(m, tile_m)
    step_cycles = np.maximum(rows * tile_n * tile_k / macs_per_cycle_per_unit, weight_load_cycles)
    tile_cycles = k_steps * step_cycles + fill_drain_cycles
    waves = np.ceil(tiles_m * tiles_n * products_per_launch / units)
    return waves * tile_cycles * launches, tiles_m, tiles_n


def k_steps(k_exec, tile_k):
    """K steps a tile takes: executed (compressed) K padded up to whole steps of tile_k."""
    return np.ceil(k_exec / tile_k)


def dram_traffic(a_bytes, b_bytes, c_bytes, m, n, bytes_per_el, *, onchip_bytes):
    """DRAM bytes of one GEMM (M x K) @ (K x N) -> (M x N) with operands of the given sizes.

    Every operand once when the working set fits on chip, or when the smaller input fits in
    half of it (it stays resident while the other streams through). Otherwise blocked
    re-reads: with a T x T output block held on chip (T = sqrt(capacity / 2 elements)), A is
    read ceil(N/T) times and B ceil(M/T) times -- the classic blocked-GEMM traffic, which meets
    the Hong & Kung (1981) O(MNK / sqrt(S)) I/O lower bound up to a constant.
    """
    compulsory = a_bytes + b_bytes + c_bytes
    once = (compulsory <= onchip_bytes) | (np.minimum(a_bytes, b_bytes) <= 0.5 * onchip_bytes)
    block = np.maximum(np.floor(np.sqrt(onchip_bytes / (2.0 * bytes_per_el))), 1.0)
    blocked = a_bytes * np.ceil(n / block) + b_bytes * np.ceil(m / block) + c_bytes
    return np.where(once, compulsory, blocked)


def onchip_traffic(a_bytes, b_bytes, c_bytes, tiles_m, tiles_n):
    """On-chip buffer bytes: each output tile reads its A row panel and B column panel once
    (A is read once per column of tiles, B once per row of tiles) and C is written once."""
    return a_bytes * tiles_n + b_bytes * tiles_m + c_bytes


def memory_occupancy(ctas, k_steps, units, *, split_k):
    """Fraction of the units that stream operands from DRAM during a kernel, in (0, 1].

    A unit's load path sustains about 1/units of the DRAM bandwidth, so a kernel with fewer
    thread blocks (``ctas``) than units leaves bandwidth unused. Where ``split_k`` is true the
    kernel splits K into up to ``k_steps`` slices (split-K / stream-K, as cuBLAS and CUTLASS do
    for skinny GEMMs) until every unit has work; partial sums are reduced on chip.
    """
    ctas = np.maximum(ctas, 1.0)
    split = np.where(split_k, np.minimum(np.ceil(units / ctas), np.maximum(k_steps, 1.0)), 1.0)
    return np.minimum(ctas * split / units, 1.0)
