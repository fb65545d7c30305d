"""The co-design report: ONE self-contained HTML file (plotly.js inline, works offline).

``write_report(path, data)`` takes a ``ReportData`` bundle (filled from the result store by
the co-design CLI, or by hand). The page opens with the answer: per target the pick with its
metric (mean ± std, seeds, split), its cost in ms / mJ / MB / GFLOP, its memory footprint of
the target's memory, speedup and energy saving against dense, the runner-up and whether the
two are distinguishable, then the cost of every N:M pattern per target (its footprint marked
"does not fit" where it exceeds the target's memory). Then, per cost view (the deployment-scale
proxy first when the trained model is too small to load the hardware), one Pareto figure per
target (metric vs latency, energy, memory footprint, inference and training FLOPs; fronts over
the candidates that fit the target's memory, those that do not crossed out in red; see
``report_pareto`` and ``report_figures`` for the drawing conventions) and
the per-layer breakdowns (one figure per view, a menu chooses pick or dense baseline and target),
then the training curves (validation metric and loss vs step and vs training FLOPs, MDGF's beta
and the SDGF pattern frames), gradient noise and the design-space answers. To keep the page
short, a trained-model view whose costs are flat (it comes second) and the gradient noise are
folded into closed ``<details>`` sections; opening one resizes its plots.
With ``figure_files=True`` every figure is also written as PNG and SVG beside the report
(plotly's static export through kaleido, which drives an installed Chrome/Chromium).
``export_png`` screenshots the whole page with headless Chromium.
"""
from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..decide.pareto import Candidate, ResultTable, fronts
from ..decide.pick import Pick
from ..decide.records import distinguishable
from .report_figures import (COSTS, GOALS, MetricInfo, Style, curves_figure, dense_reference, dse_figure, human,
                             layer_figure, relative_span)
from .report_pareto import drawn_costs, has_footprint, memory_text, pareto_figure
from .report_png import FIG_HEIGHT_PX, chromium_command, export_png, find_chromium  # noqa: F401 (public here)

#: The trained view is "too small to load the hardware" when no target's latency differs by
#: more than this (relative) between its candidates: then the deployment proxy leads.
FLAT_COST_SPAN = 0.05
_FIGURE_FILE = re.compile(r"^\d{2}_[\w.+-]*\.(png|svg)$")
_NOISE_WORDS = {"sem": "one standard error of the mean", "std": "one standard deviation over seeds",
                "none": "no noise margin"}


