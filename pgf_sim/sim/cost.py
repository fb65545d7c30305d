"""Per-layer cost of a workload on a hardware target: FLOPs, bytes, time, bound, energy.

Pure, vectorised NumPy over layers (``evaluate``) and over hardware x patterns x layers
(``evaluate_grid``). Inputs are never mutated. Model, per op:

- GEMM (weight x activation, ``kind`` 0) and matmul (activation x activation, ``kind`` 1) run
  on the matrix arrays. The weight's N:M pattern is mapped to an executed pattern
  (``mapping.map_patterns``); sparse execution compresses K to K*n/m.
  Compute time = waves x cycles per tile / clock / efficiency (``tiling.compute_cycles``):
  output tiles of tile_m x tile_n spread over ``units``, K padded to the K step, fill/drain
  per K step, small shapes padded (tile quantisation and wave quantisation as in NVIDIA's
  "Matrix Multiplication Background" performance guide).
- Element-wise ops (``OpCode.ELEMENTWISE``) run on the vector unit and are normally memory-bound.
- Memory time = DRAM bytes / (bandwidth x efficiency), or on-chip traffic / on-chip bandwidth
  if larger. DRAM bytes = compressed weights (values + metadata) + activations in/out, plus
  re-reads when the working set exceeds on-chip memory (``tiling.dram_traffic``).
- Time = max(compute, memory) (+ the unhidden part of the shorter, ``compute_memory_overlap``)
  (roofline, Williams et al. CACM 2009) + a per-kernel device floor (``graph_launch_overhead_s``).
  Memory time adds the first-byte DRAM latency once per kernel and divides by the occupancy of
  the units (``tiling.memory_occupancy``: split-K for dense kernels, none for sparse ones).
  Native sparse kernels read their compressed weights at ``sparse_memory_bw_fraction`` of the
  DRAM bandwidth (``memory_bw_fraction`` where unset) and add ``sparse_tile_overhead_cycles``
  per output tile.
- The runtime (``RUNTIMES``) decides what else an op pays. ``graph``: nothing (CUDA graphs, every
  op its own kernel). ``fused``: as graph, with element-wise ops in their producer's epilogue and
  FlashAttention. ``eager``: the host issues each op for ``launch_overhead_s`` (+
  ``sparse_call_overhead_s`` per native sparse call) while the GPU runs the previous ones, so an
  op costs max(host, device time), not their sum; bound "overhead" when the host is longer.
  Every term, its source and the validation: docs/simulator.md.
- Energy = executed MACs x energy/MAC + element-wise FLOPs x energy/FLOP + DRAM bytes x
  energy/byte + on-chip bytes x energy/byte (the Accelergy/Sparseloop style action counts).

Approximations, stated so they can be judged: a GEMM's ``batch`` is that many separate
launches; a matmul's ``batch`` is one batched launch; an op's ``count`` identical instances
(merged transformer blocks) are costed once and scaled, launches included; in the eager and
graph runtimes element-wise ops are one kernel each, in the fused runtime they run in their
producer's epilogue; the eager max(host, device) is taken per op (a host that fell behind
on tiny ops does not catch up on a later long kernel); sparse kernels pad rows and K only on
native sparse execution;
static/idle power is not modelled (energy is dynamic only).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from ..core.errors import ConfigError
from ..core.pattern import NM
from .hardware import Hardware
from .mapping import MODE_DENSE_COMPRESSED, MODE_NATIVE, map_patterns, map_patterns_many
from .ops import ATTN_AV, ATTN_SCORE, ATTN_SOFTMAX, DTYPE_BITS, DTYPES, OpCode, OpTable
from .tiling import compute_cycles, dram_traffic, k_steps, memory_occupancy, onchip_traffic

BOUND_COMPUTE, BOUND_MEMORY, BOUND_OVERHEAD = 0, 1, 2
BOUND_NAMES = ("compute", "memory", "overhead")
# Execution runtimes (docs/simulator.md, "Runtimes").
# eager: framework eager mode (PyTorch): one kernel per op, each issued by the host for
#   launch_overhead_s (+ sparse_call_overhead_s per native sparse call) while the GPU runs the
#   previous one, so an op costs max(host, device); attention materialises the S^2 scores.
# graph: CUDA graphs / torch.compile(mode="reduce-overhead"): the same kernels, no host cost,
#   a per-kernel device floor (graph_launch_overhead_s).
# fused: a serving engine: graph replay, element-wise ops fused into their producer GEMM's
#   epilogue, FlashAttention-style attention (one kernel, scores never leave the chip, a causal
#   mask skips the masked half of the products: Dao et al., FlashAttention, NeurIPS 2022).
RUNTIMES = ("eager", "graph", "fused")
PROFILES = RUNTIMES  # the former name (pgf-sim simulate --profile), kept as an alias


class LayerCost(NamedTuple):
    """Per-layer results, each a numpy array of shape (L,) (``evaluate``) or (H, [P,] L) (grid)."""

    dense_flops: np.ndarray  # 2*M*N*K*batch (matrix ops) or elements*flops_per_element
    exec_flops: np.ndarray  # FLOPs the arrays execute at the executed pattern (no padding)
    dram_bytes: np.ndarray  # DRAM/HBM traffic incl. re-reads, compressed weights + metadata
    weight_bytes: np.ndarray  # stored weight footprint (compressed when stored compressed)
    compute_time_s: np.ndarray
    memory_time_s: np.ndarray
    latency_s: np.ndarray
    bound: np.ndarray  # int8: 0 compute, 1 memory, 2 overhead
    energy_j: np.ndarray
    exec_pat_n: np.ndarray
    exec_pat_m: np.ndarray


class HwArrays(NamedTuple):
    """Hardware parameters as float arrays of shape (H,), gathered once per call."""

    clock_hz: np.ndarray
    units: np.ndarray
    arrays_per_unit: np.ndarray
    macs_by_dtype: np.ndarray  # (H, D): MACs/cycle/array per ops.DTYPES entry (emulation applied; nan: none)
    mac_j_by_dtype: np.ndarray  # (H, D)
    tile_m: np.ndarray  # (H, C): candidate tiles, short lists padded with their first entry
    tile_n: np.ndarray  # (H, C)
    tile_k: np.ndarray
    fill_drain_cycles: np.ndarray
    weight_load_cycles: np.ndarray
    vector_flops_per_s: np.ndarray
    dram_bw: np.ndarray
    onchip_bytes: np.ndarray
    onchip_bw: np.ndarray
    vector_flop_j: np.ndarray
    dram_byte_j: np.ndarray
    onchip_byte_j: np.ndarray
    eff_dense: np.ndarray
    eff_sparse: np.ndarray
    eff_memory: np.ndarray
    eff_sparse_memory: np.ndarray  # native sparse kernels' DRAM fraction (eff_memory where unset)
    launch_s: np.ndarray  # eager host cost per op
    graph_launch_s: np.ndarray  # device floor per kernel (launch_s where the target has none)
    has_graph_floor: np.ndarray  # bool: the target states graph_launch_overhead_s
    dram_latency_s: np.ndarray  # 0 where the target has none
    sparse_call_s: np.ndarray  # 0 where none
    sparse_tile_cycles: np.ndarray  # 0 where none
    overlap: np.ndarray  # compute/memory overlap, 1 where none
    meta_bits: np.ndarray  # nan: ceil(log2 M) of the executed pattern
    pad_rows: np.ndarray
    pad_k_bytes: np.ndarray


def hw_arrays(hws: Sequence[Hardware], dtype: str | None = None) -> HwArrays:
    def col(get) -> np.ndarray:
        return np.array([float(get(h)) for h in hws], dtype=np.float64)

    def by_dtype(table_of) -> np.ndarray:
        # Strict: a dtype the target neither has nor explicitly emulates stays nan (an error
        # when an op of that dtype reaches the matrix arrays).
        out = np.full((len(hws), len(DTYPES)), np.nan)
        for i, h in enumerate(hws):
            table = table_of(h)
            for j, dt in enumerate(DTYPES):
                key = dt if dt in h.compute.macs_per_cycle_per_array else h.compute.emulated_dtypes.get(dt)
                if key is not None and key in table:
                    out[i, j] = table[key].value
        return out

    if dtype is not None:
        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
        for h in hws:
            h.matrix_dtype(dtype)  # raises, naming the valid dtypes
    c = lambda h: h.compute  # noqa: E731
    n_tiles = max(len(h.compute.tile_shapes.mn) for h in hws)
    tiles = np.array([[*h.compute.tile_shapes.mn, *[h.compute.tile_shapes.mn[0]] * (n_tiles - len(h.compute.tile_shapes.mn))]
                      for h in hws], dtype=np.float64)  # (H, C, 2)
    opt = lambda q, default=np.nan: default if q is None else q.value  # noqa: E731
    eff = lambda h: h.efficiency  # noqa: E731
    return HwArrays(
        clock_hz=col(lambda h: c(h).clock_hz), units=col(lambda h: c(h).units),
        arrays_per_unit=col(lambda h: c(h).arrays_per_unit),
        macs_by_dtype=by_dtype(lambda h: h.compute.macs_per_cycle_per_array),
        mac_j_by_dtype=by_dtype(lambda h: h.energy.mac_j),
        tile_m=tiles[..., 0], tile_n=tiles[..., 1], tile_k=col(lambda h: c(h).tile_k),
        fill_drain_cycles=col(lambda h: c(h).fill_drain_cycles),
        weight_load_cycles=col(lambda h: c(h).weight_load_cycles),
        vector_flops_per_s=col(lambda h: c(h).vector_flops_per_s),
        dram_bw=col(lambda h: h.memory.dram_bw_bytes_per_s), onchip_bytes=col(lambda h: h.memory.onchip_bytes),
        onchip_bw=col(lambda h: h.memory.onchip_bw_bytes_per_s),
        vector_flop_j=col(lambda h: h.energy.vector_flop_j), dram_byte_j=col(lambda h: h.energy.dram_byte_j),
        onchip_byte_j=col(lambda h: h.energy.onchip_byte_j),
        eff_dense=col(lambda h: eff(h).dense_compute_fraction),
        eff_sparse=col(lambda h: eff(h).sparse_compute_fraction),
        eff_memory=col(lambda h: eff(h).memory_bw_fraction),
        eff_sparse_memory=col(lambda h: opt(eff(h).sparse_memory_bw_fraction, eff(h).memory_bw_fraction.value)),
        launch_s=col(lambda h: eff(h).launch_overhead_s),
        graph_launch_s=col(lambda h: opt(eff(h).graph_launch_overhead_s, eff(h).launch_overhead_s.value)),
        has_graph_floor=np.array([eff(h).graph_launch_overhead_s is not None for h in hws], dtype=bool),
        dram_latency_s=col(lambda h: opt(eff(h).dram_latency_s, 0.0)),
        sparse_call_s=col(lambda h: opt(eff(h).sparse_call_overhead_s, 0.0)),
        sparse_tile_cycles=col(lambda h: opt(eff(h).sparse_tile_overhead_cycles, 0.0)),
        overlap=col(lambda h: opt(eff(h).compute_memory_overlap, 1.0)),
        meta_bits=np.array([opt(h.sparse.metadata_bits_per_value) for h in hws], dtype=np.float64),
        pad_rows=np.array([opt(h.sparse.pad_rows) for h in hws], dtype=np.float64),
        pad_k_bytes=np.array([opt(h.sparse.pad_k_bytes) for h in hws], dtype=np.float64),
    )


def busy_time(compute_s, memory_s, overlap):
    """Busy time of a kernel: the longer of compute and memory plus the part of the shorter that
    is not hidden under it (``overlap`` 1: the roofline max, Williams et al. CACM 2009)."""
    return np.maximum(compute_s, memory_s) + (1.0 - overlap) * np.minimum(compute_s, memory_s)


def _with_dtype(table: OpTable, dtype: str | None) -> OpTable:
    if dtype is None:
        return table
    code = DTYPES.index(dtype)
    return table._replace(dtype_code=np.full_like(table.dtype_code, code),
                          value_bits=np.full_like(table.value_bits, DTYPE_BITS[dtype]))


def check_runtime(runtime: str) -> str:
    """``runtime`` itself, or an error naming the valid ones."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)} (docs/simulator.md, 'Runtimes')")
    return runtime


