"""The HTML report: written, self-contained (plotly.js inline, no network), expected sections."""
from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from pgf_sim.codesign.decide.pareto import ResultTable
from pgf_sim.codesign.decide.pick import NoFeasibleCandidate, pick
from pgf_sim.codesign.explore.dse import explore, native_pattern_gain
from pgf_sim.codesign.report.report import Curve, LayerBreakdown, ReportData, render_html, write_report
from pgf_sim.core import NM
from pgf_sim.sim.cost import BOUND_NAMES, evaluate
from pgf_sim.sim.hardware import load_hardware, replace_field
from pgf_sim.sim.workloads import build_workload, gemm_workload

RECIPES = ("dense", "sr-ste", "mdgf")
PATTERNS = ("2:4", "1:8", "1:16")


def sample_data() -> ReportData:
    """A report bundle with every section filled from hand-made results and the real cost model."""
    hw = load_hardware("a100_80gb")
    flex = replace_field(dataclasses.replace(hw, name="a100_native_1_8"), "sparse.native_patterns", ["2:4", "1:8", "1:16"])
    rows = []
    rng = np.random.default_rng(0)
    for target in (hw, flex):
        for recipe in RECIPES:
            for pat in (("dense",) if recipe == "dense" else PATTERNS):
                nm = NM.parse(pat)
                cost = evaluate(build_workload("vit_ti", pattern=nm, merge_blocks=True).table(), target)
                acc = 0.97 - (0.0 if nm.is_dense else (0.04 if recipe == "sr-ste" else 0.02) * np.log2(nm.m / nm.n))
                rows.append(dict(hardware=target.name, recipe=recipe, pattern=pat, accuracy_mean=acc,
                                 accuracy_std=0.003 + 0.002 * rng.random(), n_seeds=3,
                                 inference_flops=float(cost.exec_flops.sum()), latency_s=float(cost.latency_s.sum()),
                                 energy_j=float(cost.energy_j.sum()), weight_bytes=float(cost.weight_bytes.sum()),
                                 train_flops=1e15 * (1.0 if recipe != "mdgf" else 1.1) * (0.5 + nm.density / 2)))
    table = ResultTable.from_records(rows)
    picks = [pick(table, h, min_accuracy=0.93) for h in (hw.name, flex.name)]
    errors = []
    try:
        pick(table, hw.name, min_accuracy=0.99)
    except NoFeasibleCandidate as exc:
        errors.append(str(exc))
    wl = build_workload("vit_ti", pattern=NM(1, 8), merge_blocks=True)
    cost = evaluate(wl.table(), flex)
    breakdown = LayerBreakdown(flex.name, "mdgf 1:8", list(wl.table().names), cost.latency_s, cost.energy_j,
                               [BOUND_NAMES[b] for b in cost.bound])
    steps = np.arange(0, 200, 10)
    noise = [Curve(r, steps, 1e-3 * (1 + i) * np.exp(-steps / 150), group=f"grad std {layer}",
                   y_std=1e-4 * np.ones(len(steps))) for i, r in enumerate(RECIPES) for layer in ("fc1", "fc2")]
    curves = [Curve(f"{r} 1:8", steps, 2.3 * np.exp(-steps / (60 + 10 * i)), group="train loss")
              for i, r in enumerate(RECIPES)]
    curves += [Curve(f"{r} 1:8", steps, 0.97 - 0.8 * np.exp(-steps / 40), group="eval accuracy") for r in RECIPES]
    wls = {"vit_ti mdgf 1:8": wl, "gemv 1:8": gemm_workload(1, 4096, 4096, pattern=NM(1, 8))}
    dse = explore(hw, ["memory.dram_bw_bytes_per_s=1e12,2e12", "sparse.native_patterns=[2:4],[2:4,1:8]"], wls)
    gain = native_pattern_gain(hw, "1:8", wls)
    return ReportData(title="test report <&>", results=table, picks=picks, pick_errors=errors,
                      layer_breakdowns=[breakdown], grad_noise=noise, training_curves=curves, dse=[dse],
                      pattern_gains=[gain], notes=["Hand-made accuracies; costs from the simulator."],
                      meta={"sweep": "unit-test", "seeds": 3})


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    path = write_report(tmp_path_factory.mktemp("rep") / "sub" / "report.html", sample_data())
    return path, path.read_text(encoding="utf-8")