@dataclass(frozen=True)
class Curve:
    """One line of a panel: ``y`` over ``x``, optional ±``y_std`` band (over seeds).

    ``label``: legend entry (e.g. ``"mdgf 1:8"``); ``group``: the panel's title; ``recipe`` and
    ``pattern`` pick the page-wide colour and dash/marker; ``x_title`` / ``x_unit`` (e.g.
    ``"FLOP"``: SI-scaled) and ``y_title`` label the panel's axes; ``steps``: draw as a staircase
    (a schedule that holds its value until the next point); ``text``: hover text per point.
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]
    group: str = ""
    y_std: Sequence[float] | None = None
    recipe: str = ""
    pattern: str = ""
    x_title: str = "step"
    x_unit: str = ""
    y_title: str = ""
    steps: bool = False
    text: Sequence[str] | None = None


@dataclass(frozen=True)
class LayerBreakdown:
    """Per-layer simulated cost of one candidate on one hardware target (layers in order)."""

    hardware: str
    label: str
    layers: Sequence[str]
    latency_s: Sequence[float]
    energy_j: Sequence[float]
    bound: Sequence[str] | None = None  # "compute" | "memory" | "overhead" per layer


@dataclass(frozen=True)
class CostSection:
    """One cost view of the results (e.g. the trained model's own cost, or a deployment-scale
    proxy): a heading, the sentence saying where accuracy and cost come from, and its candidates,
    picks and per-layer breakdowns. ``kind``: ``"trained"`` or ``"deploy"`` (the deployment
    proxy leads the page when the trained model's cost is flat across candidates)."""

    title: str
    note: str
    results: ResultTable | Sequence[Candidate] = ()
    picks: Sequence[Pick] = ()
    pick_errors: Sequence[str] = ()
    layer_breakdowns: Sequence[LayerBreakdown] = ()
    kind: str = ""
    slug: str = ""  # file-name tag of its figures (kind, and runtime where not eager); default kind


@dataclass
class ReportData:
    """Everything the report shows; every field is optional (empty sections say so).

    - ``results``: candidates (``pareto.Candidate``) over all hardware targets; ``noise``: how
      the noise-aware front is computed (``"sem"`` | ``"std"`` | ``"none"``, see ``pareto.fronts``).
    - ``metric``: name, unit, direction and split of the quality metric the candidates carry.
    - ``picks`` / ``pick_errors``: ``pick.Pick`` results and messages of picks that found nothing.
    - ``layer_breakdowns``: per-layer latency/energy bars (``LayerBreakdown``).
    - ``grad_noise``: gradient-noise ``Curve``s, panel = ``group`` (log axes).
    - ``training_curves``: ``Curve``s of the training figure, panel = ``group`` (validation metric
      and loss vs step and vs training FLOPs, beta, SDGF frames ...).
    - ``dse``: ``dse.DseResult``s; ``pattern_gains``: ``dse.PatternGain``s (their statements);
      ``dse_note``: what workloads the design-space answers were computed on.
    - ``notes``: free paragraphs; ``meta``: key/value table (at the end).
    - ``test_results``: candidate label -> (mean, std, n seeds) of the metric on the TEST split,
      shown beside each pick (reported only; picks are made on validation).
    - ``cost_views``: ``CostSection``s; when given, picks, fronts and breakdowns come from them
      instead of the fields above.
    - ``study``: the ``study.Study`` of a sweep with several seeds per cell (verdicts against
      SR-STE, Welch intervals, iso-FLOPs, gradient noise; ``report_study``), shown after the answer.
    """

    title: str = "pgf_sim co-design report"
    results: ResultTable | Sequence[Candidate] = ()
    noise: str = "sem"
    picks: Sequence[Pick] = ()
    pick_errors: Sequence[str] = ()
    layer_breakdowns: Sequence[LayerBreakdown] = ()
    grad_noise: Sequence[Curve] = ()
    training_curves: Sequence[Curve] = ()
    dse: Sequence[Any] = ()
    pattern_gains: Sequence[Any] = ()
    notes: Sequence[str] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    cost_views: Sequence[CostSection] = ()
    metric: MetricInfo = field(default_factory=MetricInfo)
    dse_note: str = ""
    test_results: Mapping[str, tuple[float, float, int]] = field(default_factory=dict)
    study: Any = None  # study.Study of a seed sweep: its section follows the answer


def write_report(path: str | Path, data: ReportData, *, figure_files: bool = False) -> Path:
    """Write the HTML report to ``path`` (parents created) atomically, so an old report survives a
    failed write; returns the path. ``figure_files``: also write each figure as
    ``<stem>_figures/NN_<name>.png`` and ``.svg`` (see ``export_figures``)."""
    from ...core.files import atomic_write

    from ...core.files import check_output_dir

    path = Path(path)
    if path.parent.is_dir():
        check_output_dir(path)  # a device, FIFO or link as --out: refused before any work
    figs = _Figures()
    html = render_html(data, figs)
    if figure_files:  # figures first: a report killed meanwhile keeps its old HTML and old figures
        export_figures(figs.items, path.parent / f"{path.stem}_figures")
    atomic_write(path, html, make_parents=True)
    return path


def export_figures(items: Sequence[tuple[str, Any]], folder: Path) -> list[Path]:
    """Each (name, plotly figure) as ``folder/NN_name.png`` (2x scale) and ``.svg`` via plotly's
    static export (kaleido, which needs Chrome or Chromium installed). Figure files of an earlier
    report in ``folder`` (``NN_*.png`` / ``.svg``) are replaced by the new set only once every new
    figure is written (into a temporary folder beside it): a report killed mid-export keeps the
    old set whole. Other files are left alone. Without kaleido or a browser: one line saying what
    is missing, and nothing written."""
    import shutil
    import tempfile

    import plotly.io as pio

    if not items:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}.*.tmp"):  # left by a report that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        written = _write_figures(pio, items, staging)
        if not written:
            return []
        for old in folder.iterdir():  # an earlier report's figures: their numbers and names no longer match
            if old.is_file() and _FIGURE_FILE.match(old.name):
                old.unlink()
        for new in written:
            os.replace(new, folder / new.name)
        return [folder / p.name for p in written]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def menu_choices(name: str, fig: Any) -> list[tuple[str, Any]]:
    """A figure with a dropdown menu as one static figure per menu choice (``name_1``, ``name_2``,
    ...: a PNG cannot open a menu), each with that choice applied and no menu; others as they are."""
    import plotly.graph_objects as go

    menus = fig.layout.updatemenus or ()
    buttons = [b for m in menus for b in (m.buttons or ()) if b.method == "update" and b.args]
    if not buttons:
        return [(name, fig)]
    out = []
    for k, button in enumerate(buttons, start=1):
        one = go.Figure(fig)
        restyle, relayout = (list(button.args) + [{}])[:2]
        one.plotly_restyle(dict(restyle))
        one.plotly_relayout(dict(relayout))
        one.layout.updatemenus = ()
        out.append((f"{name}_{k}", one))
    return out


