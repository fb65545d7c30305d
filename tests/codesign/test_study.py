"""The seed-study analysis on a real result database filled with fixed numbers, against hand values."""
from pathlib import Path

import pytest

from pgf_sim.codesign.decide.stats import holm, welch
from pgf_sim.codesign.decide.study import analyse, flops_to_reach, markdown, noise_trend_rows
from pgf_sim.core import NM, PgfSimError, load_yaml
from pgf_sim.core.metric import get_metric
from pgf_sim.store import PointRow, ResultStore

BASE = load_yaml(Path(__file__).parents[2] / "training" / "charlm_shakespeare.yaml")
# final validation bpc per seed; the curve of every run: evaluations at steps 10 and 20
FINAL = {("sr-ste", "1:16"): [3.0, 3.2, 3.1], ("mdgf", "1:16"): [2.8, 2.9, 2.85], ("dense", "1:1"): [2.5, 2.6, 2.55],
         ("ste", "1:16"): [3.1, 3.0, 3.3]}
FLOPS = {"sr-ste": 100.0, "mdgf": 160.0, "dense": 200.0, "ste": 100.0}  # cumulative at step 20


def _fill(path: Path, seeds: int = 3, final: dict | None = None, base: dict | None = None) -> ResultStore:
    store = ResultStore(path)
    store.record_sweep("s", "b8_fp16", [("a100_80gb", "a100_80gb")], {"name": "s"})
    points = []
    for (label, pat), finals in (final or FINAL).items():
        for seed, final in enumerate(finals[:seeds]):
            run_id = f"{label}-{pat}-{seed}"
            config = {**(base or BASE), "recipe": {"name": label, "pattern": pat}, "seed": seed}
            store.start_run(run_id, name="charlm", config=config, recipe=label, pattern=pat, seed=seed)
            # at step 10: final + 0.4 after half the FLOPs
            store.add_metrics(run_id, [(10, "val_bpc", final + 0.4), (10, "train_flops", FLOPS[label] / 2),
                                       (20, "val_bpc", final), (20, "train_flops", FLOPS[label])])
            # gradient variance of two layers at two windows: 1 and 3 (mean 2) at step 10, 5 and 7 at 20
            store.add_diagnostics(run_id, [(10, "fc1", "grad_var", 1.0 + seed), (10, "fc2", "grad_var", 3.0 + seed),
                                           (20, "fc1", "grad_var", 5.0 + seed), (20, "fc2", "grad_var", 7.0 + seed)])
            store.finish_run(run_id, final_step=20, final_accuracy=final, train_flops={"forward": FLOPS[label]})
            points.append(PointRow(run_id, label, NM.parse(pat), seed, "", {}))
    store.record_points("s", points)
    return store


