"""Cost model: hand-derived roofline numbers, storage formats, grid consistency, invariants."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgf_sim.core import NM, ConfigError
from pgf_sim.sim.cost import BOUND_COMPUTE, BOUND_MEMORY, BOUND_OVERHEAD, evaluate, evaluate_grid
from pgf_sim.sim.hardware import hardware_from_dict, list_hardware, load_hardware, replace_field
from pgf_sim.sim.ops import Op, OpTable

HW = {name: load_hardware(name) for name in list_hardware()}
A100 = HW["a100_80gb"]


def s(value, source="test"):
    return {"value": value, "source": source}


def toy(**changes) -> dict:
    """1 unit, 1000 MAC/cycle at 1 GHz = 2 TFLOP/s; 1 TB/s DRAM; every efficiency 1; 1x1 tiles."""
    data = {
        "name": "toy", "description": "hand-checkable", "kind": "systolic",
        "compute": {
            "clock_hz": s(1e9), "units": s(1), "arrays_per_unit": s(1),
            "macs_per_cycle_per_array": {"fp16": s(1000), "int8": s(2000)},
            "tile_shapes": {"mn": [[1, 1]], "source": "test"}, "tile_k": s(1), "fill_drain_cycles": s(0),
            "weight_load_cycles": s(0),
            "vector_flops_per_s": s(1e12),
        },
        "sparse": {"native_patterns": ["2:4"], "patterns_source": "t", "unsupported": "dense", "unsupported_source": "t"},
        "memory": {"dram_bw_bytes_per_s": s(1e12), "dram_capacity_bytes": s(1e10), "onchip_bytes": s(1e9),
                   "onchip_bw_bytes_per_s": s(1e15)},
        "energy": {"mac_j": {"fp16": s(1e-12), "int8": s(0.5e-12)}, "vector_flop_j": s(2e-12),
                   "dram_byte_j": s(10e-12), "onchip_byte_j": s(1e-12)},
        "efficiency": {"dense_compute_fraction": s(1.0), "sparse_compute_fraction": s(1.0),
                       "memory_bw_fraction": s(1.0), "launch_overhead_s": s(0.0)},
    }
    for key, value in changes.items():
        section, field = key.split("__")
        data[section][field] = value
    return hardware_from_dict(data, source="toy")


def table(*ops: Op) -> OpTable:
    return OpTable.from_ops(list(ops))


def gemm(m, n, k, pattern=NM(1, 1), dtype="fp16", batch=1):
    return Op(f"g{m}x{n}x{k}", "gemm", m=m, n=n, k=k, pattern=pattern, dtype=dtype, batch=batch)


def test_hand_derived_compute_bound_gemm():
    # 1000^3 fp16: 2e9 FLOP / 2e12 FLOP/s = 1 ms; bytes 3 x 1e6 x 2 = 6 MB / 1 TB/s = 6 us
    c = evaluate(table(gemm(1000, 1000, 1000)), toy())
    assert c.dense_flops[0] == 2e9 and c.exec_flops[0] == 2e9
    assert c.compute_time_s[0] == pytest.approx(1e-3)
    assert c.dram_bytes[0] == 6e6 and c.weight_bytes[0] == 2e6
    assert c.memory_time_s[0] == pytest.approx(6e-6)
    assert c.latency_s[0] == pytest.approx(1e-3) and c.bound[0] == BOUND_COMPUTE
    # energy: 1e9 MACs x 1 pJ + 6e6 B x 10 pJ + on-chip (A x N + B x M + C with 1x1 tiles) x 1 pJ
    onchip = 2e6 * 1000 + 2e6 * 1000 + 2e6
    assert c.energy_j[0] == pytest.approx(1e9 * 1e-12 + 6e6 * 10e-12 + onchip * 1e-12)


def test_hand_derived_memory_bound_gemv_dense_and_2_4():
    # M=1, N=K=4096: weights 4096*4096*2 = 33,554,432 B; x and y 8,192 B each
    dense = evaluate(table(gemm(1, 4096, 4096)), toy())
    assert dense.dram_bytes[0] == 33_554_432 + 2 * 8_192
    assert dense.latency_s[0] == pytest.approx((33_554_432 + 16_384) / 1e12)
    assert dense.bound[0] == BOUND_MEMORY
    sparse = evaluate(table(gemm(1, 4096, 4096, NM(2, 4))), toy())
    # 2:4 fp16: (2*16 + 2*2) / (4*16) = 56.25% of the dense weight bytes (PyTorch semi-structured)
    assert sparse.weight_bytes[0] == pytest.approx(0.5625 * 33_554_432)
    assert sparse.exec_flops[0] == dense.dense_flops[0] / 2
    assert sparse.latency_s[0] == pytest.approx((0.5625 * 33_554_432 + 16_384) / 1e12)


def test_a100_gemv_roofline_by_hand():
    # A100 80GB: memory time = bytes / (2.039e12 B/s x fitted 0.908132) + 0.5 us DRAM latency.
    # 64 thread blocks of 64x64 split K in two, so all 108 SMs stream (occupancy 1).
    # graph: busy + the 0.5 us per-kernel floor. eager: the host issues the call for the fitted
    # 28.5348 us while the GPU works: max(host, busy + floor). call (calibration only): the sum.
    shapes = table(gemm(1, 4096, 4096), gemm(1, 8192, 8192))
    busy = [(2 * n * n + 2 * 2 * n) / (2.039e12 * 0.908132) + 0.5e-6 for n in (4096, 8192)]
    graph = evaluate(shapes, A100, runtime="graph")
    assert graph.latency_s == pytest.approx([b + 0.5e-6 for b in busy], rel=1e-6)
    eager = evaluate(shapes, A100)
    assert eager.latency_s == pytest.approx([max(28.5348e-6, b + 0.5e-6) for b in busy], rel=1e-6)
    assert eager.latency_s[0] == pytest.approx(28.5348e-6)  # 18.6 us of HBM traffic hides under the host
    assert eager.bound[0] == BOUND_OVERHEAD and eager.bound[1] == BOUND_MEMORY  # 70 us of HBM traffic
    call = evaluate(shapes, A100, runtime="call")
    assert call.latency_s == pytest.approx([b + 0.5e-6 + 28.5348e-6 for b in busy], rel=1e-6)
    tiny = evaluate(table(gemm(8, 64, 64)), A100)
    assert tiny.bound[0] == BOUND_OVERHEAD


def test_a100_large_gemm_compute_time_by_hand():
    # 8192^3 fp16 with 256x128 tiles: 32 x 64 = 2048 tiles over 108 SMs = 19 waves; a tile takes
    # 256*128*8192 / (4 TC x 256 MAC/clk) cycles; / 1.41 GHz / fitted 0.912527. Eager: the 28.5 us
    # host cost hides under the 3.9 ms kernel; only the 0.5 us device floor is added.
    c = evaluate(table(gemm(8192, 8192, 8192)), A100)
    by_hand = 19 * (256 * 128 * 8192 / 1024) / 1.41e9 / 0.912527
    assert c.compute_time_s[0] == pytest.approx(by_hand, rel=1e-6)
    assert c.latency_s[0] == pytest.approx(by_hand + 0.5e-6, rel=1e-6)
    assert evaluate(table(gemm(8192, 8192, 8192)), A100, runtime="graph").latency_s[0] == c.latency_s[0]


def test_systolic_tile_cycles_by_hand():
    # 16x16 array (256 MAC/cycle), 64x16 tiles, K step 16, fill/drain 32 per tile, >= 16 cycles
    # per K step to shift in the next weight block.
    hw = toy(compute__macs_per_cycle_per_array={"fp16": s(256)}, compute__tile_shapes={"mn": [[64, 16]], "source": "t"},
             compute__tile_k=s(16), compute__fill_drain_cycles=s(32), compute__weight_load_cycles=s(16),
             energy__mac_j={"fp16": s(1e-12)})
    c = evaluate(table(gemm(64, 32, 64), gemm(1, 32, 64)), hw)
    # 64 rows: 2 tiles x (4 K steps x max(64*16*16/256 = 64, 16) + 32) = 576 cycles at 1 GHz
    assert c.compute_time_s[0] == pytest.approx(576e-9)
    # 1 row (GEMV): weight loading bounds each K step: 2 x (4 x max(1, 16) + 32) = 192 cycles
    assert c.compute_time_s[1] == pytest.approx(192e-9)


def test_tpu_decode_gemv_is_memory_bound():
    c = evaluate(table(gemm(1, 11008, 4096), gemm(8192, 8192, 8192)), HW["tpu_v4"])
    assert c.bound[0] == BOUND_MEMORY
    assert c.bound[1] == BOUND_COMPUTE
    # big GEMM: within the dense efficiency of the 275 TFLOP/s peak (fill/drain ~ 1% more)
    ideal = 2 * 8192**3 / 275.25e12 / HW["tpu_v4"].efficiency.dense_compute_fraction.value
    assert ideal < c.compute_time_s[1] < 1.05 * ideal


def test_storage_formats_and_metadata_bits():
    t = table(gemm(64, 256, 256, NM(2, 4)), gemm(64, 256, 256, NM(2, 4), dtype="int8"))
    c = evaluate(t, A100)
    assert c.weight_bytes[0] / (256 * 256 * 2) == pytest.approx(0.5625)  # fp16: 9/16
    assert c.weight_bytes[1] / (256 * 256 * 1) == pytest.approx(0.625)  # int8: 10/16
    # flexible design: ceil(log2 M) metadata bits per kept value -> 1:8 fp16 = (16 + 3) / (8 * 16)
    flex = evaluate(table(gemm(64, 256, 256, NM(1, 8)), gemm(64, 256, 256, NM(1, 32))), HW["flex_nm_systolic"])
    assert flex.weight_bytes[0] / (256 * 256 * 2) == pytest.approx((16 + 3) / 128)
    assert flex.weight_bytes[1] / (256 * 256 * 2) == pytest.approx((16 + 5) / (32 * 16))
    assert NM(1, 32).index_bits == math.ceil(math.log2(32))


def test_a100_stores_1_8_as_2_4_and_edge_npu_keeps_compressed_fallback():
    a = evaluate(table(gemm(64, 256, 256, NM(1, 8))), A100)
    assert (a.exec_pat_n[0], a.exec_pat_m[0]) == (2, 4)
    assert a.weight_bytes[0] / (256 * 256 * 2) == pytest.approx(0.5625)
    e = evaluate(table(gemm(64, 256, 256, NM(4, 8))), HW["edge_npu"])  # no native fit, compressed storage
    assert (e.exec_pat_n[0], e.exec_pat_m[0]) == (1, 1)
    assert e.weight_bytes[0] / (256 * 256 * 2) == pytest.approx(4 * (16 + 3) / (8 * 16))
    assert e.exec_flops[0] == e.dense_flops[0]


def test_one_row_input_is_padded_for_sparse_kernels():
    # M=1 runs as 32 rows on the A100 sparse path: compute of 32 rows at half K
    hw = replace_field(A100, "efficiency.launch_overhead_s", 0.0)
    one = evaluate(table(gemm(1, 4096, 4096, NM(2, 4))), hw)
    rows32 = evaluate(table(gemm(32, 4096, 4096, NM(2, 4))), hw)
    assert one.compute_time_s[0] == pytest.approx(rows32.compute_time_s[0])


def test_matmul_and_elementwise_are_dense_and_memory_bound():
    ops = [
        Op("scores", "matmul", m=197, n=197, k=64, batch=12, pattern=NM(2, 4)),
        Op("softmax", "elementwise", elements=12 * 197 * 197, flops_per_element=5, inputs=1),
        Op("add", "elementwise", elements=197 * 768, flops_per_element=1, inputs=2),
    ]
    c = evaluate(table(*ops), toy())
    assert (c.exec_pat_n == 1).all() and (c.exec_pat_m == 1).all()
    assert c.exec_flops[0] == c.dense_flops[0] == 2 * 197 * 197 * 64 * 12
    assert c.weight_bytes.tolist() == [0, 0, 0]
    assert c.dram_bytes[1] == 12 * 197 * 197 * 2 * 2  # read + write, fp16
    assert c.dram_bytes[2] == 197 * 768 * 3 * 2  # two inputs + output
    assert c.compute_time_s[1] == pytest.approx(12 * 197 * 197 * 5 / 1e12)
    assert c.bound[2] == BOUND_MEMORY


def test_re_reads_when_working_set_exceeds_on_chip_memory():
    big = gemm(4096, 4096, 4096)
    fits = evaluate(table(big), toy(memory__onchip_bytes=s(1e9)))
    small = evaluate(table(big), toy(memory__onchip_bytes=s(8 * 2**20)))
    assert fits.dram_bytes[0] == 3 * 4096 * 4096 * 2
    # 8 MiB buffer: T = floor(sqrt(8 MiB / 4 B)) = 1448 -> A and B each read ceil(4096/1448) = 3 times
    assert small.dram_bytes[0] == 3 * (4096 * 4096 * 2) * 2 + 4096 * 4096 * 2


def test_evaluate_does_not_mutate_and_grid_matches_single_evaluations():
    ops = [gemm(197, 2304, 768, NM(1, 8)), gemm(1, 4096, 11008), Op("ln", "elementwise", elements=1000, flops_per_element=8),
           Op("av", "matmul", m=197, n=64, k=197, batch=12)]
    t = table(*ops)
    before = {k: np.copy(v) for k, v in t._asdict().items()}
    hws = list(HW.values())
    grid = evaluate_grid(t, hws)
    for key, value in t._asdict().items():
        assert np.array_equal(value, before[key])
    for i, hw in enumerate(hws):
        single = evaluate(t, hw)
        for name, arr in single._asdict().items():
            np.testing.assert_allclose(getattr(grid, name)[i], arr, rtol=1e-12, err_msg=name)
    pats = [NM(1, 1), NM(2, 4), NM(1, 8)]
    g3 = evaluate_grid(t, hws, patterns=pats)
    assert g3.latency_s.shape == (len(hws), 3, 4)
    for j, p in enumerate(pats):
        swapped = [Op(o.name, o.kind, m=o.m, n=o.n, k=o.k, batch=o.batch, elements=o.elements,
                      flops_per_element=o.flops_per_element, pattern=p if o.kind == "gemm" else o.pattern) for o in ops]
        ref = evaluate(table(*swapped), HW["flex_nm_systolic"])
        k = [h.name for h in hws].index("flex_nm_systolic")
        np.testing.assert_allclose(g3.latency_s[k, j], ref.latency_s, rtol=1e-12)


def test_fp16_on_tpu_is_a_labelled_emulation_and_missing_dtypes_are_errors():
    t = table(gemm(1024, 1024, 1024))
    # the TPU files say, with a source, that fp16 runs as bf16; nothing else is substituted
    assert HW["tpu_v4"].compute.emulated_dtypes == {"fp16": "bf16"}
    assert evaluate(t, HW["tpu_v4"]).compute_time_s[0] == evaluate(t, HW["tpu_v4"], dtype="bf16").compute_time_s[0]
    with pytest.raises(ConfigError, match=r"tpu_v4.*dtype 'int8' \(op 'g1024x1024x1024'\)"):
        evaluate(table(gemm(1024, 1024, 1024, dtype="int8")), HW["tpu_v4"])
    with pytest.raises(ConfigError, match=r"tpu_v4.*no matrix rate for dtype 'fp8'.*bf16"):
        evaluate(t, HW["tpu_v4"], dtype="fp8")


dims = st.integers(1, 16384)
patterns = st.sampled_from([NM(1, 1), NM(2, 4), NM(1, 4), NM(1, 8), NM(1, 16), NM(1, 32), NM(4, 8), NM(2, 8)])
targets = st.sampled_from(sorted(HW))


@settings(max_examples=150, deadline=None)
@given(dims, dims, dims, st.integers(1, 4), patterns, targets)
def test_cost_invariants(m, n, k, batch, pattern, target):
    hw = HW[target]
    k = max(pattern.m, k - k % pattern.m)
    t = table(gemm(m, n, k, pattern, batch=batch))
    c = evaluate(t, hw)
    overhead = batch * hw.efficiency.launch_overhead_s.value
    assert c.latency_s[0] >= c.compute_time_s[0] and c.latency_s[0] >= c.memory_time_s[0] and c.latency_s[0] >= overhead
    assert c.exec_flops[0] <= c.dense_flops[0]
    dense = evaluate(table(gemm(m, n, k, batch=batch)), hw)
    assert dense.latency_s[0] / c.latency_s[0] <= pattern.m / pattern.n * (1 + 1e-9)  # speedup <= m/n
    more_bw = evaluate(t, replace_field(hw, "memory.dram_bw_bytes_per_s", 2 * hw.memory.dram_bw_bytes_per_s.value))
    assert more_bw.latency_s[0] <= c.latency_s[0] * (1 + 1e-12)
    faster = evaluate(t, replace_field(hw, "compute.clock_hz", 1.5 * hw.compute.clock_hz.value))
    assert faster.latency_s[0] <= c.latency_s[0] * (1 + 1e-12)
    # Each unit's load path carries 1/units of the DRAM bandwidth (cost.memory_occupancy), so
    # more units are compared at the same bandwidth per unit.
    wider = evaluate(t, replace_field(replace_field(hw, "compute.units", 2 * hw.compute.units.value),
                                      "memory.dram_bw_bytes_per_s", 2 * hw.memory.dram_bw_bytes_per_s.value))
    assert wider.latency_s[0] <= c.latency_s[0] * (1 + 1e-12)
    bigger = evaluate(t, replace_field(hw, "memory.onchip_bytes", 4 * hw.memory.onchip_bytes.value))
    assert bigger.dram_bytes[0] <= c.dram_bytes[0]


def test_strict_dtypes_on_the_a100():
    # fp32 runs at the CUDA-core fp32 rate (19.5 TFLOP/s), not silently at TF32 (156 TFLOP/s)
    big = table(gemm(8192, 8192, 8192))
    fp32 = evaluate(big, A100, dtype="fp32").compute_time_s[0]
    tf32 = evaluate(big, A100, dtype="tf32").compute_time_s[0]
    assert fp32 / tf32 == pytest.approx(128 / 16)
    # the A100 has no fp8: an error naming the valid dtypes, not the INT8 rate
    with pytest.raises(ConfigError, match=r"a100_80gb.*no matrix rate for dtype 'fp8'; valid: fp16, bf16, tf32, int8, fp32"):
        evaluate(big, A100, dtype="fp8")
    with pytest.raises(ConfigError, match=r"dtype 'fp8' \(op"):
        evaluate(table(gemm(64, 64, 64, dtype="fp8")), A100)


def test_fused_profile_attention_and_launches_by_hand():
    # One causal attention block on the toy target: scores (1 x 64 x 64 x 16), softmax, AV.
    ops = [Op("s", "matmul", m=64, n=64, k=16, role="attn_score", causal=True),
           Op("p", "elementwise", elements=64 * 64, flops_per_element=5, role="softmax"),
           Op("o", "matmul", m=64, n=16, k=64, role="attn_av", causal=True)]
    hw = toy(efficiency__launch_overhead_s=s(1e-6), efficiency__graph_launch_overhead_s=s(0.25e-6))
    eager = evaluate(table(*ops), hw)
    fused = evaluate(table(*ops), hw, profile="fused")  # the former name of runtime= still works
    graph = evaluate(table(*ops), hw, runtime="graph")
    # eager: three kernels, each costing max(1 us host, busy + 0.25 us floor); the 64x64 fp16
    # scores written and read back (8192 B each way)
    busy_each = [max(c, m) for c, m in zip(eager.compute_time_s, eager.memory_time_s)]
    assert eager.latency_s == pytest.approx([max(1e-6, b + 0.25e-6) for b in busy_each])
    # graph: the same three kernels and bytes, no host cost: busy + 0.25 us each
    assert graph.latency_s == pytest.approx([b + 0.25e-6 for b in busy_each])
    assert (graph.dram_bytes == eager.dram_bytes).all()
    assert eager.dram_bytes[0] == (64 * 16 + 16 * 64 + 64 * 64) * 2
    # fused: one kernel (0.25 us), S never written, P never read, causal half of the MACs
    assert fused.dram_bytes[0] == (64 * 16 + 16 * 64) * 2 and fused.dram_bytes[1] == 0
    assert fused.dram_bytes[2] == (64 * 16 + 64 * 16) * 2
    assert fused.exec_flops[0] == eager.exec_flops[0] / 2 and fused.exec_flops[2] == eager.exec_flops[2] / 2
    busy = sum(max(c, m) for c, m in zip(fused.compute_time_s, fused.memory_time_s))
    assert fused.latency_s.sum() == pytest.approx(busy + 0.25e-6)
    with pytest.raises(ConfigError, match="unknown runtime 'compiled'; valid: eager, graph, fused"):
        evaluate(table(*ops), hw, runtime="compiled")
    with pytest.raises(ConfigError, match="disagree"):
        evaluate(table(*ops), hw, runtime="graph", profile="fused")


def test_sparse_kernel_terms_small_m_slowdown_and_large_m_speedup():
    # On the A100 a 1-row input is padded to 32 rows, the sparse kernel has no split-K (at most 64
    # of 108 SMs stream 4096 outputs with 64-wide tiles), and each eager call pays the fitted
    # subclass overhead: slower than dense. Large GEMMs gain, below the 2x of the datasheet.
    one_row = evaluate(table(gemm(1, 4096, 4096)), A100).latency_s[0] / evaluate(table(gemm(1, 4096, 4096, NM(2, 4))), A100).latency_s[0]
    big = evaluate(table(gemm(8192, 8192, 8192)), A100).latency_s[0] / evaluate(table(gemm(8192, 8192, 8192, NM(2, 4))), A100).latency_s[0]
    assert one_row < 1.0 < big < 2.0


def test_memory_occupancy_by_hand():
    from pgf_sim.sim.tiling import memory_occupancy

    # 32 thread blocks on 108 SMs: dense kernels split K in ceil(108/32) = 4 -> all SMs stream;
    # without split-K (sparse kernels) 32/108 of them; split-K cannot exceed the K steps
    dense, sparse, short_k = memory_occupancy(np.array([32.0, 32.0, 32.0]), np.array([100.0, 100.0, 2.0]), 108.0,
                                              split_k=np.array([True, False, True]))
    assert (dense, sparse, short_k) == (1.0, pytest.approx(32 / 108), pytest.approx(64 / 108))


def test_emulated_dtypes_must_be_labelled_and_map_to_a_native_rate():
    with pytest.raises(ConfigError, match=r"compute.emulated_dtypes.fp8.*native: fp16, int8"):
        toy(compute__emulated_dtypes={"fp8": "bf16"}, compute__emulated_dtypes_source="x")
    with pytest.raises(ConfigError, match=r"compute.emulated_dtypes_source"):
        toy(compute__emulated_dtypes={"bf16": "fp16"})
    hw = toy(compute__emulated_dtypes={"bf16": "fp16"}, compute__emulated_dtypes_source="test: bf16 as fp16")
    t = table(gemm(64, 64, 64, dtype="bf16"))
    assert evaluate(t, hw).compute_time_s[0] == evaluate(table(gemm(64, 64, 64)), hw).compute_time_s[0]
