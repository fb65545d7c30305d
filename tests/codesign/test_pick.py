"""pick(): the right answer on a hand-made results table, the runner-up, and infeasible limits."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgf_sim.codesign.pareto import ResultTable, pareto_front
from pgf_sim.codesign.pick import NoFeasibleCandidate, pick
from pgf_sim.core import NM, PgfSimError, UnknownNameError

# A hand-made results table: two hardware targets, five configurations each.
# latency in ms on "flex" falls with sparsity; on "tpu" (no N:M support) it does not.
_ROWS = [
    # hw,    recipe,   pattern, acc,   std,   lat_ms, energy_mJ, weight_MB
    ("flex", "dense",  "dense", 0.960, 0.004, 4.0, 40.0, 8.0),
    ("flex", "sr-ste", "2:4",   0.955, 0.005, 2.4, 24.0, 4.5),
    ("flex", "mdgf",   "2:4",   0.957, 0.003, 2.4, 24.0, 4.5),
    ("flex", "sr-ste", "1:8",   0.910, 0.010, 1.4, 14.0, 2.5),
    ("flex", "mdgf",   "1:8",   0.940, 0.006, 1.4, 14.0, 2.5),
    ("flex", "mdgf",   "1:16",  0.900, 0.008, 1.0, 10.0, 1.4),
    ("tpu",  "dense",  "dense", 0.960, 0.004, 3.0, 50.0, 8.0),
    ("tpu",  "mdgf",   "1:8",   0.940, 0.006, 3.0, 50.0, 2.5),
]
TABLE = ResultTable.from_records([
    dict(hardware=h, recipe=r, pattern=p, accuracy_mean=a, accuracy_std=s, n_seeds=3, inference_flops=lat * 1e9,
         latency_s=lat * 1e-3, energy_j=e * 1e-3, weight_bytes=w * 1e6, train_flops=1e15)
    for h, r, p, a, s, lat, e, w in _ROWS
])


def test_fastest_meeting_accuracy():
    # >= 93%: candidates dense, sr-ste 2:4, mdgf 2:4, mdgf 1:8 -> fastest is mdgf 1:8 (1.4 ms)
    p = pick(TABLE, "flex", min_accuracy=0.93)
    assert p.objective == "latency_s"
    assert (p.best.recipe, p.best.pattern) == ("mdgf", NM(1, 8))
    # runner-up: the 2:4 ones tie at 2.4 ms; the tie goes to higher accuracy: mdgf 2:4
    assert (p.runner_up.recipe, p.runner_up.pattern) == ("mdgf", NM(2, 4))
    assert p.n_feasible == 4 and p.n_candidates == 6
    assert "mdgf 1:8" in p.explanation and "1.71x lower latency" in p.explanation  # 2.4 / 1.4


def test_most_accurate_under_latency_cap():
    # <= 2.5 ms: sr-ste 2:4, mdgf 2:4, both 1:8, 1:16 -> most accurate is mdgf 2:4 (95.7%)
    p = pick(TABLE, "flex", max_latency_s=2.5e-3)
    assert p.objective == "accuracy"
    assert (p.best.recipe, p.best.pattern) == ("mdgf", NM(2, 4))
    assert (p.runner_up.recipe, p.runner_up.pattern) == ("sr-ste", NM(2, 4))
    # 95.7 vs 95.5: 0.2 points, combined std sqrt(0.3^2 + 0.5^2) = 0.58 points -> within noise
    assert "within seed noise" in p.explanation
    assert "0.20 points more accurate" in p.explanation


def test_energy_cap_and_explicit_objective():
    p = pick(TABLE, "flex", max_energy_j=15e-3, objective="energy_j")
    assert (p.best.recipe, p.best.pattern) == ("mdgf", NM(1, 16))
    assert (p.runner_up.recipe, p.runner_up.pattern) == ("mdgf", NM(1, 8))  # beats sr-ste 1:8 on accuracy


def test_same_question_other_hardware_other_answer():
    # on the TPU sparsity buys no latency, so the tie at 3 ms goes to the more accurate dense model
    p = pick(TABLE, "tpu", min_accuracy=0.93)
    assert p.best.recipe == "dense" and p.runner_up.pattern == NM(1, 8)


def test_near_tie_on_cost_goes_to_accuracy():
    rows = [dict(hardware="gpu", recipe=r, pattern=p, accuracy_mean=a, accuracy_std=0.01, n_seeds=2,
                 inference_flops=1.0, latency_s=lat, energy_j=1.0, weight_bytes=1.0, train_flops=1.0)
            for r, p, a, lat in (("dense", "dense", 0.889, 1.631e-3), ("sr-ste", "1:8", 0.897, 1.632e-3),
                                 ("mdgf", "1:16", 0.80, 1.0e-3))]
    table = ResultTable.from_records(rows)
    # 1.632 ms is within 1% of 1.631 ms: the more accurate sr-ste 1:8 wins the tie
    p = pick(table, "gpu", min_accuracy=0.85)
    assert (p.best.recipe, p.runner_up.recipe) == ("sr-ste", "dense")
    assert "tied on latency" in p.explanation
    # with exact comparison the faster one wins
    p = pick(table, "gpu", min_accuracy=0.85, tie_rtol=0.0)
    assert (p.best.recipe, p.runner_up.recipe) == ("dense", "sr-ste")
    assert "1.00x lower latency" in p.explanation


def test_infeasible_names_the_closest_miss():
    with pytest.raises(NoFeasibleCandidate) as info:
        pick(TABLE, "flex", min_accuracy=0.95, max_latency_s=1.5e-3)
    err = info.value
    assert isinstance(err, PgfSimError)
    # relative violations: mdgf 1:8 misses accuracy by 1/95 = 1.05%; mdgf 2:4 misses latency by 60%
    assert (err.closest.recipe, err.closest.pattern) == ("mdgf", NM(1, 8))
    msg = str(err)
    assert "Closest miss: mdgf 1:8" in msg and "misses >= 95.00%" in msg and "meets <= 1.5 ms" in msg


def test_single_feasible_has_no_runner_up():
    p = pick(TABLE, "flex", min_accuracy=0.959)
    assert p.best.recipe == "dense" and p.runner_up is None
    assert "only feasible" in p.explanation
    row = p.to_row()
    assert row["pick"] == "dense" and row["runner_up"] == "-" and row["feasible"] == "1/6"


def test_unknown_names_list_choices():
    with pytest.raises(UnknownNameError, match="flex, tpu"):
        pick(TABLE, "h100")
    with pytest.raises(UnknownNameError, match="valid: accuracy"):
        pick(TABLE, "flex", objective="speed")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(50, 100), st.integers(1, 20)), min_size=1, max_size=15),
       st.integers(50, 100), st.sampled_from([0.0, 0.01, 0.2]))
def test_pick_properties(points, floor, tie):
    rows = [dict(hardware="hw", recipe=f"r{i}", pattern="2:4", accuracy_mean=a / 100, accuracy_std=0.0, n_seeds=1,
                 inference_flops=1.0, latency_s=lat * 1e-3, energy_j=1.0, weight_bytes=1.0, train_flops=1.0)
            for i, (a, lat) in enumerate(points)]
    table = ResultTable.from_records(rows)
    feasible = [c for c in table if c.accuracy_mean >= floor / 100]
    if not feasible:
        with pytest.raises(NoFeasibleCandidate):
            pick(table, "hw", min_accuracy=floor / 100)
        return
    p = pick(table, "hw", min_accuracy=floor / 100, tie_rtol=tie)
    best = p.best
    assert best.accuracy_mean >= floor / 100
    fastest = min(c.latency_s for c in feasible)
    assert best.latency_s <= fastest * (1 + tie)  # never slower than the tie window allows
    # on the accuracy-vs-latency front of the feasible set
    mask = pareto_front([c.accuracy_mean for c in feasible], [c.latency_s for c in feasible])
    assert mask[feasible.index(best)]
    assert p.n_feasible == len(feasible) and (p.runner_up is None) == (len(feasible) == 1)
