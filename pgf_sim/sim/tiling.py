"""Tiling models behind the cost model: cycles on matrix arrays and DRAM re-reads.

Pure NumPy on broadcastable arrays; see ``cost.py`` for how they are combined.
"""
from __future__ import annotations

import numpy as np


def compute_cycles(m, n, k_exec, products_per_launch, launches, *, tile_m, tile_n, tile_k, units,
                   macs_per_cycle_per_unit, fill_drain_cycles):
    """Cycles of the matrix arrays for ``launches`` launches of ``products_per_launch`` GEMMs.

    Each launch splits every (m x n) output into tile_m x tile_n tiles; tiles are spread over
    ``units`` in waves (wave quantisation: a partly filled last wave costs a full wave; NVIDIA
    "Matrix Multiplication Background" guide). A tile costs rows x tile_n x K_pad / MACs-per-cycle
    plus fill/drain per K step (a systolic array fills and drains once per weight block:
    rows + cols cycles, SCALE-Sim). Columns are padded to tile_n and K to the K step (tile
    quantisation); rows stream, so a single short tile costs only its rows.
    """
    tiles_m = np.ceil(m / tile_m)
    rows = np.minimum(m, tile_m)
    k_steps = np.ceil(k_exec / tile_k)
    tile_cycles = rows * tile_n * (k_steps * tile_k) / macs_per_cycle_per_unit + fill_drain_cycles * k_steps
    tiles = tiles_m * np.ceil(n / tile_n) * products_per_launch
    waves = np.ceil(tiles / units)
    return waves * tile_cycles * launches


def dram_traffic(a_bytes, b_bytes, c_bytes, m, n, bytes_per_el, *, onchip_bytes, tile_m, tile_n):
    """(DRAM bytes, on-chip buffer bytes) of one GEMM (M x K) @ (K x N) -> (M x N).

    DRAM: every operand once when the working set fits on chip, or when the smaller input fits
    in half of it (it stays resident while the other streams through). Otherwise blocked
    re-reads: with a T x T output block held on chip (T = sqrt(capacity / 2 elements)), A is
    read ceil(N/T) times and B ceil(M/T) times -- the classic blocked-GEMM traffic, which meets
    the Hong & Kung (1981) O(MNK / sqrt(S)) I/O lower bound up to a constant.
    On-chip: each tile_m x tile_n output tile reads its A row panel and B column panel from
    the buffer once, and C is written once.
    """
    compulsory = a_bytes + b_bytes + c_bytes
    once = (compulsory <= onchip_bytes) | (np.minimum(a_bytes, b_bytes) <= 0.5 * onchip_bytes)
    block = np.maximum(np.floor(np.sqrt(onchip_bytes / (2.0 * bytes_per_el))), 1.0)
    blocked = a_bytes * np.ceil(n / block) + b_bytes * np.ceil(m / block) + c_bytes
    dram = np.where(once, compulsory, blocked)
    onchip = a_bytes * np.ceil(n / tile_n) + b_bytes * np.ceil(m / tile_m) + c_bytes
    return dram, onchip
