"""The co-design report: ONE self-contained HTML file (plotly.js inline, works offline).

``write_report(path, data)`` takes a ``ReportData`` bundle (filled from the result store by
the co-design CLI, or by hand) and writes sections for whatever it holds: picks, Pareto fronts
per hardware target (accuracy ± std vs latency / energy / inference FLOPs, the front drawn as
a staircase, points inside seed noise of the front ringed), accuracy vs training FLOPs,
per-layer latency/energy breakdowns, gradient-noise curves per recipe, training curves and
hardware design-space results. plotly is imported inside the functions that draw.
``export_png`` screenshots the report with headless Chromium when one is installed.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.metric import ACCURACY, Metric
from .pareto import METRIC_LABELS, Candidate, ResultTable, fronts, pareto_front
from .pick import Pick
from .report_png import FIG_HEIGHT_PX, chromium_command, export_png, find_chromium  # noqa: F401 (public here)
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon", "triangle-down", "pentagon")


@dataclass(frozen=True)
class Curve:
    """One line: ``y`` over ``x`` (training step), optional ±``y_std`` band.

    ``label``: legend entry (e.g. ``"mdgf 1:8"``); ``group``: which panel it goes to (the
    metric, e.g. ``"grad std fc1"`` or ``"eval accuracy"``).
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]
    group: str = ""
    y_std: Sequence[float] | None = None


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
    picks and per-layer breakdowns."""

    title: str
    note: str
    results: ResultTable | Sequence[Candidate] = ()
    picks: Sequence[Pick] = ()
    pick_errors: Sequence[str] = ()
    layer_breakdowns: Sequence[LayerBreakdown] = ()


@dataclass
class ReportData:
    """Everything the report shows; every field is optional (empty sections say so).

    - ``results``: candidates (``pareto.Candidate``) over all hardware targets: Pareto plots
      and accuracy vs training FLOPs. ``noise``: how the noise-aware front used for the
      "within noise" rings is computed (``"sem"`` | ``"std"`` | ``"none"``, see ``pareto.fronts``).
    - ``picks``: ``pick.Pick`` results; ``pick_errors``: messages of picks that found nothing.
    - ``layer_breakdowns``: per-layer latency/energy bars (``LayerBreakdown``).
    - ``grad_noise``: gradient-noise ``Curve``s, one per recipe (and layer), panel = ``group``.
    - ``training_curves``: loss/accuracy ``Curve``s per run, panel = ``group``.
    - ``dse``: ``dse.DseResult``s; ``pattern_gains``: ``dse.PatternGain``s (their statements).
    - ``notes``: free paragraphs (e.g. how the sweep was run); ``meta``: key/value header table.
    - ``cost_views``: ``CostSection``s; when given, picks, fronts and breakdowns are drawn once
      per section (under its title and note) instead of from the fields above.
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