# Calibration only (not a deployment runtime): one call timed alone between synchronisations,
# so the host cost and the kernel add up (calibrate.TIMING_RUNTIME, timing "call").
CALL_RUNTIME = "call"


def resolve_runtime(runtime: str | None, profile: str | None) -> str:
    """The runtime a caller asked for (``profile`` is its former name; default eager)."""
    if profile is not None and runtime is not None and profile != runtime:
        raise ConfigError(f"runtime {runtime!r} and profile {profile!r} disagree; give one (profile is the old name)")
    chosen = runtime or profile or "eager"
    return chosen if chosen == CALL_RUNTIME else check_runtime(chosen)


def evaluate(table: OpTable, hw: Hardware, *, dtype: str | None = None, runtime: str | None = None,
             profile: str | None = None) -> LayerCost:
    """Cost of every op of ``table`` on ``hw``; arrays of shape (L,).

    ``dtype`` replaces every op's dtype (rate and bytes); ``runtime`` is one of ``RUNTIMES``
    (default eager; ``profile`` is its former name)."""
    runtime = resolve_runtime(runtime, profile)
    table = _with_dtype(table, dtype)
    exec_n, exec_m, mode = map_patterns(table.pat_n, table.pat_m, hw)
    out = _evaluate_core(table, table.pat_n, table.pat_m, exec_n[None], exec_m[None], mode[None],
                         hw_arrays([hw], dtype), [hw.name], runtime)
    return LayerCost(*(a[0] for a in out))