def test_study_tables_by_hand(tmp_path):
    study = analyse(_fill(tmp_path / "s.sqlite"))
    assert study.metric.name == "bpc" and study.patterns() == [NM(1, 16)]
    cells = {c.label: c for c in study.comparisons}
    assert set(cells) == {"mdgf", "dense", "ste"}
    # mdgf - sr-ste: means 2.85 - 3.1 = -0.25; Welch by the helper tested on its own
    d = cells["mdgf"].difference
    assert d.diff == pytest.approx(-0.25)
    assert (d.low, d.high) == pytest.approx(
        (welch(FINAL[("mdgf", "1:16")], FINAL[("sr-ste", "1:16")]).low, welch(FINAL[("mdgf", "1:16")], FINAL[("sr-ste", "1:16")]).high))
    raw = [c.difference.p_value for c in study.comparisons]
    assert [c.p_holm for c in study.comparisons] == pytest.approx(holm(raw))
    assert cells["ste"].verdict == "undecided"  # 3.133 vs 3.1 with std 0.15
    assert cells["dense"].verdict == "better" and cells["dense"].difference.diff == pytest.approx(-0.55)
    # iso-FLOPs: target 3.1 (sr-ste's mean). mdgf's mean curve 3.25 at 80, 2.85 at 160: reaches 3.1
    # at 80 + (3.1 - 3.25) / (2.85 - 3.25) * 80 = 110; sr-ste's own curve reaches it at 100.
    iso = {i.label: i for i in study.iso}
    assert iso["mdgf"].flops_to_target == pytest.approx(110.0) and iso["mdgf"].ratio == pytest.approx(1.1)
    assert iso["sr-ste"].flops_to_target == pytest.approx(100.0)
    assert iso["ste"].flops_to_target is None  # 3.133 at the end: never reaches 3.1
    # noise: per run, mean over layers and windows = (1+3+5+7)/4 + seed = 4 + seed -> 5 +- 1 over seeds
    noise = study.noise[("mdgf", NM(1, 16))]["grad_var"]
    assert (noise.mean, noise.std, noise.n) == pytest.approx((5.0, 1.0, 3))
    assert study.noise_curves[("mdgf", NM(1, 16))]["grad_var"] == ([10, 20], [pytest.approx(3.0), pytest.approx(7.0)])
    # the trend table: one row per recipe, one column per pattern; dense's one cell stands at 1:16
    trend = {r["recipe"]: r for r in noise_trend_rows(study, "grad_var")}
    assert trend["mdgf"] == {"recipe": "mdgf", "1:16": "5"} and trend["dense"]["1:16"] == "5"
    assert noise_trend_rows(study) == []  # no grad_var_kept was logged: no empty table
    text = markdown(study)
    assert "| mdgf | 2.850 ± 0.050 (n=3) |" in text and "| dense | 1:16 | -0.550 |" in text
    assert "| 1:16 | 3.100 | mdgf | 1.1e-07 GFLOP | 1.10 |" in text


def test_flops_to_reach_interpolates_and_respects_direction():
    bpc, acc = get_metric("bpc"), get_metric("accuracy")
    assert flops_to_reach([1, 2, 3], [4.0, 3.0, 2.0], 2.5, bpc) == pytest.approx(2.5)
    assert flops_to_reach([1, 2, 3], [4.0, 3.0, 2.0], 4.5, bpc) == 1.0  # already there at the first point
    assert flops_to_reach([1, 2], [0.5, 0.7], 0.65, acc) == pytest.approx(1.75)
    assert flops_to_reach([1, 2], [0.5, 0.7], 0.9, acc) is None


def test_study_errors_name_the_problem(tmp_path):
    store = _fill(tmp_path / "s.sqlite")
    with pytest.raises(PgfSimError, match="no sweep 'x'"):
        analyse(store, "x")
    with pytest.raises(PgfSimError, match="reference recipe 'step'"):
        analyse(store, reference="step")


def test_report_of_a_seed_study_shows_the_verdicts_tables_and_figures(tmp_path):
    from pgf_sim.codesign.report.report import ReportData, _Figures, render_html

    study = analyse(_fill(tmp_path / "s.sqlite"))
    figs = _Figures()
    page = render_html(ReportData(study=study), figs)
    section = page[page.index("<section id='study'>"):]
    section = section[:section.index("</section>")]
    # the verdict line: dense beats sr-ste at 1:16 after Holm (raw p 0.0037, x3 comparisons = 0.011), mdgf and ste do not
    verdict = section[:section.index("</p>")]
    assert "<b>better</b>: dense (1:16); <b>worse</b>: none; 2 undecided" in verdict
    from pgf_sim.codesign.report.report_study import _grouped
    assert _grouped(["mdgf 1:16", "mdgf 1:32", "mdgf+sdgf 1:32"]) == "mdgf (1:16, 1:32), mdgf+sdgf (1:32)"
    # the same numbers as the Markdown tables, as HTML cells
    assert "<td>mdgf</td><td>2.850 ± 0.050 (n=3)</td>" in section
    assert "<td>dense</td><td>1:16</td><td>-0.550</td>" in section
    assert "<td>1:16</td><td>3.100</td><td>mdgf</td><td>1.1e-07 GFLOP</td><td>1.10</td>" in section
    assert [name for name, _ in figs.items if name.startswith("study_")] == [
        "study_quality", "study_difference", "study_iso_flops", "study_grad_noise"]
    assert "href='#study'" in page  # linked from the line under the answer
    assert "<details><summary>Only" not in section  # 3 seeds: shown open


