"""simulate(): rows and totals consistent with the workload; phases; training cost per recipe."""
import csv
import io
import json

import pytest

from pgf_sim.core import NM
from pgf_sim.sim.hardware import load_hardware
from pgf_sim.sim.simulate import (
    ROW_COLUMNS, format_summary, simulate, simulate_many, training_ops, training_step_cost,
)
from pgf_sim.sim.workloads import build_workload, gemm_workload
from pgf_sim.sparsity.schedules import RecipeConfig


@pytest.fixture(scope="module")
def a100():
    return load_hardware("a100_80gb")


def test_rows_and_totals_follow_the_workload(a100):
    wl = build_workload("vit_b", batch=8, pattern=NM(1, 8), merge_blocks=True)
    r = simulate(wl, a100)
    assert [row["layer"] for row in r.rows] == [op.name for op in wl.ops]
    assert set(r.rows[0]) == set(ROW_COLUMNS)
    # dense FLOPs are the workload's own count (independent of the cost model)
    assert r.totals["dense_flops"] == pytest.approx(sum(op.dense_flops for op in wl.ops))
    for key in ("exec_flops", "dram_bytes", "latency_s", "energy_j"):
        assert r.totals[key] == pytest.approx(sum(row[key] for row in r.rows))
    rows = {row["layer"]: row for row in r.rows}
    fc1 = rows["blocks.*.mlp.fc1"]
    # A100 runs a 1:8 layer at its 2:4 rate (1:8 is a valid 2:4 layout): half the dense MACs
    assert (fc1["pattern"], fc1["exec_pattern"], fc1["mapping"]) == ("1:8", "2:4", "native")
    assert fc1["exec_flops"] == pytest.approx(fc1["dense_flops"] / 2)
    assert rows["blocks.*.attn.proj"]["pattern"] == "dense" and rows["blocks.*.attn.attn_score"]["kind"] == "matmul"
    assert all(row["exec_flops"] <= row["dense_flops"] + 1e-6 for row in r.rows)
    assert all(row["latency_s"] >= max(row["compute_time_s"], row["memory_time_s"]) * (1 - 1e-9) for row in r.rows)
    fractions = sum(r.totals[f"{b}_bound_time_fraction"] for b in ("compute", "memory", "overhead"))
    assert fractions == pytest.approx(1.0)


def test_outputs_parse(a100):
    r = simulate(build_workload("gpt2", seq_len=128, pattern=NM(2, 4), merge_blocks=True), a100)
    rows = list(csv.DictReader(io.StringIO(r.to_csv())))
    assert len(rows) == len(r.rows) and list(rows[0]) == list(ROW_COLUMNS)
    assert float(rows[0]["latency_s"]) == pytest.approx(r.rows[0]["latency_s"])
    data = json.loads(r.to_json())
    assert data["hardware"] == "a100_80gb" and len(data["rows"]) == len(r.rows)
    assert data["totals"]["latency_s"] == pytest.approx(r.totals["latency_s"])
    text = r.format_table()
    assert "TOTAL" in text and "blocks.*.mlp.fc1" in text and "speedup" in text


def test_dense_workload_has_speedup_one(a100):
    r = simulate(gemm_workload(4096, 4096, 4096), a100)
    assert r.totals["speedup_vs_dense"] == pytest.approx(1.0)
    sparse = simulate(gemm_workload(4096, 4096, 4096, pattern=NM(2, 4)), a100)
    assert sparse.totals["dense_latency_s"] == pytest.approx(r.totals["latency_s"])
    assert 1.0 <= sparse.totals["speedup_vs_dense"] <= 2.0  # speedup <= m/n


def test_simulate_many_and_summary(a100):
    wls = [build_workload("vit_s", pattern=NM.parse(p), merge_blocks=True) for p in ("dense", "2:4")]
    results = simulate_many(wls, [a100, "a100_80gb"])
    assert len(results) == 4 and [r.meta["pattern"] for r in results] == ["dense", "dense", "2:4", "2:4"]  # dense as users write it, never "1:1"
    assert len(format_summary(results).splitlines()) == 2 + 4


def test_decode_reads_every_weight_and_the_kv_cache(a100):
    seq = 1024
    dec = build_workload("llama_7b", batch=1, seq_len=seq, phase="decode")
    pre = build_workload("llama_7b", batch=1, seq_len=seq, phase="prefill")
    rd, rp = simulate(dec, a100), simulate(pre, a100)
    # independent lower bound: one decode step streams every weight matrix (fp16; the
    # embedding table is only gathered) plus the whole KV cache from DRAM
    weights = 2 * (dec.meta["params"] - 32000 * 4096)
    assert rd.totals["dram_bytes"] >= weights + dec.meta["kv_cache_bytes"]
    assert rd.totals["latency_s"] >= rd.totals["dram_bytes"] / 2039e9  # A100 80GB datasheet bandwidth
    # prefill does ~seq times the matrix FLOPs but costs far less than seq decode steps
    assert rp.totals["dense_flops"] > 0.9 * seq * rd.totals["dense_flops"] * 0.5
    assert rp.totals["latency_s"] < seq * rd.totals["latency_s"]
    assert rd.totals["memory_bound_time_fraction"] + rd.totals["overhead_bound_time_fraction"] > 0.9
    assert rp.totals["compute_bound_time_fraction"] > rd.totals["compute_bound_time_fraction"]