def _write_figures(pio: Any, items: Sequence[tuple[str, Any]], folder: Path) -> list[Path]:
    figs, paths, widths, heights = [], [], [], []
    items = [(f"{i:02d}_{part}", one) for i, (name, fig) in enumerate(items) for part, one in menu_choices(name, fig)]
    for name, fig in items:
        for ext in ("png", "svg"):
            figs.append(fig)
            paths.append(folder / f"{name}.{ext}")
            widths.append(1500 if len(fig.layout.annotations or ()) > 2 else 1200)
            heights.append(fig.layout.height or FIG_HEIGHT_PX)
    try:  # one batch: kaleido starts its browser once
        pio.write_images(figs, paths, width=widths, height=heights,
                         scale=[1.5 if p.suffix == ".png" else 1 for p in paths])
    except (ImportError, ValueError, RuntimeError) as exc:  # kaleido missing, or it found no browser
        import importlib.util

        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), "") or type(exc).__name__
        need = ("Chrome/Chromium (`apt-get install chromium`)" if importlib.util.find_spec("kaleido") is not None
                else "`pip install kaleido` and Chrome/Chromium (`apt-get install chromium`)")
        print(f"pgf-sim: figure files skipped ({type(exc).__name__}: {reason}); they need {need}")
        return []
    return paths


def render_html(data: ReportData, figs: "_Figures | None" = None) -> str:
    figs = figs if figs is not None else _Figures()
    style = Style()
    views = order_views(list(data.cost_views) or [CostSection("", "", data.results, data.picks, data.pick_errors,
                                                            data.layer_breakdowns)])
    for v in views:
        style.register(list(_table(v)))
    body: list[str] = [f"<h1>{_e(data.title)}</h1>"]
    body += _answer(views, data.metric, data.test_results)
    body.append(_toc(views, study=data.study is not None))
    body += [f"<p class='note'>{_e(n)}</p>" for n in data.notes]
    if data.study is not None:
        from .report_study import study_section

        body += study_section(data.study, figs.add, _html_table)
    for i, view in enumerate(views):
        section = _cost_section(view, figs, data.noise, data.metric, style, index=i)
        flat = is_flat(view) if view.kind == "trained" and i > 0 else None
        if flat is not None:  # the view the answer does not use: folded, one click away
            body.append(f"<details class='view' id='view{i}'><summary><b>{_e(view.title)}</b>: its costs differ by at "
                        f"most {flat * 100:.2f}% between N:M patterns (the model is too small to load the hardware); "
                        f"click to show its Pareto fronts and per-layer costs</summary>")
            body += section + ["</details>"]
        else:
            body += [f"<section id='view{i}'>"] + section + ["</section>"]

    body.append("<h2 id='training'>Training curves</h2>")
    body.append(figs.add(curves_figure(f"Training curves: {data.metric.name} and loss (mean over seeds; band: ± std)",
                                       data.training_curves, style), "training_curves")
                if data.training_curves else _empty("no training curves"))
    # the table of contents' link opens it (a closed <details> would look like an empty section)
    body.append("<details id='noise'><summary><b>Gradient noise per recipe</b> (click to show)</summary>")
    body.append(figs.add(curves_figure("Gradient noise per recipe (mean over seeds)", data.grad_noise, style,
                                       log_y=True, cols=2), "gradient_noise")
                if data.grad_noise else _empty("no gradient-noise diagnostics"))
    body.append("</details>")

    body.append("<h2 id='dse'>Hardware design-space exploration</h2>")
    if data.dse_note:
        body.append(f"<p class='note'>{_e(data.dse_note)}</p>")
    for res in data.dse:
        body.append(figs.add(dse_figure(res), f"dse_{res.base}"))
        body.append(_html_table(res.rows()))
    for gain in data.pattern_gains:
        body.append(f"<pre>{_e(gain.statement())}</pre>")
    if not data.dse and not data.pattern_gains:
        body.append(_empty("no design-space exploration in this report"))
    if data.meta:
        body.append("<h2>About this report</h2>")
        body.append(_html_table([{"key": k, "value": v} for k, v in data.meta.items()]))
    return _PAGE.format(title=_e(data.title), body="\n".join(body))