def test_report_study_folds_with_two_seeds_and_build_report_data_skips_one_seed(tmp_path):
    from pgf_sim.codesign.query.views import _seed_study
    from pgf_sim.codesign.report.report import ReportData, render_html

    two = _fill(tmp_path / "two.sqlite", seeds=2)
    page = render_html(ReportData(study=_seed_study(two, "s")))
    assert "<details><summary>Only 2 seeds per cell: intervals are wide." in page
    assert _seed_study(_fill(tmp_path / "one.sqlite", seeds=1), "s") is None  # no spread: no section
    assert "id='study'" not in render_html(ReportData())


def test_study_restricted_to_patterns_sets_the_holm_family(tmp_path):
    two = {**FINAL, ("sr-ste", "1:8"): [2.9, 2.95, 3.0], ("mdgf", "1:8"): [2.7, 2.75, 2.8]}
    store = _fill(tmp_path / "two.sqlite", final=two)
    full, only = analyse(store), analyse(store, patterns=[NM(1, 16)])
    assert len(full.comparisons) == 5 and len(only.comparisons) == 3  # dense and mdgf at 1:8 drop out
    assert only.patterns() == [NM(1, 16)]
    # Holm over the 3 comparisons at 1:16 alone: smaller adjusted p-values than in the family of 5
    raw = [c.difference.p_value for c in only.comparisons]
    assert [c.p_holm for c in only.comparisons] == pytest.approx(holm(raw))
    in_full = {(c.label, c.pattern): c.p_holm for c in full.comparisons}
    assert all(c.p_holm <= in_full[(c.label, c.pattern)] for c in only.comparisons)
    assert any(c.p_holm < in_full[(c.label, c.pattern)] for c in only.comparisons)
    store = _fill(tmp_path / "s.sqlite")
    with pytest.raises(PgfSimError, match=r"pattern\(s\) 1:8 not in sweep 's'; its patterns: 1:16"):
        analyse(store, patterns=[NM(1, 8)])


def test_iso_y_range_cuts_the_spikes_and_follows_the_metric_direction():
    from pgf_sim.codesign.decide.study import iso_y_range

    bpc, acc = get_metric("bpc"), get_metric("accuracy")
    values = [3.0, 2.9, 2.8, 2.7, 2.6, 2.5, 2.4, 2.3, 2.2, 2.1, 4.6]  # lower is better; one spike at 4.6
    lo, hi = iso_y_range(values, bpc)
    # best 2.1; the 80% quantile towards the worst of 11 sorted values (index 8) is 2.9; margin 5% of 0.8
    assert (lo, hi) == pytest.approx((2.1 - 0.04, 2.9 + 0.04))
    lo, hi = iso_y_range([0.5, 0.6, 0.7, 0.8, 0.9, 0.1], acc)  # higher is better: cut at the low end
    assert hi == pytest.approx(0.9 + 0.02) and lo == pytest.approx(0.5 - 0.02)
    assert iso_y_range([1.0, 2.0, 3.0], bpc) is None  # too few points to cut


