"""The H200 calibration on the measured file and what the runtimes answer on it (issue 15's bars).

The measurements (hw_configs/measurements/h200_measured.yaml) were made outside this project on
one H200 SXM (torch 2.11 + CUDA 13, 2026-12-04): dense cuBLAS and cuSPARSELt 2:4 GEMMs, kernel
(CUDA-graph replay) and eager (loop wall clock) timings. The bars below are the issue's."""
import pytest

from pgf_sim.core import NM
from pgf_sim.sim.calibrate import HELD_OUT_TARGETS, validate
from pgf_sim.sim.cost import evaluate
from pgf_sim.sim.hardware import load_hardware
from pgf_sim.sim.measurements import load_measurements
from pgf_sim.sim.simulate import simulate
from pgf_sim.sim.workloads import build_workload


def test_the_measured_file_is_what_its_header_says():
    m = load_measurements("h200_measured")
    assert m.target == "h200"
    assert {(c.n, c.k) for c in m.dense} == {(8192, 8192), (14336, 4096), (28672, 8192)}
    assert {c.timing for c in m.dense} == {c.timing for c in m.sparse} == {"kernel", "eager"}
    assert len(m.dense) == 90 and len(m.sparse) == 72
    by = {(c.m, c.n, c.timing): c for c in m.sparse}
    # the header's story: kernel 2:4 slower than dense at small M, faster at large M; eager 2:4 ~0.8 ms per call
    assert by[(1, 8192, "kernel")].measured_speedup == pytest.approx(3.7898e-05 / 5.6903e-05)
    assert all(c.measured_speedup < 1 for c in m.sparse if c.timing == "kernel" and c.m <= 128)
    assert all(c.measured_speedup > 1.3 for c in m.sparse if c.timing == "kernel" and c.m >= 2048)
    assert all(6.5e-4 < c.sparse_s < 1.3e-3 for c in m.sparse if c.timing == "eager" and c.m <= 512)


@pytest.mark.slow  # 90 leave-one-out refits (~15 s)
def test_h200_calibration_meets_the_dense_bars_and_every_sparse_side():
    v = validate("h200", "h200_measured")
    per = v.held_out_by_timing()
    assert per["kernel"] <= 0.08 and per["eager"] <= 0.15  # the bars (measured: 5.6% and 6.2%)
    assert per["kernel"] <= HELD_OUT_TARGETS["kernel"] and per["eager"] <= HELD_OUT_TARGETS["eager"]
    assert v.dense_targets_met and v.sparse_sides_agree  # 72 of 72 on the measured side of 1.0
    # the absolute 2:4 times are not all within 25% (the eager per-call host cost varies 0.69-1.25 ms
    # around the one fitted constant): the validation says so rather than passing
    assert not v.sparse_times_hold and not v.meets_targets


def _latency(hw, phase, pattern, runtime, seq_len=2048, batch=1):
    wl = build_workload("llama_7b", batch=batch, seq_len=seq_len, phase=phase, pattern=pattern,
                        qkv_pattern=None if pattern.is_dense else pattern)
    return simulate(wl, hw, runtime=runtime).totals["latency_s"]


@pytest.mark.parametrize("runtime", ["eager", "graph", "fused"])
def test_llama_7b_decode_on_the_h200_is_slower_with_2_4(runtime):
    dense = _latency("h200", "decode", NM(1, 1), runtime)
    sparse = _latency("h200", "decode", NM(2, 4), runtime)
    assert sparse > dense  # measured: cuSPARSELt at M = 1 is 0.6-0.7x of cuBLAS, eager far slower


def test_llama_7b_prefill_on_the_h200_2_4_gains_only_without_the_eager_host_cost():
    ratio = {rt: _latency("h200", "prefill", NM(1, 1), rt) / _latency("h200", "prefill", NM(2, 4), rt)
             for rt in ("eager", "graph", "fused")}
    assert ratio["graph"] > 1 and ratio["fused"] > 1  # 2048 tokens: the compressed K wins (measured 1.4-1.7x per GEMM)
    assert ratio["eager"] < 1  # every eager 2:4 call pays ~0.94 ms of host time on this stack


def test_bert_base_batch_4_is_not_faster_with_2_4_in_eager_on_the_a100():
    dense = build_workload("bert_base", batch=4, seq_len=384).table()
    sparse = build_workload("bert_base", batch=4, seq_len=384, pattern=NM(2, 4), qkv_pattern=NM(2, 4)).table()
    a100 = load_hardware("a100_80gb")
    speedup = evaluate(dense, a100).latency_s.sum() / evaluate(sparse, a100).latency_s.sum()
    assert speedup <= 1.0  # published (PyTorch tutorial, A100): 0.87x at batch 4