def _table(view: CostSection) -> ResultTable:
    return view.results if isinstance(view.results, ResultTable) else ResultTable(view.results)


def is_flat(view: CostSection) -> float | None:
    """The largest relative latency span between the sparse candidates of any target of a view
    when it is below ``FLAT_COST_SPAN`` (the model is too small to load the hardware, so the
    pattern hardly changes its cost), else None."""
    table = _table(view)
    spans = []
    for hw in table.hardware_names():
        cs = list(table.where(hardware=hw))
        sparse = [c for c in cs if c.pattern_text != "dense"] or cs  # does the pattern choice change the cost?
        spans.append(relative_span([c.latency_s for c in sparse]))
    return max(spans) if spans and max(spans) < FLAT_COST_SPAN else None


def _dense_gap(view: CostSection) -> float | None:
    """The largest speedup (or slowdown, as its inverse) of a sparse candidate over the dense
    baseline's latency on any target of ``view``; None without a dense baseline."""
    table = _table(view)
    gaps = []
    for hw in table.hardware_names():
        dense = dense_reference(table, hw)
        for c in table.where(hardware=hw):
            if dense is not None and c.pattern_text != "dense" and c.latency_s > 0 and dense.latency_s > 0:
                r = dense.latency_s / c.latency_s
                gaps.append(max(r, 1 / r))
    return max(gaps) if gaps else None


def order_views(views: list[CostSection]) -> list[CostSection]:
    """The deployment-proxy view first when the trained view's costs are flat; otherwise as given."""
    trained = [v for v in views if v.kind == "trained"]
    if trained and len(views) > 1 and is_flat(trained[0]) is not None:
        return [v for v in views if v.kind != "trained"] + trained
    return views