def write_report(path: str | Path, data: ReportData) -> Path:
    """Write the HTML report to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(data), encoding="utf-8")
    return path


def render_html(data: ReportData) -> str:
    figs = _Figures()
    body: list[str] = [f"<h1>{_e(data.title)}</h1>"]
    if data.meta:
        body.append(_html_table([{"key": k, "value": v} for k, v in data.meta.items()]))
    body += [f"<p>{_e(n)}</p>" for n in data.notes]

    views = data.cost_views or [CostSection("", "", data.results, data.picks, data.pick_errors, data.layer_breakdowns)]
    for i, view in enumerate(views):
        body += _cost_section(view, figs, data.noise, train_flops=i == 0)
    body.append("<h2>Gradient noise per recipe</h2>")
    body.append(figs.add(_curves_figure("Gradient noise per recipe", data.grad_noise, log_y=True))
                if data.grad_noise else _empty("no gradient-noise diagnostics"))
    body.append("<h2>Training curves</h2>")
    body.append(figs.add(_curves_figure("Training curves", data.training_curves, log_y=False))
                if data.training_curves else _empty("no training curves"))

    body.append("<h2>Hardware design-space exploration</h2>")
    for res in data.dse:
        body.append(figs.add(_dse_figure(res)))
        body.append(_html_table(res.rows()))
    for gain in data.pattern_gains:
        body.append(f"<pre>{_e(gain.statement())}</pre>")
    if not data.dse and not data.pattern_gains:
        body.append(_empty("no design-space exploration in this report"))
    return _PAGE.format(title=_e(data.title), body="\n".join(body))


def _cost_section(view: CostSection, figs: "_Figures", noise: str, *, train_flops: bool = True) -> list[str]:
    """Picks, Pareto fronts and per-layer breakdowns of one cost view (accuracy vs training
    FLOPs too when ``train_flops``: it does not depend on the view, so it is drawn once)."""
    table = view.results if isinstance(view.results, ResultTable) else ResultTable(view.results)
    suffix = f" ({_e(view.title)})" if view.title else ""
    body: list[str] = []
    if view.title:
        body.append(f"<h2 class='view'>{_e(view.title)}</h2>")
    if view.note:
        body.append(f"<p class='note'>{_e(view.note)}</p>")
    body.append(f"<h2>Picks{suffix}</h2>")
    if view.picks:
        body.append(_html_table([p.to_row() for p in view.picks]))
        body += [f"<p class='why'>{_e(p.explanation)}</p>" for p in view.picks]
    body += [f"<p class='err'>{_e(m)}</p>" for m in view.pick_errors]
    if not view.picks and not view.pick_errors:
        body.append(_empty("no picks were requested"))

    body.append(f"<h2>{_e(table.metric.label.capitalize())} vs cost: Pareto fronts per hardware target{suffix}</h2>")
    if len(table):
        noise_text = {"sem": "one standard error of the mean", "std": "one per-seed standard deviation"}.get(noise)
        body.append("<p>Error bars: ± one standard deviation over seeds. Black rings joined by a staircase: the "
                    "Pareto front (no other candidate is at least as accurate and at most as costly, one of them "
                    "strictly)." + (f" Gray rings: off the front, but not beaten by more than {noise_text} "
                                    "(combined), so possibly optimal." if noise_text else "") +
                    " Inference FLOPs are those the target executes (a pattern it cannot skip costs dense FLOPs).</p>")
        fr = fronts(table, ("latency_s", "energy_j", "inference_flops"))
        noisy = None if noise == "none" else fronts(table, ("latency_s", "energy_j", "inference_flops"), noise=noise)
        for hw in table.hardware_names():
            body.append(figs.add(_pareto_figure(table, hw, fr, noisy, tag=view.title)))
        if train_flops:
            body.append(figs.add(_train_flops_figure(table)))
        spread = [c for c in table if c.cost_spread > 1e-6]
        if spread:
            body.append("<p class='err'>Simulated cost differs between the seeds of: " + "; ".join(
                f"{_e(c.label)} on {_e(c.hardware)} ({c.cost_spread * 100:.2g}%)" for c in spread) +
                ". Their captured per-layer patterns differ; the plots show the mean cost.</p>")
        excluded = {row: why for f in fr.values() for row, why in f.excluded}
        if excluded:
            body.append("<p class='err'>Left off the fronts: " + "; ".join(_e(w) for w in excluded.values()) + "</p>")
    else:
        body.append(_empty("no results"))

    body.append(f"<h2>Per-layer latency and energy{suffix}</h2>")
    body += [figs.add(_layer_figure(b)) for b in view.layer_breakdowns] or [_empty("no per-layer data")]
    return body


class _Figures:
    """Renders figures in order; the first embeds plotly.js inline (no CDN), the rest reuse it."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, fig: Any) -> str:
        snippet = fig.to_html(full_html=False, include_plotlyjs=self.count == 0, div_id=f"fig{self.count}",
                              config={"displaylogo": False, "responsive": True})
        self.count += 1
        return f"<div class='fig'>{snippet}</div>"


def _style(values: Sequence[str], pool: Sequence[str]) -> dict[str, str]:
    return {v: pool[i % len(pool)] for i, v in enumerate(dict.fromkeys(values))}