def evaluate_grid(
    table: OpTable,
    hws: Sequence[Hardware],
    *,
    patterns: Sequence[NM] | None = None,
    dtype: str | None = None,
    runtime: str | None = None,
    profile: str | None = None,
) -> LayerCost:
    """Cost over hardware x (patterns x) layers in one vectorised pass.

    Without ``patterns``: arrays of shape (H, L). With ``patterns`` (P of them): every GEMM's
    weight pattern is replaced by each pattern in turn, giving arrays of shape (H, P, L).
    A GEMM whose K is not a multiple of the pattern's M cannot hold that pattern and keeps
    its own (as training's ``skip_indivisible`` leaves such layers alone); matmuls and
    element-wise ops are never weight-sparse.
    """
    runtime = resolve_runtime(runtime, profile)
    table = _with_dtype(table, dtype)
    hp = hw_arrays(hws, dtype)
    if patterns is None:
        return _grid(table, table.pat_n, table.pat_m, hws, hp, runtime)
    # Ops without a weight pattern (matmuls, element-wise) do not change with the pattern:
    # cost them once per target and broadcast over the pattern axis. Element-wise ops are a
    # group of their own so that they skip the tile search of the matrix arrays.
    patterns = [NM.parse(p) for p in patterns]  # "2:4" strings from Python callers
    pn = np.array([p.n for p in patterns], dtype=np.int64)[:, None]
    pm = np.array([p.m for p in patterns], dtype=np.int64)[:, None]
    out = None
    for kind in OpCode:
        idx = np.flatnonzero(table.kind == kind)
        if not len(idx):
            continue
        sub = OpTable(*(col[idx] for col in table))
        if kind == OpCode.GEMM:
            applies = sub.k[None, :] % pm == 0
            part = _grid(sub, np.where(applies, pn, sub.pat_n[None, :]), np.where(applies, pm, sub.pat_m[None, :]),
                         hws, hp, runtime)
        else:
            part = _grid(sub, sub.pat_n[None, :], sub.pat_m[None, :], hws, hp, runtime)
        if out is None:
            out = [np.empty((len(hws), len(patterns), table.n_ops), dtype=a.dtype) for a in part]
        for dest, src in zip(out, part):
            dest[:, :, idx] = src
    return LayerCost(*out)