def answer_rows(view: CostSection, metric: MetricInfo,
                test: Mapping[str, tuple[float, float, int]] | None = None) -> list[dict[str, str]]:
    """One row per pick of ``view``, in human units: the answer table of the first screen.
    ``test``: candidate label -> (mean, std, n) on the test split, shown beside the validation
    number the pick was made on."""
    table = _table(view)
    memory = has_footprint(table)
    rows = []
    goals: dict[tuple[str, str], list[str]] = {}
    for p in view.picks:
        goal = GOALS.get(p.objective, f"least {p.objective}")
        goals.setdefault((p.hardware, p.best.label), []).append(goal)
    done = set()
    for p in view.picks:
        b, r = p.best, p.runner_up
        if (p.hardware, b.label) in done:
            continue  # the same choice for another objective: one row, both goals
        done.add((p.hardware, b.label))
        dense = dense_reference(table, p.hardware)
        if dense is not None and b.pattern_text != "dense":
            speed = f"{dense.latency_s / b.latency_s:.2f}x"
            saving = f"{(1 - b.energy_j / dense.energy_j) * 100:.0f}%"
        else:
            speed, saving = ("1.00x (it is dense)", "0%") if dense is not None else ("no dense run", "-")
        if r is None:
            runner, dist = "- (only feasible candidate)", "-"
        else:
            runner = f"{r.label}: {metric.fmt(r)}, {human(r.latency_s, 's')}, {human(r.energy_j, 'J')}"
            gap = b.accuracy_mean - r.accuracy_mean
            noise = math.hypot(b.accuracy_std, r.accuracy_std)
            side = "better" if metric.oriented(gap) > 0 else "worse" if gap else "equal"
            what = f"{metric.name} {metric.fmt_delta(gap)} {side}" if gap else f"{metric.name} equal"
            if min(b.n_seeds, r.n_seeds) < 2:  # no spread measured: never a yes
                dist = f"cannot tell: {what}, 1 seed (no spread measured; more seeds would decide)"
            else:
                dist = (f"yes: {what} > combined std {metric.fmt_delta(noise)}" if distinguishable(b, r) else
                        f"no: {what}, within combined std {metric.fmt_delta(noise)}")
        t = (test or {}).get(b.label)
        row = {"target": p.hardware, "goal": " and ".join(goals[(p.hardware, b.label)]),
               "train this": b.label, metric.name: metric.fmt(b)}
        if test is not None:
            row["test split (reported, not used to pick)"] = metric.fmt_value(*t) if t else "-"
        row.update({"latency": human(b.latency_s, "s"), "energy": human(b.energy_j, "J"),
                    "weights": human(b.weight_bytes, "B"), **({"memory": memory_text(b)} if memory else {}),
                    "FLOPs per inference": human(b.inference_flops, "FLOP"),
                    "speedup vs dense": speed, "energy saving vs dense": saving,
                    "runner-up": runner, "distinguishable from runner-up?": dist})
        rows.append(row)
    return rows


def pattern_cost_rows(view: CostSection) -> list[dict[str, str]]:
    """Cost of each N:M pattern per target (the cheapest recipe of the pattern; in the deployment
    proxy all recipes of a pattern cost the same), with the ratio to dense: latency (speedup) ·
    energy, and where footprints were simulated · memory footprint of the target's capacity,
    marked "does not fit" when it exceeds it."""
    table = _table(view)
    out = []
    patterns = sorted({c.pattern_text for c in table}, key=lambda t: (t != "dense", -_density_of(table, t)))
    for pat in patterns:
        row = {"pattern": pat}
        for hw in table.hardware_names():
            cs = [c for c in table.where(hardware=hw) if c.pattern_text == pat and math.isfinite(c.latency_s)]
            if not cs:
                row[hw] = "-"
                continue
            c = min(cs, key=lambda c: c.latency_s)
            dense = dense_reference(table, hw)
            rel = f" ({dense.latency_s / c.latency_s:.2f}x)" if dense is not None and pat != "dense" else ""
            row[hw] = f"{human(c.latency_s, 's')}{rel} · {human(c.energy_j, 'J')}"
            if math.isfinite(c.footprint_bytes):
                row[hw] += f" · {memory_text(c)}"
        out.append(row)
    return out


def _density_of(table: ResultTable, text: str) -> float:
    return next((getattr(c.pattern, "density", 0.0) for c in table if c.pattern_text == text), 0.0)


def _toc(views: Sequence[CostSection], *, study: bool = False) -> str:
    """One line of links to the sections below the answer."""
    links = ["<a href='#study'>recipe comparison over seeds</a>"] if study else []
    links += [f"<a href='#view{i}'>{_e(v.title.removeprefix('Cost model: ') or 'Pareto fronts')}</a>"
             for i, v in enumerate(views)]
    links += ["<a href='#training'>training curves</a>", "<a href='#noise' onclick=\"document.getElementById('noise').open=true\">gradient noise</a>",
              "<a href='#dse'>design space</a>"]
    return "<p class='toc'>Below: " + " · ".join(links) + "</p>"