def _pareto_figure(table: ResultTable, hw: str, fr: dict, noisy: dict | None, tag: str = ""):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = ("latency_s", "energy_j", "inference_flops")
    q = table.metric  # the task's quality metric: accuracy (%), or bpc / loss / perplexity (lower is better)
    fig = make_subplots(rows=1, cols=3, subplot_titles=[f"{q.label} vs {METRIC_LABELS[m]}" for m in metrics])
    colors = _style([c.recipe for c in table], _PALETTE)
    symbols = _style([c.pattern_text for c in table], _SYMBOLS)
    rows = [i for i, c in enumerate(table) if c.hardware == hw and not math.isnan(c.accuracy_mean)]
    for col, metric in enumerate(metrics, start=1):
        for recipe in dict.fromkeys(table[i].recipe for i in rows):
            sel = [i for i in rows if table[i].recipe == recipe]
            cs = [table[i] for i in sel]
            fig.add_trace(go.Scatter(
                x=[getattr(c, metric) for c in cs], y=[c.accuracy_mean * q.scale for c in cs], mode="markers",
                name=recipe, legendgroup=recipe, showlegend=col == 1,
                error_y=dict(type="data", array=[c.accuracy_std * q.scale for c in cs], thickness=1),
                marker=dict(color=colors[recipe], size=10, symbol=[symbols[c.pattern_text] for c in cs]),
                text=[_hover(c, q) for c in cs], hovertemplate="%{text}<extra></extra>"), row=1, col=col)
        front = fr[(hw, metric)].candidates(table)
        fig.add_trace(go.Scatter(
            x=[getattr(c, metric) for c in front], y=[c.accuracy_mean * q.scale for c in front], mode="lines+markers",
            line=dict(color="black", width=1.5, shape="hv"), marker=dict(symbol="circle-open", size=17, color="black"),
            name="Pareto front", legendgroup="front", showlegend=col == 1, hoverinfo="skip"), row=1, col=col)
        if noisy is not None:
            extra = [table[i] for i in noisy[(hw, metric)].indices if i not in fr[(hw, metric)].indices]
            fig.add_trace(go.Scatter(
                x=[getattr(c, metric) for c in extra], y=[c.accuracy_mean * q.scale for c in extra], mode="markers",
                marker=dict(symbol="circle-open", size=23, color="gray"),
                name="within seed noise of the front", legendgroup="noisy", showlegend=col == 1,
                hoverinfo="skip"), row=1, col=col)
        fig.update_xaxes(title_text=METRIC_LABELS[metric], type=_axis_type([getattr(table[i], metric) for i in rows]),
                         row=1, col=col)
    for pat, sym in symbols.items():  # legend entries for the marker shapes (one per pattern)
        if any(table[i].pattern_text == pat for i in rows):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"pattern {pat}", legendgroup="pat",
                                     marker=dict(symbol=sym, color="gray", size=9)), row=1, col=1)
    fig.update_yaxes(title_text=q.axis_label, row=1, col=1)
    fig.update_layout(title=f"Pareto front on {hw}: {q.label} (validation, mean ± std over seeds) vs cost" + (f"<br><sub>{html.escape(tag)}</sub>" if tag else ""),
                      height=FIG_HEIGHT_PX, legend=dict(orientation="h", y=-0.22))
    return fig


def _axis_type(values: Sequence[float]) -> str:
    """Log axis only when the values span more than a decade (a narrow range reads badly in log)."""
    v = np.asarray([x for x in values if x > 0 and math.isfinite(x)], float)
    return "log" if v.size and v.max() / v.min() > 10 else "linear"


def _hover(c: Candidate, q: Metric = ACCURACY) -> str:
    return (f"<b>{_e(c.label)}</b><br>{q.label} {q.fmt(c.accuracy_mean, c.accuracy_std)} "
            f"(n={c.n_seeds})<br>latency {c.latency_s * 1e3:.4g} ms<br>energy {c.energy_j * 1e3:.4g} mJ<br>"
            f"FLOPs {c.inference_flops:.3g}<br>weights {c.weight_bytes / 1e3:.4g} kB")


def _train_flops_figure(table: ResultTable):
    import plotly.graph_objects as go

    # training FLOPs do not depend on the inference target: one point per (model, recipe, pattern)
    seen: dict[tuple, Candidate] = {}
    for c in table:
        if not math.isnan(c.accuracy_mean):
            seen.setdefault((c.model, c.recipe, c.pattern_text), c)
    cs = list(seen.values())
    q = table.metric
    on = pareto_front([c.accuracy_mean for c in cs], [c.train_flops for c in cs], nan="exclude",
                      higher_is_better=q.higher_is_better) if cs else []
    colors = _style([c.recipe for c in cs], _PALETTE)
    fig = go.Figure()
    for recipe in colors:
        sel = [c for c in cs if c.recipe == recipe]
        fig.add_trace(go.Scatter(
            x=[c.train_flops for c in sel], y=[c.accuracy_mean * q.scale for c in sel], mode="markers+text",
            text=[c.pattern_text for c in sel], textposition="top center", name=recipe,
            error_y=dict(type="data", array=[c.accuracy_std * q.scale for c in sel], thickness=1),
            marker=dict(color=colors[recipe], size=10)))
    front = sorted((c for c, keep in zip(cs, on) if keep), key=lambda c: (c.train_flops, -q.oriented(c.accuracy_mean)))
    fig.add_trace(go.Scatter(x=[c.train_flops for c in front], y=[c.accuracy_mean * q.scale for c in front],
                             mode="lines+markers", line=dict(color="black", width=1.5, shape="hv"),
                             marker=dict(symbol="circle-open", size=17, color="black"), name="Pareto front"))
    fig.update_layout(title=f"{q.label.capitalize()} vs training FLOPs (whole schedule, per recipe)", height=FIG_HEIGHT_PX,
                      xaxis=dict(title="training FLOPs", type=_axis_type([c.train_flops for c in cs])),
                      yaxis=dict(title=q.axis_label))
    return fig