def test_accuracy_studies_are_shown_in_percent(tmp_path):
    """An accuracy task's study reads in percent (the metric's display scale), like the report."""
    digits = load_yaml(Path(__file__).parents[2] / "training" / "digits_vit.yaml")
    acc = {("sr-ste", "1:16"): [0.80, 0.82, 0.81], ("dense", "1:1"): [0.90, 0.91, 0.92]}
    study = analyse(_fill(tmp_path / "a.sqlite", final=acc, base=digits))
    assert study.metric.higher_is_better and study.metric.scale == 100
    text = markdown(study)
    assert "| dense | 91.00 ± 1.00 (n=3) |" in text and "| sr-ste | 81.00 ± 1.00 (n=3) |" in text
    # dense - sr-ste = +10 points; the interval in points too
    (row,) = [r for r in text.splitlines() if r.startswith("| dense | 1:16 |")]
    assert row.startswith("| dense | 1:16 | +10.00 | [") and row.endswith("| better |")


# test-split value = validation value + this shift: on the test split sr-ste would be best at lr
# 0.003 (3.2 - 0.4 = 2.8 < 3.0 + 0.1), the opposite of its validation pick
TEST_SHIFT = {("sr-ste", 0.001): 0.1, ("sr-ste", 0.003): -0.4, ("mdgf", 0.001): 0.0, ("mdgf", 0.003): 0.0,
              ("dense", 0.001): 0.05, ("dense", 0.003): 0.05}


def _fill_lr_grid(path: Path) -> ResultStore:
    """An lr grid of two values: by validation sr-ste is best at lr 0.001 (mean 3.0 vs 3.2), mdgf at
    0.003 (2.9 vs 3.3), dense at 0.003 (2.5 vs 2.6); test values are shifted by TEST_SHIFT."""
    finals = {("sr-ste", "1:16", 0.001): [2.9, 3.0, 3.1], ("sr-ste", "1:16", 0.003): [3.1, 3.2, 3.3],
              ("mdgf", "1:16", 0.001): [3.2, 3.3, 3.4], ("mdgf", "1:16", 0.003): [2.8, 2.9, 3.0],
              ("dense", "1:1", 0.001): [2.5, 2.6, 2.7], ("dense", "1:1", 0.003): [2.4, 2.5, 2.6]}
    store = ResultStore(path)
    store.record_sweep("s", "b8_fp16", [("a100_80gb", "a100_80gb")], {"name": "s"})
    points = []
    for (label, pat, lr), values in finals.items():
        for seed, final in enumerate(values):
            run_id = f"{label}-{pat}-{lr}-{seed}"
            config = {**BASE, "recipe": {"name": label, "pattern": pat}, "seed": seed,
                      "schedule": {**BASE["schedule"], "lr": lr}}
            store.start_run(run_id, name="charlm", config=config, recipe=label, pattern=pat, seed=seed)
            store.add_metrics(run_id, [(20, "val_bpc", final), (20, "train_flops", 100.0),
                                       (20, "test_bpc", final + TEST_SHIFT[(label, lr)])])
            store.finish_run(run_id, final_step=20, final_accuracy=final, train_flops={"forward": 100.0})
            points.append(PointRow(run_id, label, NM.parse(pat), seed, "", {"schedule.lr": lr}))
    store.record_points("s", points)
    return store