def _answer(views: Sequence[CostSection], metric: MetricInfo,
            test: Mapping[str, tuple[float, float, int]] | None = None) -> list[str]:
    lead = views[0]
    out = ["<section id='answer'><h2>The answer per target</h2>"]
    flat = [v for v in views if v.kind == "trained" and is_flat(v) is not None]
    if flat and lead is not flat[0]:
        dense_gap = _dense_gap(flat[0])
        vs_dense = f"; sparse vs dense: at most {dense_gap:.2f}x" if dense_gap is not None else ""
        out.append(f"<p class='note'><b>{_e(lead.title.removeprefix('Cost model: '))}</b> leads: the trained model "
                   f"is too small to load the hardware (on every target its sparse N:M patterns differ in latency by "
                   f"at most {is_flat(flat[0]) * 100:.2f}%{vs_dense}), so its own cost cannot separate the patterns. "
                   f"The trained-model view follows below, folded.</p>")
    elif lead.title:
        out.append(f"<p class='note'>Cost view: <b>{_e(lead.title.removeprefix('Cost model: '))}</b>.</p>")
    out.append(f"<p>{_e(metric.name)}: mean ± std over seeds on the {_e(metric.split)} "
               f"({metric.better}); picks are made on it"
               + (", and the test split's number is shown beside it" if test else "") +
               ". Speedup and energy saving are against the dense baseline on the same target.</p>")
    rows = answer_rows(lead, metric, test or None)
    out.append(_html_table(rows, cls="answer") if rows else _empty("no picks were requested"))
    out += [f"<p class='err'>{_e(m)}</p>" for m in lead.pick_errors]
    out += [f"<p class='note'>{_e(line)}</p>" for line in _budget_lines(lead, metric) + _runtime_lines(lead, views)]
    out.append("<p>Recipe rankings come from the models this sweep trained. They need not hold for a "
               "larger model or another training budget: the project's width study (docs/study.md) finds the order "
               "of SR-STE and MDGF at 1:16 changing with width and budget. To check on your own model, sweep a few "
               "seeds of it and run <code>pgf-sim study</code>.</p>")
    memory = (" · memory footprint and the target's memory (\"does not fit\" where it exceeds it)"
              if any(has_footprint(_table(v)) for v in views) else "")
    out.append(f"<h3>Cost per N:M pattern and target</h3><p>Latency (speedup vs dense) · energy per inference{memory}; "
               "per pattern the cheapest recipe.</p>")
    for v in views:
        if len(views) > 1:
            out.append(f"<p class='sub'>{_e(v.title.removeprefix('Cost model: '))}</p>")
        out.append(_html_table(pattern_cost_rows(v)) if len(_table(v)) else _empty("no results"))
    return out + ["</section>"]


def _budget_lines(lead: CostSection, metric: MetricInfo) -> list[str]:
    """The quality budget the picks were held to, and how far inside it each pick is."""
    limits = {p.hardware: (p.constraints.get("metric_limit"), p.best) for p in lead.picks
              if p.objective == "latency_s" or len({q.objective for q in lead.picks}) == 1}
    limits = {hw: v for hw, v in limits.items() if v[0] is not None and math.isfinite(v[0])}
    if not limits:
        return []
    sense = ">=" if metric.higher_is_better else "<="
    values = sorted({round(v, 12) for v, _ in limits.values()})
    where = "every target" if len(values) == 1 else "per target"
    bound = metric.fmt_value(values[0]) if len(values) == 1 else ", ".join(
        f"{hw} {metric.fmt_value(v)}" for hw, (v, _) in limits.items())
    def margin(v: float, b: Candidate) -> str:
        text = f"{b.label} {metric.fmt_value(abs(b.accuracy_mean - v))} inside"
        if b.n_seeds < 2:
            return text + " (1 seed: its noise is unknown)"
        if abs(b.accuracy_mean - v) < b.accuracy_std:
            return text + f", within one std ({metric.fmt_value(b.accuracy_std)}) of the edge: more seeds would decide"
        return text

    texts = {hw: margin(v, b) for hw, (v, b) in limits.items()}
    margins = (f"every pick is {next(iter(texts.values()))}" if len(set(texts.values())) == 1 and len(texts) > 1
               else "; ".join(f"{hw}: {t}" for hw, t in texts.items()))
    return [f"Quality budget: candidates need mean {metric.name} {sense} {bound} on {where} (the default: the dense "
            f"baseline worsened by the metric's budget; --limit or --max-drop change it). Margin: {margins}."]


