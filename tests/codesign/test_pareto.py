"""Pareto-front correctness: properties against a brute-force definition, ties, NaN, noise."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgf_sim.codesign.decide.pareto import (
    COST_METRICS, Candidate, ResultTable, aggregate_seeds, dominance_matrix, fronts, pareto_front,
)
from pgf_sim.core import NM, ConfigError

# Small integer grids make exact ties and duplicates frequent.
values = st.integers(min_value=0, max_value=6)
points = st.lists(st.tuples(values, values), min_size=1, max_size=25)
noisy_points = st.lists(st.tuples(values, values, st.integers(0, 3)), min_size=1, max_size=25)


def dominates(a_j, c_j, a_i, c_i):
    """Textbook definition, written independently of the module."""
    return a_j >= a_i and c_j <= c_i and (a_j > a_i or c_j < c_i)


@given(points)
def test_front_matches_brute_force(pts):
    acc = np.array([p[0] for p in pts], float)
    cost = np.array([p[1] for p in pts], float)
    mask = pareto_front(acc, cost)
    for i in range(len(pts)):
        dominated = any(dominates(acc[j], cost[j], acc[i], cost[i]) for j in range(len(pts)) if j != i)
        assert mask[i] == (not dominated)


@given(points)
def test_off_front_dominated_by_a_front_point(pts):
    acc = np.array([p[0] for p in pts], float)
    cost = np.array([p[1] for p in pts], float)
    mask = pareto_front(acc, cost)
    assert mask.any()  # a non-empty finite set always has a non-dominated point
    on = np.flatnonzero(mask)
    for i in np.flatnonzero(~mask):
        assert any(dominates(acc[j], cost[j], acc[i], cost[i]) for j in on)
    for i in on:  # nothing on the front is dominated by anything
        assert not any(dominates(acc[j], cost[j], acc[i], cost[i]) for j in range(len(pts)))


@given(points, st.randoms(use_true_random=False))
def test_permutation_invariant(pts, rnd):
    acc = np.array([p[0] for p in pts], float)
    cost = np.array([p[1] for p in pts], float)
    perm = list(range(len(pts)))
    rnd.shuffle(perm)
    perm = np.array(perm)
    assert np.array_equal(pareto_front(acc, cost)[perm], pareto_front(acc[perm], cost[perm]))


@given(points, st.integers(0, 24), st.integers(0, 3), st.integers(0, 3))
def test_adding_a_dominated_point_keeps_the_front(pts, which, worse_acc, worse_cost):
    acc = np.array([p[0] for p in pts], float)
    cost = np.array([p[1] for p in pts], float)
    j = which % len(pts)
    if worse_acc == 0 and worse_cost == 0:
        worse_cost = 1  # must be strictly worse in something to be dominated
    acc2 = np.append(acc, acc[j] - worse_acc)
    cost2 = np.append(cost, cost[j] + worse_cost)
    m1, m2 = pareto_front(acc, cost), pareto_front(acc2, cost2)
    assert not m2[-1]
    assert np.array_equal(m1, m2[:-1])


def test_exact_duplicates_are_both_kept():
    mask = pareto_front([0.9, 0.9, 0.8, 0.95], [2.0, 2.0, 1.0, 3.0])
    assert mask.tolist() == [True, True, True, True]
    # equal accuracy, lower cost dominates; equal cost, higher accuracy dominates
    assert pareto_front([0.9, 0.9], [1.0, 2.0]).tolist() == [True, False]
    assert pareto_front([0.9, 0.8], [1.0, 1.0]).tolist() == [True, False]


def test_hand_example():
    # (acc, cost): A(0.70,1) B(0.80,2) C(0.75,3) dominated by B, D(0.90,5), E(0.85,6) dominated by D
    mask = pareto_front([0.70, 0.80, 0.75, 0.90, 0.85], [1, 2, 3, 5, 6])
    assert mask.tolist() == [True, True, False, True, False]


def test_multi_cost_columns():
    acc = [0.9, 0.9, 0.9]
    cost = [[1.0, 3.0], [3.0, 1.0], [3.0, 3.0]]  # the first two trade off; the third is dominated by both
    assert pareto_front(acc, cost).tolist() == [True, True, False]


def test_nan_raise_and_exclude():
    acc = [0.9, math.nan, 0.8]
    cost = [2.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match=r"rows \[1\]"):
        pareto_front(acc, cost)
    assert pareto_front(acc, cost, nan="exclude").tolist() == [True, False, True]
    assert pareto_front([0.9, 0.8], [math.nan, 1.0], nan="exclude").tolist() == [False, True]


def test_noise_aware_keeps_points_within_noise():
    acc = [0.90, 0.89, 0.80]
    cost = [2.0, 3.0, 1.0]
    std = [0.01, 0.01, 0.01]
    assert pareto_front(acc, cost).tolist() == [True, False, True]
    # 0.90 - 0.89 = 0.01 < 1 * sqrt(2) * 0.01: the second point is not clearly beaten
    assert pareto_front(acc, cost, acc_std=std, k=1.0).tolist() == [True, True, True]
    # with k = 0 the noise-aware relation is the classic one
    assert pareto_front(acc, cost, acc_std=std, k=0.0).tolist() == [True, False, True]
    # a gap of 10 points is beyond 2 combined std
    assert pareto_front([0.90, 0.80], [1.0, 2.0], acc_std=[0.01, 0.01], k=2.0).tolist() == [True, False]


@given(noisy_points, st.sampled_from([0.0, 0.5, 1.0, 2.0]))
@settings(max_examples=150)
def test_noise_aware_front_properties(pts, k):
    acc = np.array([p[0] for p in pts], float)
    cost = np.array([p[1] for p in pts], float)
    std = np.array([p[2] for p in pts], float) / 2
    mask = pareto_front(acc, cost, acc_std=std, k=k)
    dom = dominance_matrix(acc, cost, acc_std=std, k=k)
    assert mask.any()
    assert np.array_equal(mask, ~dom.any(axis=0))
    on = np.flatnonzero(mask)
    for i in np.flatnonzero(~mask):  # transitivity: every dropped point is beaten by a front point
        assert dom[on, i].any()
    assert np.all(pareto_front(acc, cost) <= mask)  # noise only ever keeps more: classic front is a subset


def test_blocked_computation_matches_single_block():
    rng = np.random.default_rng(0)
    acc = rng.integers(0, 40, 1300).astype(float)
    cost = rng.integers(0, 40, 1300).astype(float)
    dom = dominance_matrix(acc, cost)
    assert np.array_equal(pareto_front(acc, cost), ~dom.any(axis=0))


def _cand(hw, recipe, pattern, acc, lat, **kw):
    base = dict(hardware=hw, recipe=recipe, pattern=NM.parse(pattern), accuracy_mean=acc, accuracy_std=0.0,
                n_seeds=1, inference_flops=lat * 1e12, latency_s=lat, energy_j=lat * 10, weight_bytes=1e6,
                train_flops=1e15)
    base.update(kw)
    return Candidate(**base)


def test_fronts_per_hardware_and_metric_with_nan_report():
    table = ResultTable([
        _cand("a100", "ste", "2:4", 0.90, 2.0),
        _cand("a100", "mdgf", "1:8", 0.88, 1.0),
        _cand("a100", "sr-ste", "1:8", 0.85, 1.5),  # dominated by mdgf 1:8
        _cand("a100", "sdgf", "1:16", math.nan, 0.5),
        _cand("tpu", "ste", "2:4", 0.90, 3.0),
        _cand("tpu", "mdgf", "1:8", 0.88, 3.0),  # same cost, less accurate: dominated
    ])
    fr = fronts(table, metrics=("latency_s", "energy_j"))
    assert set(fr) == {("a100", "latency_s"), ("a100", "energy_j"), ("tpu", "latency_s"), ("tpu", "energy_j")}
    f = fr[("a100", "latency_s")]
    assert f.indices == (1, 0)  # sorted by latency
    assert [c.label for c in f.candidates(table)] == ["mdgf 1:8", "ste 2:4"]
    assert len(f.excluded) == 1 and f.excluded[0][0] == 3 and "NaN" in f.excluded[0][1]
    assert fr[("tpu", "latency_s")].indices == (4,)


def test_fronts_noise_sem_uses_standard_error():
    # 0.90 vs 0.88 at higher cost; std 0.03 over 9 seeds -> sem 0.01, combined 0.0141 < 0.02 gap
    table = ResultTable([
        _cand("hw", "a", "2:4", 0.90, 1.0, accuracy_std=0.03, n_seeds=9),
        _cand("hw", "b", "1:8", 0.88, 2.0, accuracy_std=0.03, n_seeds=9),
    ])
    assert fronts(table, ("latency_s",), noise="sem")[("hw", "latency_s")].indices == (0,)
    # with the per-seed std (combined 0.042 > 0.02) the second is within noise and stays
    assert fronts(table, ("latency_s",), noise="std")[("hw", "latency_s")].indices == (0, 1)
    assert fronts(table, ("latency_s",))[("hw", "latency_s")].noise_k is None


def test_aggregate_seeds_mean_std_n_and_nan_propagation():
    rows = []
    for seed, acc in enumerate([0.80, 0.82, 0.84]):
        rows.append(dict(hardware="a100", recipe="mdgf", pattern="1:8", seed=seed, accuracy=acc, run_id=f"r{seed}",
                         **{m: 1.0 for m in COST_METRICS}))
    rows.append(dict(hardware="a100", recipe="ste", pattern="1:8", seed=0, accuracy=0.7, **{m: 2.0 for m in COST_METRICS}))
    rows.append(dict(hardware="a100", recipe="ste", pattern="1:8", seed=1, accuracy=None, **{m: 2.0 for m in COST_METRICS}))
    table = aggregate_seeds(rows)
    assert len(table) == 2
    mdgf = table.where(recipe="mdgf")[0]
    assert mdgf.pattern == NM(1, 8)
    assert mdgf.accuracy_mean == pytest.approx(0.82)
    assert mdgf.accuracy_std == pytest.approx(0.02)  # sample std of 0.80, 0.82, 0.84
    assert mdgf.n_seeds == 3 and mdgf.run_ids == ("r0", "r1", "r2")
    assert math.isnan(table.where(recipe="ste")[0].accuracy_mean)


def test_aggregate_seeds_flags_mixed_results():
    def row(seed, run, latency):
        return dict(hardware="a100", recipe="sr-ste", pattern="2:4", seed=seed, run_id=run, accuracy=0.9,
                    **{**{m: 1.0 for m in COST_METRICS}, "latency_s": latency})

    # the same seed twice: two configurations mixed in one table
    with pytest.raises(ConfigError, match=r"seed 0 appears 2 times \(runs a, c\)"):
        aggregate_seeds([row(0, "a", 1.0), row(1, "b", 1.0), row(0, "c", 2.0)])
    # different seeds whose captured costs differ: kept, mean cost, spread recorded (1.0 vs 1.5 -> 0.4)
    cand = aggregate_seeds([row(0, "a", 1.0), row(1, "b", 1.5)])[0]
    assert cand.latency_s == pytest.approx(1.25) and cand.cost_spread == pytest.approx(0.4)
    assert aggregate_seeds([row(0, "a", 1.0), row(1, "b", 1.0)])[0].cost_spread == 0.0


def test_from_records_strict_and_mixed_label():
    rec = dict(hardware="x", recipe="ste", pattern="mixed:fc1=1:8,fc2=2:4", accuracy_mean=0.9, accuracy_std=0.0,
               n_seeds=1, inference_flops=1, latency_s=1, energy_j=1, weight_bytes=1, train_flops=1)
    table = ResultTable.from_records([rec])
    assert table[0].pattern == "mixed:fc1=1:8,fc2=2:4"
    assert table.column("latency_s").dtype == np.float64
    with pytest.raises(ConfigError, match="unknown key"):
        ResultTable.from_records([{**rec, "latency": 1}])
    with pytest.raises(ConfigError, match="missing key"):
        ResultTable.from_records([{k: v for k, v in rec.items() if k != "energy_j"}])


def test_pareto_and_pick_import_no_torch_or_plotly():
    code = ("import sys, pgf_sim.codesign.decide.pareto, pgf_sim.codesign.decide.pick; "
            "bad = [m for m in ('torch', 'plotly') if m in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_footprint_is_a_pareto_cost():
    # by hand: (acc, footprint GB) = (0.95, 9), (0.93, 6), (0.90, 7), (0.96, 14), and one not stored (NaN)
    table = ResultTable([
        _cand("npu", "mdgf", "2:4", 0.95, 2.0, footprint_bytes=9e9),
        _cand("npu", "mdgf", "1:8", 0.93, 1.0, footprint_bytes=6e9),
        _cand("npu", "ste", "1:8", 0.90, 1.0, footprint_bytes=7e9),  # dominated by mdgf 1:8
        _cand("npu", "dense", "dense", 0.96, 4.0, footprint_bytes=14e9),
        _cand("npu", "ste", "1:16", 0.80, 0.5),  # footprint unknown: off this front, reported
    ])
    assert "footprint_bytes" in COST_METRICS
    fr = fronts(table, ("footprint_bytes",))[("npu", "footprint_bytes")]
    assert [c.label for c in fr.candidates(table)] == ["mdgf 1:8", "mdgf 2:4", "dense"]
    assert [why for _, why in fr.excluded] == ["ste 1:16: footprint_bytes is NaN"]
    # per-seed rows: footprint averaged like every cost; the capacity is carried, rows without both still load
    rows = [dict(hardware="npu", recipe="mdgf", pattern="2:4", seed=s, accuracy=0.9,
                 **{**{m: 1.0 for m in COST_METRICS}, "footprint_bytes": fp}, dram_capacity_bytes=8e9) for s, fp in ((0, 4e9), (1, 6e9))]
    (cand,) = aggregate_seeds(rows)
    assert cand.footprint_bytes == 5e9 and cand.dram_capacity_bytes == 8e9 and cand.fits_memory
    old = [{k: v for k, v in r.items() if k not in ("footprint_bytes", "dram_capacity_bytes")} for r in rows]
    (cand,) = aggregate_seeds(old)
    assert math.isnan(cand.footprint_bytes) and cand.fits_memory