def test_tuned_and_untuned_views_of_an_lr_grid(tmp_path):
    store = _fill_lr_grid(tmp_path / "s.sqlite")
    untuned = analyse(store, fix={"schedule.lr": 0.003})
    cells = {c.label: c for c in untuned.comparisons}
    assert cells["mdgf"].difference.diff == pytest.approx(2.9 - 3.2)  # both at lr 0.003
    assert cells["dense"].difference.diff == pytest.approx(2.5 - 3.2)
    # a tuned key ignores its fix; split val: judged on the validation values the pick used
    tuned = analyse(store, tune="schedule.lr", fix={"schedule.lr": 0.003}, split="val")
    assert {k[0]: c.value for k, c in tuned.tuned.items()} == {"sr-ste": 0.001, "mdgf": 0.003, "dense": 0.003}
    assert tuned.tuned[("mdgf", NM(1, 16))].candidates[0.001].mean == pytest.approx(3.3)
    cells = {c.label: c for c in tuned.comparisons}
    assert cells["mdgf"].difference.diff == pytest.approx(2.9 - 3.0)  # each at its own best lr
    assert cells["dense"].difference.diff == pytest.approx(2.5 - 3.0)
    assert all(len(c.runs) == 3 for c in tuned.cells.values())
    text = markdown(tuned)
    assert "tuned view" in text and "| sr-ste | 1:16 | 0.001 | 3.000 ± 0.100 (n=3) | 3.200 ± 0.100 (n=3) |" in text
    assert "bootstrap 95%" in text
    with pytest.raises(PgfSimError, match="no point with schedule.lr=0.002"):
        analyse(store, fix={"schedule.lr": 0.002})
    with pytest.raises(PgfSimError, match="does not sweep 'seed'.*schedule.lr"):
        analyse(store, tune="seed")
    with pytest.raises(PgfSimError, match=r"sweeps schedule.lr over 2 values.*--fix schedule.lr=VALUE"):
        analyse(store)  # runs at different lrs are not seeds of one cell


def test_tuned_view_picks_on_validation_and_judges_on_the_test_split(tmp_path):
    store = _fill_lr_grid(tmp_path / "s.sqlite")
    tuned = analyse(store, tune="schedule.lr")  # default split with tune: test
    assert tuned.split == "test"
    # the pick is the validation one even though sr-ste's test values favour lr 0.003
    assert {k[0]: c.value for k, c in tuned.tuned.items()} == {"sr-ste": 0.001, "mdgf": 0.003, "dense": 0.003}
    assert tuned.tuned[("sr-ste", NM(1, 16))].candidates[0.003].mean == pytest.approx(3.2)  # validation
    cells = {c.label: c for c in tuned.comparisons}
    # test means at the picked lr: sr-ste 3.0 + 0.1, mdgf 2.9 + 0, dense 2.5 + 0.05
    assert cells["mdgf"].difference.diff == pytest.approx(2.9 - 3.1)
    assert cells["dense"].difference.diff == pytest.approx(2.55 - 3.1)
    assert cells["mdgf"].reference.mean == pytest.approx(3.1)
    # the iso-FLOPs target stays the validation mean: the curves are validation curves
    assert tuned.iso and all(it.target == pytest.approx(3.0) for it in tuned.iso)
    text = markdown(tuned)
    assert "test bits per character" in text and "picked on validation" in text and "test split" in text
    untuned_test = analyse(store, fix={"schedule.lr": 0.003}, split="test")
    diffs = {c.label: c.difference.diff for c in untuned_test.comparisons}
    assert diffs["mdgf"] == pytest.approx(2.9 - 2.8)  # sr-ste at 0.003 on test: 3.2 - 0.4
    with pytest.raises(PgfSimError, match="split must be one of val, test"):
        analyse(store, tune="schedule.lr", split="train")


def test_test_split_without_test_metrics_names_the_run(tmp_path):
    store = _fill(tmp_path / "s.sqlite")  # validation metrics only
    with pytest.raises(PgfSimError, match=r"run \S+ has no final test_bpc.*--split val"):
        analyse(store, split="test")


def test_study_command_compares_both_views_on_the_test_split_when_tuning(tmp_path, capsys):
    from pgf_sim.cli import main

    _fill_lr_grid(tmp_path / "s.sqlite")
    assert main(["study", str(tmp_path / "s.sqlite"), "--fix", "schedule.lr=0.003", "--tune", "schedule.lr"]) == 0
    out = capsys.readouterr().out
    untuned, tuned = out.split("## Tuned\n")
    assert "test bits per character" in untuned and "test bits per character" in tuned
    assert "| mdgf | 1:16 | +0.100 |" in untuned and "| mdgf | 1:16 | -0.200 |" in tuned
    assert main(["study", str(tmp_path / "s.sqlite"), "--tune", "schedule.lr", "--split", "val"]) == 0
    assert "| mdgf | 1:16 | -0.100 |" in capsys.readouterr().out