def _runtime_lines(lead: CostSection, views: Sequence[CostSection]) -> list[str]:
    """Where the same view priced in another runtime picks differently (fastest pick per target)."""
    def fastest(v: CostSection) -> dict[str, str]:
        return {p.hardware: p.best.label for p in v.picks if p.objective == "latency_s"}

    base = fastest(lead)
    out = []
    for v in views:
        if v is lead or v.kind != lead.kind or v.slug == lead.slug or not v.picks:
            continue
        other = fastest(v)
        diff = [f"{hw}: {other[hw]} (here {base[hw]})" for hw in base if hw in other and other[hw] != base[hw]]
        runtime = v.title.rsplit(", ", 1)[-1] if ", " in v.title else v.slug
        out.append(f"In the {runtime} the fastest pick differs on " + "; ".join(diff) + "." if diff else
                   f"In the {runtime} the fastest pick is the same on every target.")
    return out


def _cost_section(view: CostSection, figs: "_Figures", noise: str, metric: MetricInfo, style: Style, *,
                  index: int) -> list[str]:
    """Pareto figures, pick explanations and per-layer breakdowns of one cost view."""
    table = _table(view)
    body: list[str] = []
    if view.title:
        body.append(f"<h2 class='view'>{_e(view.title)}</h2>")
    if view.note:
        body.append(f"<p class='note'>{_e(view.note)}</p>")
    body.append("<h3>Pareto fronts per target</h3>")
    if len(table):
        body.append(f"<p>Colour: recipe; marker: N:M pattern (the same on every chart of this page). Error bars: ± one "
                    f"std over seeds. Black staircase: the Pareto front (nothing else is at least as good in "
                    f"{_e(metric.name)} and at most as costly; {metric.better}, so the best quality within a cost x is "
                    f"that of the costliest front point at or below x). Grey ring: off the front by less than the "
                    f"seed noise ({_e(_NOISE_WORDS.get(noise, noise))}). Gold star: the pick. A cost axis whose values span "
                    f"less than 5% is drawn as the change relative to dense, so simulator-level differences do "
                    f"not look like gaps; points with equal cost are spread sideways slightly (hover for exact "
                    f"values). Inference FLOPs are those the target executes (a pattern it cannot skip costs "
                    f"dense FLOPs).{_e(_memory_note(table))}</p>")
        metrics = tuple(k for k, _, _ in COSTS)
        fr = fronts(table, metrics, fits_only=True)
        noisy = fronts(table, metrics, noise=noise, fits_only=True) if noise != "none" else None
        for hw in table.hardware_names():
            figs_html = figs.add(pareto_figure(table, hw, fr, view.picks, style, metric, tag=_e(view.title),
                                               noisy=noisy),
                                 f"pareto_{view.slug or view.kind or index}_{hw}")
            body.append(figs_html)
        spread = [c for c in table if c.cost_spread > 1e-6]
        if spread:
            body.append("<p class='err'>Simulated cost differs between the seeds of: " + "; ".join(
                f"{_e(c.label)} on {_e(c.hardware)} ({c.cost_spread * 100:.2g}%)" for c in spread) +
                ". Their captured per-layer patterns differ; the plots show the mean cost.</p>")
        drawn = {(hw, key) for hw in table.hardware_names() for key, _, _ in drawn_costs(list(table.where(hardware=hw)))}
        excluded = {row: why for f in fr.values() if (f.hardware, f.metric) in drawn for row, why in f.excluded}
        if excluded:
            body.append("<p class='err'>Left off the fronts: " + "; ".join(_e(w) for w in excluded.values()) + "</p>")
    else:
        body.append(_empty("no results"))
    if view.picks:
        body.append("<details><summary>How each pick was made</summary>" +
                    "".join(f"<p class='why'>{_e(p.explanation)}</p>" for p in view.picks) + "</details>")
    body += [f"<p class='err'>{_e(m)}</p>" for m in view.pick_errors]
    if not view.picks and not view.pick_errors:
        body.append(_empty("no picks were requested"))
    body.append("<h3>Per-layer latency and energy</h3>")
    if view.layer_breakdowns:
        body.append("<p>One bar per weight GEMM, then one bar each for all attention matmuls (Q K^T, A V) and all "
                    "element-wise ops (norms, activations, softmax, residual adds) where the model has them: the "
                    "bars add up to the whole simulated latency and energy.</p>")
        if len(view.layer_breakdowns) > 1:
            body.append(f"<p>{len(view.layer_breakdowns)} breakdowns (each pick and its target's dense baseline): "
                        f"choose one in the figure's menu.</p>")
        body.append(figs.add(layer_figure(view.layer_breakdowns), f"layers_{view.slug or view.kind or index}"))
    else:
        body.append(_empty("no per-layer data"))
    return body


