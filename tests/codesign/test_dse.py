"""Hardware design-space exploration: --set parsing, variants, monotone bandwidth, native-pattern gain."""
from __future__ import annotations

import numpy as np
import pytest

from pgf_sim.codesign.explore.dse import (
    Axis, builtin_workloads, evaluate_variants, explore, make_variants, native_pattern_gain, parse_set,
)
from pgf_sim.core import NM, ConfigError
from pgf_sim.sim.cost import evaluate
from pgf_sim.sim.hardware import load_hardware
from pgf_sim.sim.workloads import gemm_workload


@pytest.fixture(scope="module")
def a100():
    return load_hardware("a100_80gb")


def test_parse_set_numbers_lists_and_patterns():
    assert parse_set("memory.dram_bw_bytes_per_s=1e12, 2.5e12") == Axis("memory.dram_bw_bytes_per_s", (1e12, 2.5e12))
    assert parse_set("compute.units=64,128").values == (64, 128)
    # patterns stay strings (YAML 1.1 would read 2:4 as the base-60 integer 124)
    assert parse_set("sparse.native_patterns=[2:4],[2:4,1:8],[]").values == (["2:4"], ["2:4", "1:8"], [])
    assert parse_set("sparse.unsupported=dense,dense_compressed").values == ("dense", "dense_compressed")
    assert parse_set("compute.tile_shapes.mn=[[128,128]],[[256, 128],[64,64]]").values == (
        [[128, 128]], [[256, 128], [64, 64]])
    for bad in ("memory.dram_bw_bytes_per_s", "=1,2", "k=[1,2", "k=1,,2", "k="):
        with pytest.raises(ConfigError):
            parse_set(bad)


def test_cartesian_product_applies_every_setting(a100):
    vs = make_variants(a100, ["memory.dram_bw_bytes_per_s=1e12,2e12", "sparse.native_patterns=[2:4],[2:4,1:8]"])
    assert len(vs) == 4
    assert [v.hw.memory.dram_bw_bytes_per_s.value for v in vs] == [1e12, 1e12, 2e12, 2e12]
    assert [v.hw.sparse.native_patterns for v in vs] == [(NM(2, 4),), (NM(2, 4), NM(1, 8))] * 2
    assert vs[3].name == "dram_bw_bytes_per_s=2e+12, native_patterns=[2:4,1:8]"
    assert a100.memory.dram_bw_bytes_per_s.value == 2.039e12  # base untouched
    with pytest.raises(ConfigError, match="unknown field"):
        make_variants(a100, ["memory.bandwidth=1e12"])
    with pytest.raises(ConfigError, match="lists go in brackets"):
        make_variants(a100, ["sparse.native_patterns=2:4"])
    with pytest.raises(ConfigError, match="must be > 0"):
        make_variants(a100, ["compute.clock_hz=-1"])
    with pytest.raises(ConfigError, match="twice"):
        make_variants(a100, ["compute.units=1,2", "compute.units=3"])


def test_more_bandwidth_never_slower(a100):
    # A memory-bound decode-like GEMM (1 token row) and a ViT-Ti forward pass.
    wl = {"gemv": gemm_workload(1, 4096, 4096, pattern=NM(2, 4)),
          **builtin_workloads(["vit_ti"], ["2:4"], batch=1)}
    res = explore(a100, ["memory.dram_bw_bytes_per_s=1e12,4e12"], wl)
    assert res.latency_s.shape == (2, 2)
    assert np.all(res.latency_s[1] <= res.latency_s[0])
    # the 1-row GEMM is memory-bound, so 4x bandwidth must make it strictly faster
    assert res.latency_s[1, 0] < res.latency_s[0, 0]
    assert res.best("gemv").name == "dram_bw_bytes_per_s=4e+12"


def test_totals_equal_direct_per_workload_evaluation(a100):
    wl = {"a": gemm_workload(64, 1024, 512, pattern=NM(1, 8)), **builtin_workloads(["vit_ti"], ["dense"])}
    vs = make_variants(a100, ["sparse.native_patterns=[2:4],[2:4,1:8]"])
    res = evaluate_variants(a100.name, vs, wl)
    for v, var in enumerate(vs):
        for w, name in enumerate(res.workloads):
            direct = evaluate(wl[name].table(), var.hw)
            assert res.latency_s[v, w] == pytest.approx(direct.latency_s.sum(), rel=1e-12)
            assert res.energy_j[v, w] == pytest.approx(direct.energy_j.sum(), rel=1e-12)
    # area comes from the YAML unchanged (both variants share the base's estimate and its source)
    expected = np.nan if a100.area_mm2 is None else a100.area_mm2.value
    np.testing.assert_array_equal(res.area_mm2, [expected, expected])
    assert res.area_source == (("" if a100.area_mm2 is None else a100.area_mm2.source),) * 2


def test_native_1_8_gain(a100):
    wl = {"mdgf 1:8": gemm_workload(4096, 4096, 4096, pattern=NM(1, 8)),
          "dense": gemm_workload(4096, 4096, 4096)}
    g = native_pattern_gain(a100, "1:8", wl, area_with_mm2=850.0, area_source="assumption: test")
    assert g.patterns_without == (NM(2, 4),) and g.patterns_with == (NM(2, 4), NM(1, 8))
    # a dense model gains nothing; a 1:8 model (run at the 2:4 rate before) gets faster,
    # by at most m/n over 2:4 = (8/1)/(4/2) = 4x
    assert g.speedup[1] == pytest.approx(1.0)
    assert 1.0 < g.speedup[0] <= 4.0
    assert g.energy_saving[0] > 0
    assert g.uses_pattern.tolist() == [True, False]
    text = g.statement()
    assert "Native 1:8 on a100_80gb" in text and "assumption: test" in text
    # the verdict is over the one workload that can use 1:8, not diluted by the dense one
    assert f"over the 1 workload(s) with 1:8-compatible layers: geometric-mean speedup {g.speedup[0]:.2f}x" in text
    # 2:4 layers cannot run as 1:8 (a 2:4 group may hold 2 non-zeros in one 8-window): nothing to gain
    g24 = native_pattern_gain(a100, "1:8", {"2:4": gemm_workload(256, 256, 256, pattern=NM(2, 4))})
    assert g24.uses_pattern.tolist() == [False] and "nothing to gain" in g24.statement()
    with pytest.raises(ConfigError, match="dense always runs"):
        native_pattern_gain(a100, "dense", wl)


def test_area_axis_from_yaml_override(a100):
    res = explore(a100, ["area_mm2=800,900"], {"g": gemm_workload(128, 256, 256)})
    assert res.area_mm2.tolist() == [800.0, 900.0]
    assert res.area_source == ("design-space override", "design-space override")
    assert "area mm2" in res.format_table()
