"""Memory footprint in the co-design report: the footprint panel of each target's Pareto figure,
the red cross on candidates that do not fit the target's memory, fronts over what fits, the
answer table's memory column, the cost-per-pattern table's footprint, and results stored before
footprints were (no footprint panel, no memory column)."""
from __future__ import annotations

import dataclasses
import math

import pytest

from pgf_sim.codesign.decide.pareto import Candidate, ResultTable, fronts
from pgf_sim.codesign.decide.pick import pick
from pgf_sim.codesign.query.views import format_fronts
from pgf_sim.codesign.report.report import CostSection, ReportData, answer_rows, pattern_cost_rows, render_html
from pgf_sim.codesign.report.report_figures import COSTS, MetricInfo, Style
from pgf_sim.codesign.report.report_pareto import pareto_figure
from pgf_sim.core import NM

MB, GB = 1e6, 1e9
SMALL = 100 * MB  # the "npu" target's memory: dense (240 MB) and 2:4 (160 MB) do not fit
METRICS = tuple(k for k, _, _ in COSTS)


def cand(hw, recipe, pat, acc, lat, energy, footprint, capacity, flops=1e9, train=1e12):
    return Candidate(hw, recipe, NM.parse(pat), acc, 0.002, 2, flops, lat, energy, 1 * MB, train,
                     footprint_bytes=footprint, dram_capacity_bytes=capacity)


def table() -> ResultTable:
    """The same four candidates on a 100 MB target and on an 80 GB one. Footprints 240 / 160 / 90 /
    50 MB (distinct x, so no sideways spread); the faster candidates are also the less accurate."""
    rows = []
    for hw, cap in (("npu", SMALL), ("gpu", 80 * GB)):
        rows += [cand(hw, "dense", "dense", 0.97, 6.0e-3, 8e-3, 240 * MB, cap, flops=4e9),
                 cand(hw, "mdgf", "2:4", 0.95, 5.0e-3, 6e-3, 160 * MB, cap, flops=2e9),
                 cand(hw, "mdgf", "1:8", 0.91, 4.2e-3, 5e-3, 90 * MB, cap),
                 cand(hw, "sr-ste", "1:8", 0.90, 4.0e-3, 5.5e-3, 50 * MB, cap, train=0.8e12)]
    return ResultTable(rows)


def figure(t: ResultTable, hw: str, picks=()):
    style = Style()
    style.register(list(t))
    return pareto_figure(t, hw, fronts(t, METRICS, fits_only=True), picks, style, MetricInfo())


def x_axes(fig) -> list[str]:
    return sorted((k for k in fig.layout.to_plotly_json() if k.startswith("xaxis")), key=lambda k: (len(k), k))


def panel_axis(fig, title: str) -> str:
    """The x axis ("x3") of the panel whose subplot title is ``title``."""
    titles = [a.text for a in fig.layout.annotations if a.text.startswith("validation accuracy vs ")]
    i = titles.index(title) + 1
    return "x" if i == 1 else f"x{i}"


def test_footprint_panel_has_the_footprints_as_x_and_every_panel_is_labelled():
    t = table()
    fig = figure(t, "npu")
    titles = [a.text for a in fig.layout.annotations if a.text.startswith("validation accuracy vs ")]
    assert titles == ["validation accuracy vs latency", "validation accuracy vs energy",
                      "validation accuracy vs memory footprint", "validation accuracy vs inference FLOPs",
                      "validation accuracy vs training FLOPs"]
    for i in ("", 2, 3, 4, 5):  # five panels, each with both axis titles; no sixth axis
        assert fig.layout[f"xaxis{i}"].title.text and fig.layout[f"yaxis{i}"].title.text
    assert x_axes(fig) == ["xaxis", "xaxis2", "xaxis3", "xaxis4", "xaxis5"]
    ax = panel_axis(fig, "validation accuracy vs memory footprint")
    assert fig.layout[f"xaxis{ax[1:]}"].title.text == "memory footprint (MB)"  # 50..240 MB: linear, in MB
    points = {(x, y) for tr in fig.data if tr.xaxis == ax and tr.name in ("dense", "mdgf", "sr-ste")
              for x, y in zip(tr.x, tr.y)}
    assert points == {(240, 97), (160, 95), (90, 91), (50, 90)}
    # the caption in the free sixth slot names what the footprint holds and the target's memory
    (caption,) = [a.text for a in fig.layout.annotations if a.text.startswith("<b>memory footprint")]
    assert "KV cache" in caption and "memory of npu: <b>100 MB</b>" in caption