def _memory_note(table: ResultTable) -> str:
    """The Pareto caption's sentence on memory: the footprint panel, and the red cross on the
    candidates that do not fit (empty for results stored before footprints were)."""
    if not has_footprint(table):
        return ""
    text = (" Memory footprint: inference memory, i.e. the stored weights (N:M compressed where the target stores "
            "them so) + peak live activations + KV cache, against the target's memory.")
    too_big: dict[str, list[str]] = {}
    for c in table:
        if not c.fits_memory:
            too_big.setdefault(c.hardware, []).append(c.label)
    if too_big:
        where = "; ".join(f"on {hw}: {', '.join(labels)}" for hw, labels in too_big.items())
        text += (f" Red X: the footprint exceeds the target's memory ({where}); such a candidate is left off the "
                 f"fronts and never picked.")
    return text


class _Figures:
    """Renders figures in order; the first embeds plotly.js inline (no CDN), the rest reuse it.
    ``items`` keeps (file-safe name, figure) for the PNG/SVG export."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []

    def add(self, fig: Any, name: str) -> str:
        n = len(self.items)
        snippet = fig.to_html(full_html=False, include_plotlyjs=n == 0, div_id=f"fig{n}",
                              config={"displaylogo": False, "responsive": True})
        self.items.append((re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:80], fig))
        return f"<div class='fig'>{snippet}</div>"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _empty(text: str) -> str:
    return f"<p class='empty'>({_e(text)})</p>"


def _html_table(rows: Sequence[Mapping[str, Any]], cls: str = "") -> str:
    if not rows:
        return _empty("empty table")
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.4g}"
        return _e(v)

    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.2em 2em; color: #222; }}
h1 {{ font-size: 1.5em; margin: .2em 0 .4em; }}
table {{ border-collapse: collapse; margin: .5em 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }}
table.answer td:nth-child(3) {{ font-weight: bold; }}
table.answer {{ font-size: 14px; }}
.fig {{ margin: .6em 0 1.6em; }}
h2.view {{ border-top: 3px solid #444; padding-top: .4em; }}
.note {{ max-width: 80em; background: #fff7e0; padding: .4em; }} .sub {{ font-weight: bold; margin-bottom: 0; }}
.why {{ max-width: 80em; }} .err {{ color: #a40000; }} .empty {{ color: #888; }}
details.view, details#noise {{ border-top: 3px solid #444; padding-top: .4em; margin: 1em 0; }}
summary {{ cursor: pointer; }} .toc {{ font-size: 14px; }}
pre {{ background: #f7f7f7; padding: .6em; white-space: pre-wrap; }}
</style></head>
<body>
{body}
<script>
// a plot drawn inside a closed <details> has no width yet: size it when the section opens
document.querySelectorAll('details').forEach(d => d.addEventListener('toggle', () => {{
  if (d.open && window.Plotly) d.querySelectorAll('.js-plotly-plot').forEach(p => Plotly.Plots.resize(p));
}}));
</script>
</body></html>
"""