def _layer_figure(b: LayerBreakdown):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["latency per layer (ms)", "energy per layer (mJ)"])
    bound = list(b.bound) if b.bound is not None else ["layer"] * len(b.layers)
    colors = {"compute": _PALETTE[0], "memory": _PALETTE[1], "overhead": _PALETTE[8]}
    for kind in dict.fromkeys(bound):
        idx = [i for i, k in enumerate(bound) if k == kind]
        name = f"{kind}-bound" if b.bound is not None else "layer"
        for col, (vals, scale) in enumerate(((b.latency_s, 1e3), (b.energy_j, 1e3)), start=1):
            fig.add_trace(go.Bar(x=[b.layers[i] for i in idx], y=[vals[i] * scale for i in idx], name=name,
                                 legendgroup=kind, showlegend=col == 1, marker_color=colors.get(kind, _PALETTE[2])),
                          row=1, col=col)
    for col in (1, 2):  # keep the model's layer order on both panels
        fig.update_xaxes(categoryorder="array", categoryarray=list(b.layers), tickangle=-45, row=1, col=col)
    fig.update_layout(title=f"Per-layer latency and energy: {b.label} on {b.hardware}", height=FIG_HEIGHT_PX + 80,
                      barmode="stack")
    return fig


def _curves_figure(title: str, curves: Sequence[Curve], *, log_y: bool):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups = list(dict.fromkeys(c.group for c in curves))
    cols = min(3, len(groups))
    nrows = math.ceil(len(groups) / cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=groups)
    colors = _style([c.label for c in curves], _PALETTE)
    for gi, g in enumerate(groups):
        r, col = gi // cols + 1, gi % cols + 1
        for c in (c for c in curves if c.group == g):
            x, y = np.asarray(c.x, float), np.asarray(c.y, float)
            if c.y_std is not None:
                s = np.asarray(c.y_std, float)
                fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([y + s, (y - s)[::-1]]),
                                         fill="toself", line=dict(width=0), opacity=0.2, showlegend=False,
                                         fillcolor=colors[c.label], hoverinfo="skip", legendgroup=c.label), row=r, col=col)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=c.label, legendgroup=c.label,
                                     showlegend=gi == 0 or c.label not in {d.label for d in curves if d.group in groups[:gi]},
                                     line=dict(color=colors[c.label])), row=r, col=col)
        fig.update_xaxes(title_text="step", row=r, col=col)
        if log_y:
            fig.update_yaxes(type="log", row=r, col=col)
    fig.update_layout(title=title, height=max(FIG_HEIGHT_PX, 330 * nrows))
    return fig


def _dse_figure(res: Any):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["latency (ms)", "energy (mJ)"])
    colors = _style(list(res.workloads), _PALETTE)
    names = [v.name for v in res.variants]
    for w, wl in enumerate(res.workloads):
        for col, arr in enumerate((res.latency_s, res.energy_j), start=1):
            fig.add_trace(go.Bar(x=names, y=arr[:, w] * 1e3, name=wl, legendgroup=wl, showlegend=col == 1,
                                 marker_color=colors[wl]), row=1, col=col)
    fig.update_xaxes(tickangle=-30)
    fig.update_layout(title=f"Hardware design space around {res.base}: latency and energy per variant",
                      barmode="group", height=FIG_HEIGHT_PX + 60)
    return fig


def _e(value: Any) -> str:
    return html.escape(str(value))


def _empty(text: str) -> str:
    return f"<p class='empty'>({_e(text)})</p>"


def _html_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return _empty("empty table")
    cols = list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.4g}"
        return _e(v)

    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; }}
table {{ border-collapse: collapse; margin: .6em 0; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
th {{ background: #f2f2f2; }}
.fig {{ margin: 1em 0 2em; }}
h2.view {{ border-top: 3px solid #444; padding-top: .4em; }} .note {{ max-width: 70em; background: #fff7e0; padding: .4em; }}\n.why {{ max-width: 70em; }} .err {{ color: #a40000; }} .empty {{ color: #888; }}
pre {{ background: #f7f7f7; padding: .6em; white-space: pre-wrap; }}
</style></head>
<body>
{body}
</body></html>
"""