def test_candidates_that_do_not_fit_are_crossed_out_on_every_panel_as_the_pick_rules_them_out():
    t = table()
    p = pick(t, "npu")
    assert set(p.too_big) == {"dense", "mdgf 2:4"} and p.best.label == "sr-ste 1:8"
    fig = figure(t, "npu", [p])
    crosses = [tr for tr in fig.data if tr.meta == "nofit"]
    assert len(crosses) == 5 and {tr.xaxis for tr in crosses} == {"x", "x2", "x3", "x4", "x5"}
    for tr in crosses:  # exactly the too-big candidates, on each panel, named as the pick names them
        assert sorted(tr.y) == [95, 97]
        assert {text.split("</b>")[0].removeprefix("<b>").removesuffix(": DOES NOT FIT") for text in tr.text} \
            == set(p.too_big)
    assert [tr.name for tr in crosses if tr.showlegend] == ["does not fit in 100 MB"]
    fp_axis = panel_axis(fig, "validation accuracy vs memory footprint")
    (on_fp,) = [tr for tr in crosses if tr.xaxis == fp_axis]
    assert sorted(on_fp.x) == [160, 240]
    (cap,) = [tr for tr in fig.data if tr.meta == "capacity"]
    assert cap.xaxis == fp_axis and list(cap.x) == [100, 100] and cap.name == "memory of npu: 100 MB"
    # fronts over what fits: on latency, sr-ste 1:8 (4.0 ms, 90%) then mdgf 1:8 (4.2 ms, 91%); dense and
    # 2:4 would extend it if they fitted
    (lat_front,) = [tr for tr in fig.data if tr.name == "Pareto front (staircase)" and tr.xaxis == "x"]
    assert list(lat_front.x) == pytest.approx([4.0, 4.2]) and list(lat_front.y) == [90, 91]
    (star,) = [tr for tr in fig.data if tr.meta == "pick" and tr.xaxis == fp_axis]
    assert list(star.x) == [50]


def test_a_target_where_everything_fits_has_no_cross_and_its_front_reaches_dense():
    fig = figure(table(), "gpu")
    assert not [tr for tr in fig.data if tr.meta in ("nofit", "capacity")]
    (lat_front,) = [tr for tr in fig.data if tr.name == "Pareto front (staircase)" and tr.xaxis == "x"]
    assert list(lat_front.y) == [90, 91, 95, 97]
    (caption,) = [a.text for a in fig.layout.annotations if a.text.startswith("<b>memory footprint")]
    assert "memory of gpu: <b>80 GB</b>" in caption and "red X" not in caption


def test_fronts_fits_only_leaves_too_big_candidates_off_and_says_why():
    t = table()
    full, fit = fronts(t, ("latency_s",)), fronts(t, ("latency_s",), fits_only=True)
    assert [c.label for c in full[("npu", "latency_s")].candidates(t)] == ["sr-ste 1:8", "mdgf 1:8", "mdgf 2:4", "dense"]
    assert [c.label for c in fit[("npu", "latency_s")].candidates(t)] == ["sr-ste 1:8", "mdgf 1:8"]
    assert [why for _, why in fit[("npu", "latency_s")].excluded] == [
        "dense: memory footprint 240 MB exceeds the target's 100 MB (does not fit)",
        "mdgf 2:4: memory footprint 160 MB exceeds the target's 100 MB (does not fit)"]
    assert fit[("gpu", "latency_s")] == full[("gpu", "latency_s")]  # everything fits: the same front
    text = format_fronts(t)
    assert "(left off: dense: memory footprint 240 MB exceeds the target's 100 MB (does not fit))" in text


def test_answer_and_pattern_rows_show_the_footprint_of_the_capacity():
    t = table()
    view = CostSection("", "", t, [pick(t, "npu"), pick(t, "gpu", min_accuracy=0.94)])
    npu, gpu = answer_rows(view, MetricInfo())
    assert npu["train this"] == "sr-ste 1:8" and npu["memory"] == "50 MB of 100 MB"
    assert gpu["train this"] == "mdgf 2:4" and gpu["memory"] == "160 MB of 80 GB"
    assert list(npu).index("memory") == list(npu).index("weights") + 1
    rows = {r["pattern"]: r for r in pattern_cost_rows(view)}
    assert rows["dense"]["npu"] == "6 ms · 8 mJ · 240 MB of 100 MB: does not fit"
    assert rows["2:4"]["npu"] == "5 ms (1.20x) · 6 mJ · 160 MB of 100 MB: does not fit"
    assert rows["1:8"]["npu"] == "4 ms (1.50x) · 5.5 mJ · 50 MB of 100 MB"  # the faster recipe of 1:8
    assert rows["dense"]["gpu"] == "6 ms · 8 mJ · 240 MB of 80 GB"
    assert not any("does not fit" in r["gpu"] for r in rows.values())