def _grid(table: OpTable, pat_n: np.ndarray, pat_m: np.ndarray, hws: Sequence[Hardware], hp: HwArrays,
          runtime: str) -> LayerCost:
    if (table.kind == OpCode.GEMM).any():
        exec_n, exec_m, mode = map_patterns_many(pat_n, pat_m, hws)
    else:  # nothing weight-sparse: everything executes dense
        exec_n = exec_m = np.ones((len(hws),) + pat_n.shape, dtype=np.int64)
        mode = np.zeros(exec_n.shape, dtype=np.int8)
    return _evaluate_core(table, pat_n, pat_m, exec_n, exec_m, mode, hp, [h.name for h in hws], runtime)


def _evaluate_core(table, pat_n, pat_m, exec_n, exec_m, mode, hp: HwArrays, hw_names, runtime: str) -> LayerCost:
    """Shapes: layer columns (L,); pat_* (L,) or (P, L); exec_*/mode (H, ..., L); hp fields (H,)."""
    nd = exec_n.ndim
    H = len(hw_names)
    fused = runtime == "fused"

    def hwcol(a: np.ndarray) -> np.ndarray:  # (H,) -> (H, 1, ..., 1) broadcasting over layers
        return a.reshape((H,) + (1,) * (nd - 1))

    kind = table.kind
    is_mat = kind != OpCode.ELEMENTWISE
    is_gemm = kind == OpCode.GEMM
    dcode = table.dtype_code.astype(np.intp)
    macs_arr = hp.macs_by_dtype[:, dcode].reshape((H,) + (1,) * (nd - 2) + (len(kind),))
    mac_j = hp.mac_j_by_dtype[:, dcode].reshape(macs_arr.shape)
    missing = np.isnan(macs_arr) & is_mat
    if missing.any():
        h_idx, *_, l_idx = np.nonzero(missing)
        raise ConfigError(
            f"hardware {hw_names[int(h_idx[0])]!r} has no matrix rate for dtype {DTYPES[dcode[int(l_idx[0])]]!r} "
            f"(op {table.names[int(l_idx[0])]!r}); give compute.macs_per_cycle_per_array (or a labelled "
            "compute.emulated_dtypes entry) for it, or choose another dtype"
        )
    macs_arr = np.where(np.isnan(macs_arr), 1.0, macs_arr)
    mac_j = np.where(np.isnan(mac_j), 0.0, mac_j)

    bytes_el = table.value_bits / 8.0  # (L,)
    m = table.m.astype(np.float64)
    n = table.n.astype(np.float64)
    k = table.k.astype(np.float64)
    batch = table.batch.astype(np.float64)

    # Only weight GEMMs are weight-sparse: matmuls and element-wise ops execute dense.
    exec_n = np.where(is_gemm, exec_n, 1)
    exec_m = np.where(is_gemm, exec_m, 1)
    mode = np.where(is_gemm, mode, 0)
    pat_n = np.where(is_gemm, pat_n, 1)
    pat_m = np.where(is_gemm, pat_m, 1)
    native = mode == MODE_NATIVE
    density = exec_n / exec_m  # executed fraction of the dense MACs
    # Stored weight size / dense size: native -> the hardware's format (its metadata bits, or
    # ceil(log2 M)); compressed fallback -> the layer's own N:M format with ceil(log2 M) bits.
    meta_hw = hwcol(hp.meta_bits)
    meta_native = np.where(np.isnan(meta_hw), np.ceil(np.log2(exec_m)), meta_hw)
    vbits = table.value_bits.astype(np.float64)
    frac_native = exec_n * (vbits + meta_native) / (exec_m * vbits)
    frac_compr = pat_n * (vbits + np.ceil(np.log2(pat_m))) / (pat_m * vbits)
    storage = np.where(native, frac_native, np.where(mode == MODE_DENSE_COMPRESSED, frac_compr, 1.0))

    # Sparse kernels pad rows and K (PyTorch semi-structured minimum shapes; see hardware.Sparse).
    pad_r = np.where(native & ~np.isnan(hwcol(hp.pad_rows)), hwcol(hp.pad_rows), 1.0)
    pad_kb = np.where(native & ~np.isnan(hwcol(hp.pad_k_bytes)), hwcol(hp.pad_k_bytes), 1.0)
    pad_k_el = np.maximum(pad_kb / bytes_el, 1.0)
    m_run = np.ceil(m / pad_r) * pad_r
    k_run = np.ceil(k / pad_k_el) * pad_k_el * density
    # Matmuls (activation x activation) run batched in one launch; repeated GEMMs run one
    # launch per product (repeated layers are OpTable.count, scaled at the end).
    launches = np.where(is_gemm, batch, 1.0)
    per_launch_products = np.where(is_gemm, 1.0, batch)
    eff = np.where(native, hwcol(hp.eff_sparse), hwcol(hp.eff_dense))
    dense_flops = np.where(is_mat, 2.0 * m * n * k * batch, table.elements * table.flops_per_element)
    # A fused attention kernel skips the masked half of a causal square (FlashAttention).
    causal_frac = np.where(fused & table.causal, 0.5, 1.0) if fused else 1.0
    exec_flops = dense_flops * np.where(is_mat, density, 1.0) * causal_frac
    vec_time = np.where(is_mat, 0.0, table.elements * table.flops_per_element) / hwcol(hp.vector_flops_per_s)

    # Bytes: per product A (M x K activations), B (K x N weights or 2nd activation), C out.
    a_bytes = m * k * bytes_el
    b_bytes = k * n * bytes_el * np.where(is_gemm, storage, 1.0)
    c_bytes = m * n * bytes_el
    ew_bytes = table.elements * (table.inputs + 1) * bytes_el
    if fused:
        # Fused attention: the scores S and probabilities P stay on chip; element-wise ops run
        # in their producer's epilogue (their operands are already in registers).
        c_bytes = np.where(table.attn == ATTN_SCORE, 0.0, c_bytes)
        a_bytes = np.where(table.attn == ATTN_AV, 0.0, a_bytes)
        ew_bytes = np.zeros_like(ew_bytes)
    dram_bytes = np.where(
        is_mat, dram_traffic(a_bytes, b_bytes, c_bytes, m, n, bytes_el, onchip_bytes=hwcol(hp.onchip_bytes)) * batch,
        ew_bytes,
    )
    dram_time = dram_bytes / (hwcol(hp.dram_bw) * np.where(native, hwcol(hp.eff_sparse_memory), hwcol(hp.eff_memory)))
    steps = k_steps(k_run, hwcol(hp.tile_k))
    macs_unit = hwcol(hp.arrays_per_unit) * macs_arr
    s_per_cycle = 1.0 / (hwcol(hp.clock_hz) * eff)
    inv_onchip_bw = 1.0 / hwcol(hp.onchip_bw)
    tile_extra = np.where(native, hwcol(hp.sparse_tile_cycles), 0.0)
    if fused:
        # one launch per kernel: AV and softmax are inside the attention kernel, element-wise
        # ops inside their producer's epilogue
        kernels = np.where((table.attn == ATTN_AV) | (table.attn == ATTN_SOFTMAX) | ~is_mat, 0.0, launches)
    else:
        kernels = launches
    # First-byte DRAM latency once per kernel: a kernel cannot finish before its first load returns.
    latency = kernels * hwcol(hp.dram_latency_s)
    dram_time = dram_time + np.where(is_mat, 0.0, latency)
    # Each op takes the candidate tile with the lowest time (kernel selection per shape).
    busy = mat_compute = mat_memory = mat_onchip = 0.0
    n_candidates = hp.tile_m.shape[1] if is_mat.any() else 0
    units = hwcol(hp.units)
    hide = hwcol(hp.overlap)
    for c in range(n_candidates):
        cycles, tiles_m, tiles_n = compute_cycles(
            m_run, n, steps, per_launch_products, launches, tile_m=hwcol(hp.tile_m[:, c]),
            tile_n=hwcol(hp.tile_n[:, c]), tile_k=hwcol(hp.tile_k), units=units,
            macs_per_cycle_per_unit=macs_unit, fill_drain_cycles=hwcol(hp.fill_drain_cycles) + tile_extra,
            weight_load_cycles=hwcol(hp.weight_load_cycles))
        compute_c = cycles * s_per_cycle * causal_frac
        # DRAM bandwidth scales with the units that stream (each unit's load path carries about
        # 1/units of the total). Dense kernels split K (split-K / stream-K) to occupy every
        # unit; sparse kernels do not (cuSPARSELt and CUTLASS sparse GEMMs have no split-K).
        occ = memory_occupancy(tiles_m * tiles_n * per_launch_products, steps, units, split_k=~native)
        onchip_c = onchip_traffic(a_bytes, b_bytes, c_bytes, tiles_m, tiles_n) * batch
        memory_c = np.maximum(dram_time / occ, onchip_c * inv_onchip_bw) + latency
        busy_c = busy_time(compute_c, memory_c, hide)
        if c == 0:
            busy, mat_compute, mat_memory, mat_onchip = busy_c, compute_c, memory_c, onchip_c
        else:
            better = busy_c < busy
            busy = np.where(better, busy_c, busy)
            mat_compute = np.where(better, compute_c, mat_compute)
            mat_memory = np.where(better, memory_c, mat_memory)
            mat_onchip = np.where(better, onchip_c, mat_onchip)
    compute_time = np.where(is_mat, mat_compute, vec_time)
    memory_time = np.where(is_mat, mat_memory, dram_time)
    onchip_bytes = np.where(is_mat, mat_onchip, ew_bytes)
    busy = busy_time(compute_time, memory_time, hide)
    weight_bytes = np.where(is_gemm, b_bytes * batch, 0.0)
    if runtime in ("eager", CALL_RUNTIME):
        # The host issues op i+1 while the GPU runs op i: max(host, device). A target without a
        # separate device floor keeps the host cost on the device side too (busy + host: the
        # sum model, which its factors were fitted with).
        host = kernels * (hwcol(hp.launch_s) + np.where(native, hwcol(hp.sparse_call_s), 0.0))
        has_floor = hwcol(hp.has_graph_floor)
        device = busy + np.where(has_floor, kernels * hwcol(hp.graph_launch_s), host)
        latency_s = np.maximum(host, device) if runtime == "eager" else np.where(has_floor, host + device, device)
        overhead = latency_s - busy
        overhead_bound = np.where(has_floor & (runtime == "eager"), host > device, overhead > busy)
    else:
        overhead = kernels * hwcol(hp.graph_launch_s)
        latency_s = busy + overhead
        overhead_bound = overhead > busy
    bound = np.where(
        overhead_bound, BOUND_OVERHEAD,
        np.where(compute_time >= memory_time, BOUND_COMPUTE, BOUND_MEMORY),
    ).astype(np.int8)
    energy = (
        exec_flops * 0.5 * np.where(is_mat, mac_j, 0.0)
        + np.where(is_mat, 0.0, dense_flops) * hwcol(hp.vector_flop_j)
        + dram_bytes * hwcol(hp.dram_byte_j)
        + onchip_bytes * hwcol(hp.onchip_byte_j)
    )
    shape = latency_s.shape
    # Everything above is per instance; ``count`` identical instances (merged transformer
    # blocks) each have their own weights and launches, so extensive quantities scale by it.
    count = table.count.astype(np.float64)
    full = lambda a: np.broadcast_to(a, shape).copy() if np.shape(a) != shape else a  # noqa: E731
    scaled = lambda a: np.broadcast_to(a * count, shape).copy()  # noqa: E731
    return LayerCost(
        dense_flops=scaled(dense_flops), exec_flops=scaled(exec_flops), dram_bytes=scaled(dram_bytes),
        weight_bytes=scaled(weight_bytes), compute_time_s=scaled(compute_time),
        memory_time_s=scaled(memory_time), latency_s=scaled(latency_s), bound=bound, energy_j=scaled(energy),
        exec_pat_n=full(exec_n), exec_pat_m=full(exec_m),
    )