def test_written_and_self_contained(report_html):
    path, text = report_html
    assert path.is_file() and text.startswith("<!DOCTYPE html>")
    # plotly.js is inline exactly once (the first figure); nothing is loaded from a URL
    # (the library's own source mentions URLs, e.g. map tiles, that only geo plots fetch)
    assert re.findall(r"<script[^>]*\bsrc=", text) == []
    assert re.findall(r"<link\b", text) == []
    assert len(re.findall(r"\* plotly\.js v\d", text)) == 1
    assert len(text) > 3_000_000  # plotly.min.js is ~3.5 MB: it really is embedded
    # 2 Pareto (one per target, training FLOPs a panel of each) + per-layer + gradient noise +
    # training curves + DSE
    assert text.count("Plotly.newPlot") == 6


def test_expected_plot_titles_and_tables(report_html):
    _, text = report_html
    for title in ("Pareto front on a100_80gb", "Pareto front on a100_native_1_8",
                  "validation accuracy vs training FLOPs", "Per-layer latency and energy: mdgf 1:8 on a100_native_1_8",
                  "Gradient noise per recipe", "Training curves", "Hardware design space around a100_80gb"):
        assert title in text, title
    assert "test report &lt;&amp;&gt;" in text  # titles are escaped
    assert "Native 1:8 on a100_80gb" in text
    assert "Closest miss" in text  # the infeasible pick is shown
    assert "<th>runner-up</th>" in text and "<th>speedup vs dense</th>" in text


def test_pareto_front_trace_is_the_computed_front():
    data = sample_data()
    text = render_html(data)
    # on the 1:8/1:16-native target the sparse mdgf points must be on the front: their labels are in hover text
    assert "mdgf 1:16" in text


def test_cost_spread_is_flagged():
    data = sample_data()
    rows = [dataclasses.replace(c, cost_spread=0.25) if c.label == "mdgf 1:8" else c for c in data.results]
    text = render_html(dataclasses.replace(data, results=ResultTable(rows)))
    assert "Simulated cost differs between the seeds of: mdgf 1:8 on a100_80gb (25%)" in text
    assert "Simulated cost differs" not in render_html(data)


def test_empty_bundle_renders_with_notes(tmp_path):
    path = write_report(tmp_path / "empty.html", ReportData())
    text = path.read_text()
    assert "(no results)" in text and "(no picks were requested)" in text
    assert "Plotly.newPlot" not in text


def test_report_module_imports_no_plotly_or_torch():
    code = ("import sys, pgf_sim.codesign.report.report; "
            "bad = [m for m in ('torch', 'plotly') if m in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_data_of_a_language_model_sweep_from_the_store(tmp_path):
    """A sweep whose ``experiment`` is a file name (as training/sweep_default.yaml): the report's
    metric is the runs' task metric (bpc from the Shakespeare data), labelled as such, and the
    training curves are validation bpc and loss vs step and vs training FLOPs (mean ± std over seeds)."""
    from pgf_sim.codesign.query.views import build_report_data
    from pgf_sim.store import PointRow, ResultStore

    store = ResultStore(tmp_path / "lm.sqlite")
    store.record_sweep("lm", "batch=8,dtype=fp16", [("flex_nm_systolic", "flex_nm_systolic")],
                       {"experiment": "charlm_shakespeare.yaml", "simulate": {"batch": 8}})
    config = {"data": {"name": "shakespeare"}, "recipe": {"name": "dense"}}
    for seed, shift in ((0, 0.0), (1, 0.02)):
        run_id = f"dense-s{seed}"
        store.start_run(run_id, name="charlm", config=config, recipe="dense", pattern=NM(1, 1), seed=seed)
        store.add_metrics(run_id, [(s, key, v) for s, b in ((0, 4.0), (600, 3.0), (1200, 2.7 + shift))
                                   for key, v in (("val_bpc", b), ("val_loss", b * math.log(2)), ("train_flops", 1e9 * s))])
        store.finish_run(run_id, final_step=1200, final_accuracy=2.7 + shift)
        store.record_points("lm", [PointRow(run_id, "dense", NM(1, 1), seed, "", {})])
    data = build_report_data(store, "lm", [])
    assert data.metric.name == "validation bpc" and not data.metric.higher_is_better
    assert data.metric.split == "validation split of shakespeare"
    groups = {c.group: c for c in data.training_curves}
    assert set(groups) == {"validation bits per character vs step", "validation bits per character vs training FLOPs",
                           "validation loss vs step", "validation loss vs training FLOPs"}
    bpc = groups["validation bits per character vs step"]
    assert list(bpc.x) == [0, 600, 1200] and bpc.y[-1] == pytest.approx(2.71)  # mean of 2.70 and 2.72
    assert bpc.y_std[-1] == pytest.approx(0.02 / math.sqrt(2))  # sample std of two values 0.02 apart
    assert bpc.y_title == "bits per character (bits/char)"
    flops = groups["validation bits per character vs training FLOPs"]
    assert list(flops.x) == [0, 6e11, 1.2e12] and flops.x_unit == "FLOP"
