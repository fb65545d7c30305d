"""The report's first screen (answer table, cost per pattern), its axis/unit/jitter rules, the
page-wide styles, the view order, and the PNG/SVG figure files."""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import shutil
from pathlib import Path

import pytest

from pgf_sim.codesign.decide.pareto import Candidate, ResultTable, fronts
from pgf_sim.codesign.decide.pick import pick
from pgf_sim.codesign.report.report import (CostSection, ReportData, answer_rows, order_views, pattern_cost_rows,
                                            render_html, write_report)
from pgf_sim.codesign.report.report_figures import (COSTS, JITTER_FRACTION, MIN_REL_RANGE_PCT, MetricInfo, Style,
                                                    cost_axis, human, jitter, unit_scale)
from pgf_sim.codesign.report.report_pareto import pareto_figure
from pgf_sim.core import NM


def _sample():
    spec = importlib.util.spec_from_file_location("report_sample", Path(__file__).with_name("test_report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sample_data()


def cand(hw, recipe, pat, acc, std, lat, energy=1e-3, n=2, flops=1e9, weights=1e6, train=1e12):
    return Candidate(hw, recipe, NM.parse(pat), acc, std, n, flops, lat, energy, weights, train)


def test_human_units():
    assert human(0.0008989, "s") == "899 µs"
    assert human(1.411e5, "B") == "141 kB"
    assert human(2.127563401, "s") == "2.13 s"
    assert human(3.2e-6, "J") == "3.2 µJ"
    assert human(4.5e9, "FLOP") == "4.5 GFLOP"
    assert human(float("nan"), "s") == "-"
    assert unit_scale([1e-3, 9e-4], "s") == (1e-3, "ms")


def test_tiny_span_is_drawn_relative_to_dense_with_a_minimum_range():
    # 898.9 .. 899.3 us: a 0.04% spread must not fill the axis
    axis = cost_axis([898.9e-6, 899.1e-6, 899.3e-6], "latency", "s", dense=899.3e-6)
    assert axis.kind == "relative" and "change vs dense (899 µs)" in axis.title
    assert axis.range[1] - axis.range[0] >= MIN_REL_RANGE_PCT
    assert axis.transform([899.3e-6])[0] == pytest.approx(0.0)
    assert axis.transform([898.9e-6])[0] == pytest.approx((898.9 / 899.3 - 1) * 100)
    wide = cost_axis([1e-3, 5e-3, 2e-2], "latency", "s", dense=2e-2)
    assert wide.kind == "absolute" and wide.log and wide.title == "latency (ms)" and wide.scale == 1e-3
    mid = cost_axis([1e-3, 3e-3], "energy", "J", dense=None)
    assert not mid.log and mid.title == "energy (mJ)"


def test_jitter_separates_coinciding_points_and_keeps_others():
    xs, ys = [1.0, 1.0, 1.0, 5.0, 5.0], [90.0, 90.5, 90.0, 80.0, 95.0]
    out = jitter(xs, ys, width=10.0, log=False)
    assert len(set(out[:3])) == 3 and out[3:] == [5.0, 5.0]  # far apart in y: left in place
    assert out[0] < out[1] < out[2]  # in the given order, not sorted by the metric
    assert sum(out[:3]) / 3 == pytest.approx(1.0)  # symmetric about the true x
    assert max(out[:3]) - min(out[:3]) == pytest.approx(2 * JITTER_FRACTION * 10.0)
    logged = jitter([1e-3, 1e-3, 5e-3], [90.0, 90.0, 70.0], width=1.0, log=True)
    assert logged[0] < 1e-3 < logged[1] and logged[0] * logged[1] == pytest.approx(1e-6)


def test_answer_rows_speedup_saving_and_distinguishability():
    rows = [cand("npu", "dense", "dense", 0.97, 0.002, 4e-3, 8e-3),
            cand("npu", "mdgf", "2:4", 0.965, 0.002, 2.5e-3, 5e-3),
            cand("npu", "mdgf", "1:8", 0.90, 0.002, 2e-3, 4e-3)]
    table = ResultTable(rows)
    p = pick(table, "npu", min_accuracy=0.95)
    (row,) = answer_rows(CostSection("", "", table, [p]), MetricInfo())
    assert row["train this"] == "mdgf 2:4" and row["validation accuracy"] == "96.50% ± 0.20 (n=2)"
    assert "test split (reported, not used to pick)" not in row  # no test numbers given: no column
    assert row["speedup vs dense"] == "1.60x"  # 4 ms / 2.5 ms
    assert row["energy saving vs dense"] == "38%"  # 1 - 5/8
    assert row["latency"] == "2.5 ms" and row["weights"] == "1 MB"
    assert row["runner-up"].startswith("dense: 97.00%")
    # 0.5 points apart, combined std 0.28 points: distinguishable
    assert row["distinguishable from runner-up?"] == "yes: validation accuracy 0.50 points worse > combined std 0.28 points"
    noisy = ResultTable([dataclasses.replace(c, accuracy_std=0.01) for c in rows])
    (row,) = answer_rows(CostSection("", "", noisy, [pick(noisy, "npu", min_accuracy=0.95)]), MetricInfo())
    assert row["distinguishable from runner-up?"].startswith("no:")


def test_pattern_cost_table_orders_patterns_and_gives_speedups():
    rows = [cand("npu", "dense", "dense", 0.97, 0, 4e-3), cand("npu", "sr-ste", "1:8", 0.9, 0, 1e-3),
            cand("npu", "mdgf", "1:8", 0.91, 0, 1.5e-3), cand("npu", "mdgf", "2:4", 0.95, 0, 2e-3)]
    out = pattern_cost_rows(CostSection("", "", ResultTable(rows)))
    assert [r["pattern"] for r in out] == ["dense", "2:4", "1:8"]
    assert out[2]["npu"].startswith("1 ms (4.00x)")  # the cheaper recipe of the pattern
    assert out[1]["npu"].startswith("2 ms (2.00x)")


def test_flat_trained_view_puts_the_deployment_proxy_first():
    flat = ResultTable([cand("npu", "dense", "dense", 0.97, 0, 1.000e-3), cand("npu", "mdgf", "1:8", 0.9, 0, 0.999e-3)])
    steep = ResultTable([cand("npu", "dense", "dense", 0.97, 0, 4e-3), cand("npu", "mdgf", "1:8", 0.9, 0, 1e-3),
                         cand("npu", "mdgf", "2:4", 0.95, 0, 2e-3)])
    trained = CostSection("Cost model: trained model", "", flat, kind="trained")
    deploy = CostSection("Cost model: DEPLOYMENT PROXY", "", steep, kind="deploy")
    assert order_views([trained, deploy]) == [deploy, trained]
    assert order_views([dataclasses.replace(trained, results=steep), deploy])[0].kind == "trained"
    html = render_html(ReportData(cost_views=[trained, deploy]))
    assert html.index("DEPLOYMENT PROXY</b> leads") < html.index("Cost model: trained model")
    # one sparse pattern: 0% between sparse patterns; 1.000 / 0.999 ms = 1.001x sparse vs dense
    assert "differ in latency by at most 0.00%; sparse vs dense: at most 1.00x" in html
    assert "<details class='view' id='view1'><summary><b>Cost model: trained model</b>" in html  # folded


def test_pareto_figure_labels_every_panel_marks_the_pick_and_keeps_styles():
    data = _sample()
    table = data.results
    fr = fronts(table, tuple(k for k, _, _ in COSTS))
    style = Style()
    style.register(list(table))
    figs = [pareto_figure(table, hw, fr, data.picks, style, MetricInfo()) for hw in table.hardware_names()]
    for fig, p in zip(figs, data.picks):
        layout = fig.layout
        for ax in ("xaxis", "xaxis2", "xaxis3", "xaxis4", "yaxis", "yaxis2", "yaxis3", "yaxis4"):
            assert layout[ax].title.text, f"{ax} has no title"
        stars = [t for t in fig.data if t.meta == "pick"]
        assert len(stars) == 4 and all(t.name == f"pick: {p.best.label}" for t in stars)  # one per panel
        assert [t.y[0] for t in stars] == [pytest.approx(p.best.accuracy_mean * 100)] * 4
        fronts_drawn = [t for t in fig.data if t.name == "Pareto front (staircase)"]
        assert len(fronts_drawn) == 4 and all(t.line.shape == "hv" for t in fronts_drawn)
    colours = [{t.name: t.marker.color for t in fig.data if t.name in ("dense", "sr-ste", "mdgf")} for fig in figs]
    assert colours[0] == colours[1] and len(set(colours[0].values())) == 3
    symbols = {t.name: t.marker.symbol for fig in figs for t in fig.data if (t.name or "").startswith("pattern ")}
    assert len(set(symbols.values())) == len(symbols) == 4  # dense, 2:4, 1:8, 1:16


def test_lower_is_better_metric_is_labelled_from_the_data():
    metric = MetricInfo(name="bits per character", unit=" bpc", scale=1.0, higher_is_better=False, split="valid")
    rows = [cand("npu", "dense", "dense", 1.30, 0.01, 4e-3), cand("npu", "mdgf", "2:4", 1.35, 0.01, 2e-3)]
    table = ResultTable(rows)
    html = render_html(ReportData(results=table, metric=metric, picks=[pick(table, "npu")]))
    assert "bits per character: mean ± std over seeds on the valid (lower is better)" in html
    assert "bits per character ( bpc" not in html and "bits per character (bpc, lower is better)" in html


BPC = MetricInfo(name="validation bpc", unit=" bits/char", scale=1.0, higher_is_better=False, split="validation split")


def _bpc_table():
    """A lower-is-better task: dense 2.685 bpc at 6 ms, 2:4 2.725 at 5 ms, 1:8 2.817 at 4.34 ms, and
    a 1:16 run that is both worse and costlier than 1:8 (off every front)."""
    from pgf_sim.core.metric import get_metric

    rows = [cand("flex", "dense", "dense", 2.685, 0.004, 6.00e-3, 8e-3, weights=2.4e8),
            cand("flex", "mdgf", "2:4", 2.725, 0.001, 5.08e-3, 6e-3, weights=1.6e8),
            cand("flex", "sr-ste", "1:8", 2.817, 0.012, 4.34e-3, 5e-3, weights=1.0e8),
            cand("flex", "sr-ste", "1:16", 2.900, 0.010, 4.50e-3, 5.5e-3, weights=0.9e8)]
    return ResultTable(rows, get_metric("bpc"))


def test_lower_is_better_answer_uses_the_lowest_dense_and_says_which_way():
    from pgf_sim.codesign.report.report_figures import dense_reference

    table = _bpc_table()
    # a second, worse dense run must not become the baseline (the LOWEST bpc is the best dense)
    worse_dense = dataclasses.replace(table[0], model="x", accuracy_mean=3.1, latency_s=1e-3)
    assert dense_reference(ResultTable([*table, worse_dense], table.metric), "flex") is table[0]
    p = pick(table, "flex", metric_limit=2.735)  # bpc <= 2.735: dense and 2:4; the faster is 2:4
    assert p.best.label == "mdgf 2:4" and p.runner_up.label == "dense"
    test = {"mdgf 2:4": (2.719, 0.002, 2)}
    (row,) = answer_rows(CostSection("", "", table, [p]), BPC, test)
    assert row["validation bpc"] == "2.7250 ± 0.0010 bits/char (n=2)"
    assert row["test split (reported, not used to pick)"] == "2.7190 ± 0.0020 bits/char (n=2)"
    assert row["speedup vs dense"] == "1.18x"  # 6.00 / 5.08
    assert row["energy saving vs dense"] == "25%"  # 1 - 6/8
    assert row["latency"] == "5.08 ms" and row["weights"] == "160 MB"
    # 2.725 vs 2.685: 0.040 bits/char WORSE than the runner-up, combined std hypot(0.001, 0.004) = 0.004
    assert row["distinguishable from runner-up?"] == ("yes: validation bpc 0.0400 bits/char worse > combined std "
                                                      "0.0041 bits/char")


def test_lower_is_better_front_is_a_descending_staircase_through_the_markers():
    table = _bpc_table()
    fr = fronts(table, tuple(k for k, _, _ in COSTS))
    style = Style()
    style.register(list(table))
    fig = pareto_figure(table, "flex", fr, [], style, BPC)
    (lat_front,) = [t for t in fig.data if t.name == "Pareto front (staircase)" and t.xaxis == "x"]
    # cheapest first; each step better (lower bpc); 1:16 (worse AND costlier than 1:8) is off it
    assert list(lat_front.y) == [2.817, 2.725, 2.685]
    assert lat_front.line.shape == "hv"  # holds a point's bpc until the next (costlier, better) point
    assert list(lat_front.x) == sorted(lat_front.x)
    markers = {x for t in fig.data if t.mode == "markers" and t.xaxis == "x" and t.x[0] is not None for x in t.x}
    assert set(lat_front.x) <= markers  # drawn through the (possibly jittered) markers
    assert fig.layout.yaxis.title.text == "validation bpc (bits/char, lower is better)"
    assert all(fig.layout[f"yaxis{i}"].title.text.endswith("lower is better)") for i in ("", 2, 3, 4))


def test_points_within_noise_of_the_front_are_ringed():
    # 1:8 at 2.817 +- 0.05 (4.34 ms) and 1:16 at 2.85 +- 0.05 (4.50 ms): 1:16 is dominated on the classic
    # front (worse bpc, costlier) but only by 0.033 < hypot(0.05, 0.05), so the noise-aware front keeps it
    table = _bpc_table()
    rows = [dataclasses.replace(c, accuracy_mean=2.85, accuracy_std=0.05) if c.pattern_text == "1:16" else
            dataclasses.replace(c, accuracy_std=0.05) if c.pattern_text == "1:8" else c for c in table]
    table = ResultTable(rows, table.metric)
    metrics = tuple(k for k, _, _ in COSTS)
    fig = pareto_figure(table, "flex", fronts(table, metrics), [], Style(), BPC, noisy=fronts(table, metrics, noise="std"))
    rings = [t for t in fig.data if t.name == "within seed noise of the front" and t.xaxis == "x"]
    assert len(rings) == 1 and list(rings[0].y) == [2.85]
    assert not [t for t in pareto_figure(table, "flex", fronts(table, metrics), [], Style(), BPC).data
                if t.name == "within seed noise of the front"]


def test_long_per_layer_section_is_one_figure_with_a_menu():
    from pgf_sim.codesign.report.report import LayerBreakdown
    from pgf_sim.codesign.report.report_figures import layer_figure

    bs = [LayerBreakdown("flex", f"mdgf {p}", ["fc1", "fc2"], [1e-3, 2e-3], [1e-3, 3e-3], ["compute", "memory"])
          for p in ("2:4", "1:8", "1:16")]
    fig = layer_figure(bs)
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["mdgf 2:4 on flex", "mdgf 1:8 on flex", "mdgf 1:16 on flex"]
    # each button shows exactly its breakdown's bars (2 bound kinds x 2 panels)
    for i, b in enumerate(menu.buttons):
        vis = b.args[0]["visible"]
        assert sum(vis) == 4 and all(v == (j // 4 == i) for j, v in enumerate(vis))
    assert fig.layout.yaxis.title.text == "latency (ms)" and fig.layout.yaxis2.title.text == "energy (mJ)"
    html = render_html(ReportData(layer_breakdowns=bs))
    assert html.count("Plotly.newPlot") == 1
    assert menu.x == 1.0 and menu.xanchor == "right"  # clear of the left-aligned title


def test_a_figure_with_a_menu_is_exported_as_one_figure_per_choice():
    from pgf_sim.codesign.report.report import LayerBreakdown, menu_choices
    from pgf_sim.codesign.report.report_figures import layer_figure

    bs = [LayerBreakdown("flex", f"mdgf {p}", ["fc1", "fc2"], [1e-3 * k, 2e-3], [1e-3, 3e-3], ["compute", "memory"])
          for k, p in enumerate(("2:4", "1:8", "1:16"), start=1)]
    parts = menu_choices("layers_deploy", layer_figure(bs))
    assert [name for name, _ in parts] == ["layers_deploy_1", "layers_deploy_2", "layers_deploy_3"]
    for k, (_, fig) in enumerate(parts, start=1):
        assert not fig.layout.updatemenus  # a static file has no menu to open
        assert fig.layout.title.text.endswith(f"{bs[k - 1].label} on flex")
        shown = [t for t in fig.data if t.visible is not False]
        assert len(shown) == 4 and shown[0].y[0] == pytest.approx(k)  # its own fc1 latency, in ms
    plain = layer_figure(bs[:1])  # one breakdown: no menu, exported as it is
    assert menu_choices("layers", plain) == [("layers", plain)]


@pytest.mark.slow  # kaleido starts a browser per image
@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("google-chrome") is None,
                    reason="plotly's static export (kaleido) needs Chrome/Chromium: apt-get install chromium")
def test_every_figure_is_also_written_as_png_and_svg(tmp_path):
    pytest.importorskip("kaleido", reason="pip install kaleido")
    folder = tmp_path / "rep_figures"
    folder.mkdir()  # an earlier report's figure (its number and name no longer match) and a user's file
    (folder / "21_pareto_trained_old_target.png").write_bytes(b"old")
    (folder / "my_notes.txt").write_text("keep")
    path = write_report(tmp_path / "rep.html", _sample(), figure_files=True)
    assert not (folder / "21_pareto_trained_old_target.png").exists() and (folder / "my_notes.txt").exists()
    pngs, svgs = sorted(folder.glob("*.png")), sorted(folder.glob("*.svg"))
    assert len(pngs) == len(svgs) == path.read_text().count("Plotly.newPlot") == 6
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20_000 for p in pngs)
    assert all(s.read_text()[:200].lstrip().startswith("<svg") for s in svgs)
    assert any("pareto" in p.name and "a100_80gb" in p.name for p in pngs)
    assert math.isfinite(sum(p.stat().st_size for p in pngs))