def test_across_rows_put_every_view_and_sweep_in_one_table(tmp_path):
    from pgf_sim.codesign.decide.study import across_rows

    store = _fill_lr_grid(tmp_path / "s.sqlite")
    untuned = analyse(store, fix={"schedule.lr": 0.003}, split="val")
    tuned = analyse(store, tune="schedule.lr", split="val")
    rows = across_rows([untuned, tuned])
    assert [(r["view"], r["recipe"], r["reference"]) for r in rows] == [
        ("lr 0.003", "mdgf", "sr-ste"), ("tuned lr", "mdgf (lr 0.003)", "sr-ste (lr 0.001)")]  # dense left out
    first, second = rows
    assert first["recipe's mean"] == "2.900 ± 0.100 (n=3)" and first["reference's mean"] == "3.200 ± 0.100 (n=3)"
    assert first["difference (Welch 95%)"].startswith("-0.300 [") and second["difference (Welch 95%)"].startswith("-0.100 [")
    assert first["Holm p (family)"].endswith("(2)") and first["split"] == "validation"
    # n = 3, std 0.1 each, family of 2 -> alpha 0.025, Welch df 4: (t_.9875,4 3.4954 + t_.8,4 0.9410) * 0.0816
    assert first["detectable (80% power, α/m)"] == "0.362"


def test_study_command_with_several_sweeps_prints_each_and_the_table_across(tmp_path, capsys):
    from pgf_sim.cli import main

    store = _fill_lr_grid(tmp_path / "s.sqlite")
    store.record_sweep("t", "b8_fp16", [("a100_80gb", "a100_80gb")], {"name": "t"})  # the lr-0.001 half as its own sweep
    store.record_points("t", [p for p in store.sweep_points("s") if p.params["schedule.lr"] == 0.001])
    db = str(tmp_path / "s.sqlite")
    assert main(["study", db, "--sweep", "s", "--sweep", "t", "--fix", "schedule.lr=0.001", "--split", "val",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "# Sweep s" in out and "# Sweep t" in out and "### Across sweeps" in out
    table = out.split("### Across sweeps")[1]
    # mdgf at lr 0.001: 3.3 against sr-ste's 3.0 in both sweeps (the same runs)
    assert table.count("| mdgf | 1:16 | 3.300 ± 0.100 (n=3) | sr-ste | 3.000 ± 0.100 (n=3) | +0.300 [") == 2
    assert (tmp_path / "out" / "across_sweeps.md").read_text().startswith("### Across sweeps")
    assert (tmp_path / "out" / "s" / "study_tables.md").is_file() and (tmp_path / "out" / "t" / "study_tables.md").is_file()


def test_across_figure_places_each_comparison_with_its_welch_interval(tmp_path):
    from pgf_sim.codesign.decide.study import across_figure

    store = _fill_lr_grid(tmp_path / "s.sqlite")
    untuned = analyse(store, fix={"schedule.lr": 0.003}, split="val")
    tuned = analyse(store, tune="schedule.lr", split="val")
    fig = across_figure([untuned, tuned])
    (trace,) = fig.data  # mdgf only: dense is left out
    assert trace.name == "mdgf" and list(trace.y) == pytest.approx([2.9 - 3.2, 2.9 - 3.0])
    assert list(trace.x) == ["s<br>lr 0.003, 1:16", "s<br>tuned lr, 1:16"]
    (c,) = [c for c in untuned.comparisons if c.label == "mdgf"]
    assert trace.error_y.array[0] == pytest.approx(c.difference.high - c.difference.diff)
    assert trace.error_y.arrayminus[0] == pytest.approx(c.difference.diff - c.difference.low)
    assert "below 0: the recipe is better" in fig.layout.title.text
