"""Pattern mapping: a layer runs at the best native pattern it complies with, else dense."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgf_sim.core import NM
from pgf_sim.sim.hardware import load_hardware, replace_field
from pgf_sim.sim.mapping import (
    MODE_DENSE,
    MODE_DENSE_COMPRESSED,
    MODE_DENSE_FALLBACK,
    MODE_NATIVE,
    describe_mapping,
    map_patterns,
)

A100 = load_hardware("a100_80gb")
FLEX = load_hardware("flex_nm_systolic")


def run(hw, patterns):
    n = np.array([p.n for p in patterns])
    m = np.array([p.m for p in patterns])
    en, em, mode = map_patterns(n, m, hw)
    return [NM(int(a), int(b)) for a, b in zip(en, em)], mode.tolist()


def test_a100_runs_sparser_patterns_at_its_2_4_rate():
    # 1:4, 1:8, 1:16, 1:32 all hold at most 2 non-zeros per aligned 4-window -> valid 2:4 layouts
    execd, modes = run(A100, [NM(2, 4), NM(1, 4), NM(1, 8), NM(1, 16), NM(1, 32)])
    assert execd == [NM(2, 4)] * 5 and modes == [MODE_NATIVE] * 5


def test_a100_cannot_run_4_8_sparse():
    # 4:8 may put all 4 non-zeros in one 4-window: not a 2:4 layout -> dense, stored dense
    execd, modes = run(A100, [NM(4, 8), NM(2, 8), NM(1, 1)])
    assert execd == [NM(1, 1), NM(2, 4), NM(1, 1)]
    assert modes == [MODE_DENSE_FALLBACK, MODE_NATIVE, MODE_DENSE]


def test_tpu_runs_everything_dense_and_edge_npu_keeps_compressed_storage():
    execd, modes = run(load_hardware("tpu_v4"), [NM(2, 4), NM(1, 8)])
    assert execd == [NM(1, 1)] * 2 and modes == [MODE_DENSE_FALLBACK] * 2
    _, modes = run(load_hardware("edge_npu"), [NM(4, 8)])
    assert modes == [MODE_DENSE_COMPRESSED]


def test_flexible_design_picks_the_sparsest_compliant_pattern():
    execd, modes = run(FLEX, [NM(1, 8), NM(1, 32), NM(3, 8), NM(1, 6), NM(8, 16)])
    # 3:8 -> 4:8 (only fit); 1:6 -> 2:8 (an 8-window spans at most two 6-groups), sparser than 2:4
    assert execd == [NM(1, 8), NM(1, 32), NM(4, 8), NM(2, 8), NM(1, 1)]
    assert modes[:4] == [MODE_NATIVE] * 4 and modes[4] == MODE_DENSE_COMPRESSED


def test_mapping_is_vectorised_and_shape_preserving():
    n = np.array([[1, 2, 4], [1, 1, 2]])
    m = np.array([[8, 4, 8], [1, 32, 4]])
    en, em, mode = map_patterns(n, m, A100)
    assert en.shape == em.shape == mode.shape == (2, 3)
    assert mode.tolist() == [[MODE_NATIVE, MODE_NATIVE, MODE_DENSE_FALLBACK], [MODE_DENSE, MODE_NATIVE, MODE_NATIVE]]
    n_copy = n.copy()
    map_patterns(n, m, A100)
    assert (n == n_copy).all()  # inputs untouched


def test_describe_mapping_reports_per_layer():
    text = describe_mapping(np.array([1, 4, 1]), np.array([8, 8, 1]), A100)
    assert text == ["1:8 -> 2:4 (native)", "4:8 -> dense, no native pattern", "dense"]
    assert describe_mapping(np.array([4]), np.array([8]), load_hardware("edge_npu")) == [
        "4:8 -> dense math, compressed storage"
    ]


def test_replaced_native_set_changes_the_mapping():
    wide = replace_field(A100, "sparse.native_patterns", ["2:4", "1:8"])
    execd, _ = run(wide, [NM(1, 8), NM(1, 16)])
    assert execd == [NM(1, 8), NM(1, 8)]


HW = {name: load_hardware(name) for name in ["a100_80gb", "flex_nm_systolic", "tpu_v5e", "edge_npu", "vegeta_cpu"]}
pattern = st.integers(1, 32).flatmap(lambda m: st.tuples(st.integers(1, m), st.just(m)))


@settings(max_examples=200, deadline=None)
@given(pattern, st.sampled_from(sorted(HW)))
def test_mapping_properties(pat, name):
    hw = HW[name]
    layer = NM(*pat)
    (execd,), (mode,) = run(hw, [layer])
    if mode == MODE_NATIVE:
        assert execd in hw.sparse.native_patterns and layer.complies_with(execd)
        assert execd.density >= layer.density  # never executes fewer MACs than the layer holds
        fits = [p for p in hw.sparse.native_patterns if layer.complies_with(p)]
        assert execd.density == min(p.density for p in fits)
    else:
        assert execd == NM(1, 1)
        assert layer.is_dense or not any(layer.complies_with(p) for p in hw.sparse.native_patterns)


def test_vegeta_runs_1_8_and_1_16_at_its_1_4_rate():
    # VEGETA (HPCA 2023) executes 2:4 and 1:4 tiles; 1:8 and 1:16 weights are valid 1:4 layouts
    hw = load_hardware("vegeta_cpu")
    pats = [NM(1, 1), NM(2, 4), NM(1, 4), NM(1, 8), NM(1, 16), NM(2, 8), NM(3, 4)]
    execd, mode = run(hw, pats)
    assert execd == [NM(1, 1), NM(2, 4), NM(1, 4), NM(1, 4), NM(1, 4), NM(2, 4), NM(1, 1)]
    assert mode == [MODE_DENSE] + [MODE_NATIVE] * 5 + [MODE_DENSE_FALLBACK]
    # cost order dense > 2:4 > 1:4-class, and the 1:4-class patterns cost the same
    from pgf_sim.sim.cost import evaluate
    from pgf_sim.sim.ops import Op, Workload

    for m, n, k in ((4096, 4096, 4096), (512, 256, 256), (1, 4096, 4096)):
        ops = [Op(f"g{i}", "gemm", m=m, n=n, k=k, pattern=p, dtype="fp16") for i, p in enumerate(pats[:5])]
        t = evaluate(Workload("w", ops).table(), hw).latency_s
        assert t[0] > t[1] > t[2] and t[2] == t[3] == t[4]
    # a compute-bound layer reproduces the paper's 1:4 speedup over its own dense mode
    # (3.74 / 1.09 = 3.43x) within 5%; its 2:4 (2.20 / 1.09 = 2.02x) is under-predicted, as the
    # one fitted sparse factor states (1.71x)
    dense, half, quarter = evaluate(Workload("w", [
        Op(f"g{i}", "gemm", m=4096, n=4096, k=4096, pattern=p, dtype="fp16")
        for i, p in enumerate(pats[:3])]).table(), hw).latency_s
    assert dense / quarter == pytest.approx(3.74 / 1.09, rel=0.05)
    assert 1.6 < dense / half < 2.02