def test_the_page_agrees_with_the_pick_explanation():
    t = table()
    p = pick(t, "npu")
    html = render_html(ReportData(results=t, picks=[p]))
    assert "Ruled out because their memory footprint exceeds the target&#x27;s 100 MB: dense, mdgf 2:4." in html
    assert ("Left off the fronts: dense: memory footprint 240 MB exceeds the target&#x27;s 100 MB (does not fit); "
            "mdgf 2:4: memory footprint 160 MB exceeds the target&#x27;s 100 MB (does not fit)") in html
    assert "Red X: the footprint exceeds the target&#x27;s memory (on npu: dense, mdgf 2:4)" in html
    assert "<th>memory</th>" in html and "energy per inference · memory footprint and the target's memory" in html


def test_results_without_footprints_keep_the_four_panel_figure_and_no_memory_column():
    old = ResultTable([dataclasses.replace(c, footprint_bytes=math.nan, dram_capacity_bytes=math.nan)
                       for c in table()])
    fig = figure(old, "npu")
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["validation accuracy vs latency", "validation accuracy vs energy",
                      "validation accuracy vs inference FLOPs", "validation accuracy vs training FLOPs"]
    assert x_axes(fig) == ["xaxis", "xaxis2", "xaxis3", "xaxis4"] and fig.layout.xaxis4.title.text
    assert not [tr for tr in fig.data if tr.meta in ("nofit", "capacity")]
    p = pick(old, "npu")
    view = CostSection("", "", old, [p])
    (row,) = answer_rows(view, MetricInfo())
    assert "memory" not in row and row["train this"] == "sr-ste 1:8"
    assert [r["npu"] for r in pattern_cost_rows(view)] == ["6 ms · 8 mJ", "5 ms (1.20x) · 6 mJ", "4 ms (1.50x) · 5.5 mJ"]
    html = render_html(ReportData(results=old, picks=[p]))
    assert "footprint_bytes is NaN" not in html and "Left off the fronts" not in html
    assert "memory footprint" not in html and "<th>memory</th>" not in html


def test_a_target_without_footprints_beside_one_with_them():
    """A database with one target simulated before footprints were stored: that target's figure has
    no footprint panel, and its unknown footprints are not reported as left off."""
    t = table()
    mixed = ResultTable([c if c.hardware == "npu" else dataclasses.replace(c, footprint_bytes=math.nan,
                                                                           dram_capacity_bytes=math.nan)
                         for c in t])
    assert len([a for a in figure(mixed, "gpu").layout.annotations if " vs " in a.text]) == 4
    assert len([a for a in figure(mixed, "npu").layout.annotations if " vs " in a.text]) == 5
    html = render_html(ReportData(results=mixed))
    assert "footprint_bytes is NaN" not in html and "dense: memory footprint 240 MB exceeds" in html


def test_no_ring_marks_a_candidate_that_does_not_fit():
    """Rings mark candidates off the front by less than the seed noise. Added: mdgf 1:16 (fits, 0.5
    points below sr-ste 1:8 and costlier) and sr-ste 2:4 (too big, 1 point below mdgf 2:4 and
    costlier); with a std of 1 point both are within noise (1 < hypot(1, 1) points), but only the
    one that fits may be ringed."""
    extra = [cand("npu", "mdgf", "1:16", 0.895, 4.1e-3, 5.6e-3, 40 * MB, SMALL),
             cand("npu", "sr-ste", "2:4", 0.94, 5.1e-3, 6.1e-3, 170 * MB, SMALL)]
    t = ResultTable([dataclasses.replace(c, accuracy_std=0.01) for c in [*table(), *extra]])

    def rings(fits_only):
        fig = pareto_figure(t, "npu", fronts(t, METRICS, fits_only=fits_only), [], Style(), MetricInfo(),
                            noisy=fronts(t, METRICS, noise="std", fits_only=fits_only))
        return {round(y, 6) for tr in fig.data if tr.name == "within seed noise of the front" and tr.xaxis == "x"
                for y in tr.y}

    assert rings(fits_only=True) == {89.5}
    assert rings(fits_only=False) == {89.5, 94.0}  # what the figure would show without the memory rule
