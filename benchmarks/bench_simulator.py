"""Simulator throughput: layer evaluations per second, vectorised grid vs a plain-Python loop.

Workloads: a full ViT-B (forward, batch 1) and a Llama-style 7B (prefill, batch 1), every
layer unmerged, x patterns (dense, 2:4, 1:4, 1:8, 1:16, 1:32) x all built-in targets. Each
distinct (layer, effective pattern, target) counts once: element-wise ops and matmuls carry no
weight pattern, so they count once per target, not once per pattern; a GEMM whose K is not a
multiple of the pattern's M keeps its own pattern and is not counted twice.

Baseline, measured in the same run: the same cost formulas written as a per-layer scalar
Python loop (what a plain-Python roofline tool does), over the distinct triples only. The two
results are compared element by element to show they compute the same thing.

Run: ``.venv/bin/python benchmarks/bench_simulator.py [--repeats 20]``. Pinned to one core.
Issue 3 target: >= 1e6 layer evaluations/s on one core. Times are CPU seconds of this process
(``time.process_time``: what one core spends, unaffected by other jobs taking the core away);
wall-clock medians are printed beside them.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from pgf_sim.core import NM  # noqa: E402
from pgf_sim.sim.cost import BOUND_COMPUTE, BOUND_MEMORY, BOUND_OVERHEAD, hw_arrays, evaluate_grid  # noqa: E402
from pgf_sim.sim.hardware import list_hardware, load_hardware  # noqa: E402
from pgf_sim.sim.mapping import MODE_DENSE_COMPRESSED, MODE_DENSE_FALLBACK, MODE_NATIVE, best_native  # noqa: E402
from pgf_sim.sim.ops import OpCode  # noqa: E402
from pgf_sim.sim.workloads import build_workload  # noqa: E402

PATTERNS = [NM.parse(p) for p in ("dense", "2:4", "1:4", "1:8", "1:16", "1:32")]
WORKLOADS = (("vit_b", dict(batch=1, phase="forward")), ("llama_7b", dict(batch=1, phase="prefill")))


def distinct_triples(table, n_hw: int) -> list[tuple[int, int, int]]:
    """(layer, pat_n, pat_m) per distinct effective pattern of each layer (same for every target)."""
    out = []
    for i in range(table.n_ops):
        seen = set()
        for p in PATTERNS:
            if table.kind[i] == 0 and table.k[i] % p.m == 0:
                key = (p.n, p.m)
            else:
                key = (int(table.pat_n[i]), int(table.pat_m[i]))
            if key not in seen:
                seen.add(key)
                out.append((i, *key))
    return out


def scalar_params(hw, hp, i: int) -> dict:
    """Plain-Python floats of target ``i`` (setup of the baseline, timed with it)."""
    p = {f: float(getattr(hp, f)[i]) for f in hp._fields if getattr(hp, f).ndim == 1}
    p["macs_by_dtype"] = [float(v) for v in hp.macs_by_dtype[i]]
    p["mac_j_by_dtype"] = [float(v) for v in hp.mac_j_by_dtype[i]]
    p["tiles"] = list(hw.compute.tile_shapes.mn)
    p["native"] = hw.sparse.native_patterns
    p["fallback"] = MODE_DENSE_COMPRESSED if hw.sparse.unsupported == "dense_compressed" else MODE_DENSE_FALLBACK
    return p


def scalar_cost(t, i: int, pn: int, pm: int, p: dict) -> tuple[float, float, int]:
    """The cost model of ``pgf_sim.sim.cost`` for one layer, in scalar Python: (time, energy, bound)."""
    kind = int(t.kind[i])
    is_mat, is_gemm = kind != OpCode.ELEMENTWISE, kind == OpCode.GEMM
    m, n, k, batch = float(t.m[i]), float(t.n[i]), float(t.k[i]), float(t.batch[i])
    vbits = float(t.value_bits[i])
    bytes_el = vbits / 8.0
    en = em = 1
    mode = 0
    if not is_gemm:
        pn = pm = 1
    elif pn != pm:
        hit = best_native(pn, pm, p["native"])
        if hit is None:
            mode = p["fallback"]
        else:
            en, em, mode = hit.n, hit.m, MODE_NATIVE
    native = mode == MODE_NATIVE
    density = en / em
    if native:
        meta = p["meta_bits"] if not math.isnan(p["meta_bits"]) else math.ceil(math.log2(em))
        storage = en * (vbits + meta) / (em * vbits)
    elif mode == MODE_DENSE_COMPRESSED:
        storage = pn * (vbits + math.ceil(math.log2(pm))) / (pm * vbits)
    else:
        storage = 1.0
    pad_r = p["pad_rows"] if native and not math.isnan(p["pad_rows"]) else 1.0
    pad_kb = p["pad_k_bytes"] if native and not math.isnan(p["pad_k_bytes"]) else 1.0
    pad_k_el = max(pad_kb / bytes_el, 1.0)
    m_run = math.ceil(m / pad_r) * pad_r
    k_run = math.ceil(k / pad_k_el) * pad_k_el * density
    launches = batch if is_gemm else 1.0
    per_launch = 1.0 if is_gemm else batch
    eff = p["eff_sparse"] if native else p["eff_dense"]
    elements, fpe = float(t.elements[i]), float(t.flops_per_element[i])
    dense_flops = 2.0 * m * n * k * batch if is_mat else elements * fpe
    exec_flops = dense_flops * density if is_mat else dense_flops
    if is_mat:
        macs = p["macs_by_dtype"][int(t.dtype_code[i])]
        mac_j = p["mac_j_by_dtype"][int(t.dtype_code[i])]
        a = m * k * bytes_el
        b = k * n * bytes_el * (storage if is_gemm else 1.0)
        c = m * n * bytes_el
        onchip_cap = p["onchip_bytes"]
        if a + b + c <= onchip_cap or min(a, b) <= 0.5 * onchip_cap:
            dram = a + b + c
        else:
            blk = max(math.floor(math.sqrt(onchip_cap / (2.0 * bytes_el))), 1.0)
            dram = a * math.ceil(n / blk) + b * math.ceil(m / blk) + c
        dram *= batch
        dram_time = dram / (p["dram_bw"] * (p["eff_sparse_memory"] if native else p["eff_memory"]))
        steps = math.ceil(k_run / p["tile_k"])
        macs_unit = p["arrays_per_unit"] * macs
        best = None
        for tm, tn in p["tiles"]:
            tiles_m, tiles_n = math.ceil(m_run / tm), math.ceil(n / tn)
            step_cycles = max(min(m_run, tm) * tn * p["tile_k"] / macs_unit, p["weight_load_cycles"])
            tile_cycles = steps * step_cycles + p["fill_drain_cycles"] + (p["sparse_tile_cycles"] if native else 0.0)
            ctas = max(tiles_m * tiles_n * per_launch, 1.0)
            waves = math.ceil(tiles_m * tiles_n * per_launch / p["units"])
            compute = waves * tile_cycles * launches / (p["clock_hz"] * eff)
            split = 1.0 if native else min(math.ceil(p["units"] / ctas), max(steps, 1.0))
            occ = min(ctas * split / p["units"], 1.0)
            onchip = (a * tiles_n + b * tiles_m + c) * batch
            memory = max(dram_time / occ, onchip / p["onchip_bw"]) + launches * p["dram_latency_s"]
            busy_c = max(compute, memory) + (1.0 - p["overlap"]) * min(compute, memory)
            if best is None or busy_c < best[0]:
                best = (busy_c, compute, memory, onchip)
        _, compute, memory, onchip = best
    else:
        mac_j = 0.0
        dram = onchip = elements * (float(t.inputs[i]) + 1) * bytes_el
        compute = elements * fpe / p["vector_flops_per_s"]
        memory = dram / (p["dram_bw"] * p["eff_memory"])
    if not is_mat:
        memory += launches * p["dram_latency_s"]
    busy = max(compute, memory) + (1.0 - p["overlap"]) * min(compute, memory)
    # eager runtime: the host issues the op while the device runs; a target without a device
    # floor per kernel keeps the host cost on the device side (the sum)
    host = launches * (p["launch_s"] + (p["sparse_call_s"] if native else 0.0))
    if p["has_graph_floor"]:
        device = busy + launches * p["graph_launch_s"]
        latency = max(host, device)
        overhead_bound = host > device
    else:
        latency = busy + host
        overhead_bound = host > busy
    bound = BOUND_OVERHEAD if overhead_bound else (BOUND_COMPUTE if compute >= memory else BOUND_MEMORY)
    energy = (exec_flops * 0.5 * mac_j + (0.0 if is_mat else dense_flops) * p["vector_flop_j"]
              + dram * p["dram_byte_j"] + onchip * p["onchip_byte_j"])
    return latency, energy, bound


def run_baseline(table, hws, triples):
    hp = hw_arrays(hws)
    params = [scalar_params(h, hp, i) for i, h in enumerate(hws)]
    return [[scalar_cost(table, i, pn, pm, p) for (i, pn, pm) in triples] for p in params]


def timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    """(CPU seconds, wall seconds) of ``repeats`` calls of ``fn``."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls of the vectorised grid")
    parser.add_argument("--baseline-repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    hws = [load_hardware(n) for n in list_hardware()]
    print(f"targets ({len(hws)}): {', '.join(h.name for h in hws)}")
    print(f"patterns ({len(PATTERNS)}): {', '.join(str(p) if not p.is_dense else 'dense' for p in PATTERNS)}")
    total_distinct = total_vec_s = total_base_s = 0.0
    for name, kwargs in WORKLOADS:
        table = build_workload(name, **kwargs).table()
        triples = distinct_triples(table, len(hws))
        n_eval = len(triples) * len(hws)
        evaluate_grid(table, hws, patterns=PATTERNS)  # warm-up (imports, caches)
        times, walls = timed(lambda: evaluate_grid(table, hws, patterns=PATTERNS), args.repeats)
        grid = evaluate_grid(table, hws, patterns=PATTERNS)
        vec_s = statistics.median(times)
        base_times, base_walls = timed(lambda: run_baseline(table, hws, triples), args.baseline_repeats)
        base = run_baseline(table, hws, triples)
        base_s = statistics.median(base_times)
        # Same numbers? compare every distinct triple against the grid.
        pat_index = {(p.n, p.m): j for j, p in enumerate(PATTERNS)}
        worst = 0.0
        bound_mismatch = 0
        for h in range(len(hws)):
            for (i, pn, pm), (t_s, e_j, bnd) in zip(triples, base[h]):
                j = pat_index.get((pn, pm), 0)
                worst = max(worst, abs(grid.latency_s[h, j, i] / t_s - 1), abs(grid.energy_j[h, j, i] / e_j - 1) if e_j else 0.0)
                bound_mismatch += int(grid.bound[h, j, i] != bnd)
        print(f"\n{name} ({kwargs['phase']}, batch 1): {table.n_ops} layers, {len(triples)} distinct layer x pattern,"
              f" x {len(hws)} targets = {n_eval} evaluations (grid computes {grid.latency_s.size})")
        print(f"  vectorised evaluate_grid: {vec_s * 1e3:8.2f} ms CPU (median of {args.repeats}, min "
              f"{min(times) * 1e3:.2f}; wall median {statistics.median(walls) * 1e3:.2f})"
              f" -> {n_eval / vec_s:,.0f} layer evaluations/s")
        print(f"  plain-Python loop       : {base_s * 1e3:8.2f} ms CPU (median of {args.baseline_repeats}; wall median "
              f"{statistics.median(base_walls) * 1e3:.2f}) -> {n_eval / base_s:,.0f} layer evaluations/s")
        print(f"  speed-up vs baseline: {base_s / vec_s:.1f}x; max relative difference {worst:.1e}, "
              f"bound mismatches {bound_mismatch}")
        total_distinct += n_eval
        total_vec_s += vec_s
        total_base_s += base_s
    rate = total_distinct / total_vec_s
    print(f"\nall: {total_distinct:,.0f} evaluations; vectorised {rate:,.0f}/s, baseline "
          f"{total_distinct / total_base_s:,.0f}/s, ratio {total_base_s / total_vec_s:.1f}x; "
          f"target >= 1,000,000/s: {'met' if rate >= 1e6 else 'NOT met'}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