def _role_flops(ops, roles):
    return sum(op.dense_flops for op in ops if op.role in roles)


def test_training_ops_flop_relations():
    wl = build_workload("vit_b", batch=4, merge_blocks=True)
    fwd_mlp = _role_flops(wl.ops, {"fc1", "fc2"})
    ops = training_ops(wl, {op.name: NM(2, 4) for op in wl.ops if op.role in ("fc1", "fc2")})
    by_name = {op.name: op for op in ops}
    fc1 = by_name["blocks.*.mlp.fc1"]
    dgrad, wgrad = by_name["blocks.*.mlp.fc1.dgrad"], by_name["blocks.*.mlp.fc1.wgrad"]
    # dL/dx (M x K, reduce over N) is sparse like the forward; dL/dW (N x K, reduce over M) dense
    assert (dgrad.m, dgrad.n, dgrad.k, dgrad.pattern) == (fc1.m, fc1.k, fc1.n, NM(2, 4))
    assert (wgrad.kind, wgrad.m, wgrad.n, wgrad.k, wgrad.pattern) == ("matmul", fc1.n, fc1.k, fc1.m, NM(1, 1))
    assert fc1.dense_flops == dgrad.dense_flops == wgrad.dense_flops
    # training step = 3x the forward matrix FLOPs, less the image's input gradient
    fwd_mm = sum(op.dense_flops for op in wl.ops if op.kind != "elementwise")
    step_mm = sum(op.dense_flops for op in ops if op.kind != "elementwise")
    patch = next(op for op in wl.ops if op.role == "patch_embed").dense_flops
    assert step_mm == 3 * fwd_mm - patch
    # forward + input gradient (both keep the layer's role) + weight gradient
    assert _role_flops(ops, {"fc1", "fc2", "fc1.wgrad", "fc2.wgrad"}) == 3 * fwd_mlp


def test_training_cost_per_recipe(a100):
    wl = build_workload("vit_s", batch=32)
    steps = 1000
    dense = training_step_cost(wl, a100, RecipeConfig(name="dense"), steps)
    ste = training_step_cost(wl, a100, RecipeConfig(name="ste", pattern=NM(2, 4)), steps)
    mdgf = training_step_cost(wl, a100, RecipeConfig(name="mdgf", pattern=NM(2, 4)), steps)
    sdgf = training_step_cost(wl, a100, RecipeConfig(name="sdgf", pattern=NM(1, 8)), steps)
    for cost in (dense, ste, mdgf, sdgf):
        assert sum(s.steps for s in cost.segments) == steps
        assert cost.totals["latency_s"] == pytest.approx(sum(s.steps * s.result.totals["latency_s"] for s in cost.segments))
    assert len(dense.segments) == 1 and dense.totals["speedup_vs_dense_training"] == pytest.approx(1.0)
    # STE: MLP forward + input gradient at half the MACs, weight gradient dense:
    # executed = dense - 2 * (1/2) * forward MLP FLOPs
    mlp = _role_flops(wl.ops, {"fc1", "fc2"})
    assert ste.totals["exec_flops"] / steps == pytest.approx(dense.totals["exec_flops"] / steps - mlp)
    # MDGF: dense forward while beta > 0, then binary 2:4 (its 10% fine-tune at least)
    first, last = mdgf.segments[0], mdgf.segments[-1]
    assert first.result.totals["exec_flops"] == pytest.approx(dense.segments[0].result.totals["exec_flops"])
    assert last.result.totals["exec_flops"] == pytest.approx(ste.segments[0].result.totals["exec_flops"])
    assert ste.totals["exec_flops"] < mdgf.totals["exec_flops"] < dense.totals["exec_flops"]
    # SDGF stepwise to 1:8: 7:8, 4:8, 2:8, 1:8 frames (A100: 7:8, 4:8 dense; 2:8, 1:8 on 2:4)
    assert [s.description for s in sdgf.segments] == ["1:8->7:8", "1:8->4:8", "1:8->2:8", "1:8->1:8"]
    assert sdgf.segments[0].result.totals["exec_flops"] == pytest.approx(dense.segments[0].result.totals["exec_flops"])
    json.loads(sdgf.to_json())
    assert len(list(csv.DictReader(io.StringIO(sdgf.to_csv())))) == sum(len(s.result.rows) for s in sdgf.segments)
    assert "speedup vs dense training" in sdgf.format_table()


