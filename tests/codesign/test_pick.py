"""pick(): the right answer on a hand-made results table, the runner-up, and infeasible limits."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgf_sim.codesign.decide.pareto import ResultTable, pareto_front
from pgf_sim.codesign.decide.pick import NoFeasibleCandidate, pick
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


# --- memory capacity and the footprint cap -------------------------------------------------
# footprint in GB; the target has 16 GB. The fastest candidate (1:16 at 1.0 ms) is modelled as
# needing 20 GB (a large KV cache, say), so it must never be picked whatever the objective.
_MEM_ROWS = [
    # recipe,  pattern, acc,   lat_ms, footprint_GB
    ("dense", "dense", 0.960, 4.0, 14.0),
    ("mdgf",  "2:4",   0.955, 2.4, 9.0),
    ("mdgf",  "1:8",   0.940, 1.4, 6.0),
    ("mdgf",  "1:16",  0.930, 1.0, 20.0),
]
MEM = ResultTable.from_records([
    dict(hardware="npu", recipe=r, pattern=p, accuracy_mean=a, accuracy_std=0.0, n_seeds=1, inference_flops=1e9,
         latency_s=lat * 1e-3, energy_j=lat * 1e-2, weight_bytes=1e6, train_flops=1e15, footprint_bytes=f * 1e9,
         dram_capacity_bytes=16e9)
    for r, p, a, lat, f in _MEM_ROWS
])


@pytest.mark.parametrize("objective", ["latency_s", "energy_j", "footprint_bytes", "accuracy"])
def test_candidate_over_capacity_never_picked(objective):
    p = pick(MEM, "npu", objective=objective, metric_limit=0.90)
    assert p.best.pattern != NM(1, 16) and (p.runner_up is None or p.runner_up.pattern != NM(1, 16))
    assert p.n_feasible == 3 and p.too_big == ("mdgf 1:16",)
    assert "exceeds the target's 16 GB: mdgf 1:16" in p.explanation
    # by hand: fastest that fits is 1:8 (1.4 ms); least memory 1:8 (6 GB); most accurate dense
    assert p.best.label == {"latency_s": "mdgf 1:8", "energy_j": "mdgf 1:8", "footprint_bytes": "mdgf 1:8",
                            "accuracy": "dense"}[objective]


def test_footprint_cap_and_no_feasible_names_memory():
    # a 10 GB cap leaves 2:4 (9 GB) and 1:8 (6 GB); the most accurate of them is 2:4
    p = pick(MEM, "npu", max_footprint_bytes=10e9)
    assert p.objective == "accuracy" and p.best.label == "mdgf 2:4"
    assert "footprint_bytes <= 10 GB" in p.explanation and "memory 9 GB" in p.explanation
    # only the candidate that does not fit meets the accuracy floor: nothing is feasible, and the
    # error says why (the memory), not only the limits
    over = ResultTable.from_records([dict(r.to_dict(), accuracy_mean=0.5 if r.pattern != NM(1, 16) else 0.93)
                                     for r in MEM])
    with pytest.raises(NoFeasibleCandidate, match=r"fits the target's memory.*1 do not fit its memory \(16 GB\)"
                                                  r".*Closest miss: mdgf 1:16.*footprint 20 GB exceeds the "
                                                  r"target's 16 GB") as exc:
        pick(over, "npu", metric_limit=0.9)
    assert exc.value.closest.label == "mdgf 1:16"


def test_unknown_footprint_rules_nothing_out_but_fails_a_cap():
    # results stored before footprints were (NaN) are still picked, but never under a footprint cap
    p = pick(TABLE, "flex", min_accuracy=0.93)
    assert p.too_big == () and "memory" not in p.explanation.split("Runner-up")[0].split("weights")[1]
    with pytest.raises(NoFeasibleCandidate, match="none has finite results"):
        pick(TABLE, "flex", max_footprint_bytes=1e12)


def test_one_seed_is_never_shown_as_certain():
    # one seed each: no "± 0.00", no "within seed noise" / distinguishable claim; "cannot tell"
    from pgf_sim.codesign.decide.records import pick_record

    one = ResultTable.from_records([
        dict(hardware="gpu", recipe=r, pattern=p, accuracy_mean=a, accuracy_std=0.0, n_seeds=1, inference_flops=1e9,
             latency_s=lat, energy_j=1e-3, weight_bytes=1e6, train_flops=1e15)
        for r, p, a, lat in (("dense", "dense", 0.9792, 2e-3), ("mdgf", "2:4", 0.9790, 1e-3))])
    p = pick(one, "gpu", min_accuracy=0.9)
    assert "97.90% (1 seed)" in p.explanation and "± 0.00" not in p.explanation
    assert "cannot tell (train more seeds to decide)" in p.explanation
    assert pick_record(p)["distinguishable_from_runner_up"] is None
    # with 3 seeds the judgement is made (TABLE: mdgf 1:8 vs mdgf 2:4 differ by 1.7 points, std 0.67)
    assert pick_record(pick(TABLE, "flex", min_accuracy=0.93))["distinguishable_from_runner_up"] is True
