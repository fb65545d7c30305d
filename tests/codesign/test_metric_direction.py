"""Fronts, picks and budgets follow the task metric's direction (bpc: lower is better)."""

import pytest

from pgf_sim.core import ConfigError
from pgf_sim.core.metric import METRICS, get_metric
from pgf_sim.codesign.decide.pareto import ResultTable, fronts, pareto_front
from pgf_sim.codesign.decide.pick import pick
from pgf_sim.codesign.query.views import accuracy_floor, format_fronts

BPC = METRICS["bpc"]


def _row(recipe, pattern, bpc, latency, std=0.01):
    return {"hardware": "hw", "recipe": recipe, "pattern": pattern, "accuracy_mean": bpc, "accuracy_std": std,
            "n_seeds": 3, "inference_flops": latency * 1e9, "latency_s": latency, "energy_j": latency,
            "weight_bytes": latency * 1e6, "train_flops": 1.0}


# dense best and costliest; 2:4 and 1:16 cheaper and worse; "bad" is worse AND costlier than 2:4
ROWS = [_row("dense", "1:1", 2.70, 3.0), _row("sr-ste", "2:4", 2.74, 2.0), _row("sr-ste", "1:16", 2.82, 1.0),
        _row("mdgf", "2:4", 2.80, 2.0)]


def test_front_of_a_lower_is_better_metric_keeps_the_low_bpc_points():
    table = ResultTable.from_records(ROWS, BPC)
    front = [c.label for c in fronts(table, ("latency_s",))[("hw", "latency_s")].candidates(table)]
    assert front == ["sr-ste 1:16", "sr-ste 2:4", "dense"]  # cheapest first; mdgf 2:4 is dominated
    as_accuracy = ResultTable.from_records(ROWS)  # read the other way round, the front would differ
    assert [c.label for c in fronts(as_accuracy, ("latency_s",))[("hw", "latency_s")].candidates(as_accuracy)] == \
        ["sr-ste 1:16"]
    assert pareto_front([2.7, 2.9], [2.0, 1.0], higher_is_better=False).tolist() == [True, True]
    assert pareto_front([2.9, 2.7], [2.0, 1.0], higher_is_better=False).tolist() == [False, True]


def test_pick_limit_and_budget_in_bits_per_character():
    table = ResultTable.from_records(ROWS, BPC)
    assert pick(table, "hw", metric_limit=2.75).best.label == "sr-ste 2:4"  # fastest with bpc <= 2.75
    assert pick(table, "hw", metric_limit=2.90).best.label == "sr-ste 1:16"
    p = pick(table, "hw", max_latency_s=2.5)  # the best bpc within the cap
    assert p.best.label == "sr-ste 2:4" and "bits per character" in p.explanation and "bits/char" in p.explanation
    floor, why = accuracy_floor(table, "hw", 0.05)
    assert floor == pytest.approx(2.75) and "0.05 bits/char of the dense baseline (2.7000 bits/char)" in why
    with pytest.raises(ConfigError, match="min_accuracy applies to an accuracy task"):
        pick(table, "hw", min_accuracy=0.9)


def test_fronts_as_text_name_the_metric_and_its_unit():
    text = format_fronts(ResultTable.from_records(ROWS, BPC))
    assert "bits per character (bits/char, validation" in text and "lower is better" in text
    assert "bpc 2.7000 ± 0.0100 bits/char" in text


def test_metric_formatting_and_names():
    assert get_metric("accuracy").fmt(0.9261, 0.014) == "92.61% ± 1.40"
    assert BPC.fmt(2.94) == "2.9400 bits/char" and BPC.axis_label == "bits per character (bits/char, lower is better)"
    with pytest.raises(Exception, match="unknown metric 'bleu'; valid: accuracy, loss, bpc, perplexity"):
        get_metric("bleu")


def test_an_accuracy_limit_above_one_is_refused_not_read_as_percent():
    from pgf_sim.codesign.decide.quality import metric_limit
    from pgf_sim.core import ConfigError
    from pgf_sim.core.metric import get_metric

    acc = get_metric("accuracy")
    assert metric_limit(0.9, None, acc) == 0.9
    with pytest.raises(ConfigError, match=r"--limit 2.5 on an accuracy task: give the minimum accuracy as a fraction"):
        metric_limit(2.5, None, acc)
    assert metric_limit(2.5, None, get_metric("bpc")) == 2.5  # bits per character: any positive value


def test_machine_readable_pick_of_a_bpc_task_has_no_field_named_accuracy():
    from pgf_sim.codesign.decide.records import pick_record

    table = ResultTable.from_records(ROWS, BPC)
    row = pick_record(pick(table, "hw", metric_limit=2.75))
    assert row["metric"] == "bpc" and row["direction"] == "lower_is_better"
    assert row["quality_mean"] == pytest.approx(2.74) and row["runner_up_quality_mean"] == pytest.approx(2.70)
    assert not [k for k in row if "accuracy" in k]  # bpc never sits under an accuracy name
    acc_row = pick_record(pick(ResultTable.from_records(ROWS), "hw"))
    assert acc_row["accuracy_mean"] == acc_row["quality_mean"]  # the alias stays where it is true