@pytest.mark.parametrize("recipe", [
    dict(name="ste", pattern=NM(1, 8)),
    dict(name="mdgf", pattern=NM(1, 8), grad="scaled"),
    dict(name="sdgf", pattern=NM(1, 16), qkv_pattern=NM(2, 4), roles=("fc1", "fc2")),
    # per-layer targets: each layer's SDGF frames toward its own pattern
    dict(name="sdgf", pattern=NM(1, 8), layer_patterns={"blocks.0.*": NM(2, 4), "*.fc2": NM(1, 16)}),
])
def test_training_flops_agree_with_train_flops(recipe):
    """On hardware that runs every pattern natively, the executed GEMM FLOPs over the schedule
    equal the ideal zero-skipping count of sparsity/flops.py (an independent implementation)."""
    from pgf_sim.sparsity.flops import training_flops

    from pgf_sim.sim.hardware import replace_field
    from pgf_sim.sparsity.schedules import all_targets, patterns_used

    cfg = RecipeConfig(**recipe)
    # a flexible N:M array (design assumption) made to run every pattern the schedule visits
    native = {p for t in all_targets(cfg) for p in patterns_used(cfg, t)}
    flex = replace_field(load_hardware("flex_nm_systolic"), "sparse.native_patterns", tuple(sorted(native)))
    wl = build_workload("gpt2", batch=2, seq_len=64)
    steps = 500
    cost = training_step_cost(wl, flex, cfg, steps)
    layers = {op.name: ((op.n, op.k), op.role, op.m) for op in wl.ops if op.kind == "gemm"}
    ideal = sum(training_flops(cfg, layers, tokens=0, total_steps=steps).values())
    gemm_rows = lambda r: [row for row in r.rows if row["role"] in {  # noqa: E731
        op.role for op in wl.ops if op.kind == "gemm"} or row["role"].endswith(".wgrad")]
    simulated = sum(s.steps * sum(row["exec_flops"] for row in gemm_rows(s.result)) for s in cost.segments)
    assert simulated == pytest.approx(ideal, rel=1e-9)


@pytest.mark.parametrize("name, phase", [("vit_b", "forward"), ("llama_7b", "decode"), ("t5_base", "prefill")])
@pytest.mark.parametrize("hw_name", ["a100_80gb", "flex_nm_systolic", "tpu_v4"])
def test_merged_blocks_cost_the_same_as_per_block(name, phase, hw_name):
    """Folding identical blocks into one op with ``count`` is a display choice, not a cost change
    (every repeat is its own kernel launch with its own weights)."""
    kw = dict(batch=2, seq_len=None if name == "vit_b" else 64, pattern=NM(1, 8), phase=phase)
    per_block = simulate(build_workload(name, **kw), hw_name)
    merged = simulate(build_workload(name, merge_blocks=True, **kw), hw_name)
    assert len(merged.rows) < len(per_block.rows)
    for key in ("latency_s", "dense_latency_s", "dense_flops", "exec_flops", "dram_bytes", "weight_bytes", "energy_j"):
        assert merged.totals[key] == pytest.approx(per_block.totals[key], rel=1e-12), key


def test_llama_7b_on_the_a100_both_profiles_against_floors_and_peers():
    from pgf_sim.sim.workloads import build_workload

    hw = load_hardware("a100_80gb")
    decode = build_workload("llama_7b", batch=1, seq_len=2048, phase="decode")
    prefill = build_workload("llama_7b", batch=1, seq_len=2048, phase="prefill")
    fused = simulate(decode, hw, profile="fused").totals
    eager = simulate(decode, hw, profile="eager").totals
    # Floor: weights (less the embedding table, gathered one row) + KV cache at 2.039 TB/s = 7.0 ms.
    streamed = 6_738_415_616 * 2 - 32000 * 4096 * 2 + 2 * 32 * 2048 * 4096 * 2
    assert fused["dram_bytes"] == pytest.approx(streamed, rel=2e-3)
    floor = streamed / 2.039e12
    assert floor == pytest.approx(7.0e-3, rel=0.01)
    # By hand: the stream at the fitted 90.81% of the bandwidth, + 257 kernels x (0.5 us graph
    # launch + 0.5 us DRAM latency), + the tiny compute-bound remainder.
    by_hand = fused["dram_bytes"] / (2.039e12 * 0.908132) + 257 * 1e-6
    assert fused["latency_s"] == pytest.approx(by_hand, rel=0.01)
    assert floor < fused["latency_s"] < 8.1e-3 < eager["latency_s"]
    assert fused["fits_memory"] and fused["footprint_bytes"] == pytest.approx(6_738_415_616 * 2 + 2 * 32 * 2048 * 4096 * 2,
                                                                              rel=0.01)
    # Prefill: peers 95.5 (GenZ) and 105.9 ms (LLM-Viewer), FLOP floor 92 ms
    t = simulate(prefill, hw, profile="fused").totals["latency_s"]
    assert 92e-3 < t < 115e-3 < simulate(prefill, hw).totals["latency_s"]
