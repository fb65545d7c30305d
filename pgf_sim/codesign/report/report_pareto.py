"""The co-design report's Pareto figure: per hardware target, the quality metric against each
cost (latency, energy, memory footprint, inference and training FLOPs), and the memory
footprint's text forms the report's tables share. Drawing conventions (colours, markers, SI
axes, relative axes, sideways spread of equal costs) are those of ``report_figures``; here in
addition a candidate whose memory footprint exceeds its target's memory is crossed out in red
on every panel, and the footprint panel draws that memory as a dashed red line.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..decide.pareto import Candidate, ResultTable
from .report_figures import (COSTS, GOALS, MetricInfo, Style, cost_axis, dense_reference, human, jitter,
                             pattern_density)
from .report_png import FIG_HEIGHT_PX

NOFIT_COLOR = "#d00000"  # the "does not fit in the target's memory" cross and capacity line


def has_footprint(candidates: Sequence[Candidate]) -> bool:
    """Whether any candidate has a simulated memory footprint (results simulated before
    footprints were stored have none)."""
    return any(math.isfinite(c.footprint_bytes) for c in candidates)


def drawn_costs(candidates: Sequence[Candidate]) -> tuple[tuple[str, str, str], ...]:
    """The ``COSTS`` a target's Pareto figure draws: all of them, less the memory footprint when
    no candidate has one."""
    known = has_footprint(candidates)
    return tuple(cost for cost in COSTS if cost[0] != "footprint_bytes" or known)


def capacity_of(candidates: Sequence[Candidate]) -> float:
    """The target's memory capacity (bytes) the candidates are checked against; NaN if unknown."""
    caps = [c.dram_capacity_bytes for c in candidates if math.isfinite(c.dram_capacity_bytes)]
    return min(caps) if caps else math.nan


def memory_text(c: Candidate) -> str:
    """``"41.2 MB of 80 GB"``, ``"14.6 GB of 4 GB: does not fit"``, ``"41.2 MB"`` (capacity
    unknown), or ``"-"`` (no footprint simulated)."""
    if not math.isfinite(c.footprint_bytes):
        return "-"
    text = human(c.footprint_bytes, "B")
    if math.isfinite(c.dram_capacity_bytes):
        text += f" of {human(c.dram_capacity_bytes, 'B')}"
    return text if c.fits_memory else text + ": does not fit"


def pareto_figure(table: ResultTable, hw: str, fr: dict, picks: Sequence[Any], style: Style, metric: MetricInfo,
                  tag: str = "", noisy: dict | None = None):
    """One figure per target, one panel per cost of ``drawn_costs``: the metric vs latency,
    energy, memory footprint, inference and training FLOPs (2 x 3, the sixth slot a caption
    saying what the footprint holds and the target's memory), or 2 x 2 without the footprint
    panel when no candidate has a footprint (results stored before footprints were). The front
    as a staircase (the best quality within a cost x is that of the costliest front point <= x,
    whichever way the metric points), picks as stars, every panel titled and labelled.
    ``noisy``: the noise-aware fronts (``pareto.fronts(noise=...)``); points on them but not on
    the classic front are ringed ("within seed noise of the front"). A candidate whose footprint
    exceeds the target's memory is crossed out in red on every panel (trace ``meta="nofit"``),
    and the footprint panel draws the capacity as a dashed red line (``meta="capacity"``)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = [c for c in table.where(hardware=hw) if not math.isnan(c.accuracy_mean)]
    dense = dense_reference(table, hw)
    costs = drawn_costs(list(table.where(hardware=hw)))
    cols = 3 if len(costs) > 4 else 2
    specs = [[{}] * cols, [{}] * (len(costs) - cols) + [None] * (2 * cols - len(costs))]
    fig = make_subplots(rows=2, cols=cols, specs=specs, subplot_titles=[f"{metric.name} vs {label}" for _, label, _ in costs],
                        horizontal_spacing=0.09 if cols == 2 else 0.075, vertical_spacing=0.2)
    picked = {p.best.label: p for p in picks if p.hardware == hw}
    capacity = capacity_of(rows)
    too_big = [c for c in rows if not c.fits_memory]
    legend_seen: set[str] = set()
    for k, (key, label, unit) in enumerate(costs):
        r, col = k // cols + 1, k % cols + 1
        axis = cost_axis([getattr(c, key) for c in rows], label, unit, getattr(dense, key, None))
        xs_all = axis.transform([getattr(c, key) for c in rows])
        finite = [x for x in xs_all if math.isfinite(x)]
        width = (axis.range[1] - axis.range[0]) if axis.range else (max(finite) - min(finite) if finite else 1.0) or 1.0
        ys_all = [c.accuracy_mean * metric.scale for c in rows]
        xj = dict(zip(map(id, rows), jitter(xs_all, ys_all, width, axis.log)))
        for recipe in dict.fromkeys(c.recipe for c in rows):
            cs = [c for c in rows if c.recipe == recipe]
            fig.add_trace(go.Scatter(
                x=[xj[id(c)] for c in cs], y=[c.accuracy_mean * metric.scale for c in cs], mode="markers",
                name=recipe, legendgroup=f"recipe {recipe}", showlegend=recipe not in legend_seen,
                error_y=dict(type="data", array=[c.accuracy_std * metric.scale for c in cs], thickness=1, width=3),
                marker=dict(color=style.color(recipe), size=11, symbol=[style.symbol(c.pattern_text) for c in cs],
                            line=dict(color="white", width=1)),
                text=[hover(c, metric) for c in cs], hovertemplate="%{text}<extra></extra>"), row=r, col=col)
            legend_seen.add(recipe)
        front = fr[(hw, key)].candidates(table) if (hw, key) in fr else []
        ringed = [c for c in (noisy[(hw, key)].candidates(table) if noisy and (hw, key) in noisy else [])
                  if all(c is not f for f in front)]
        if ringed:
            fig.add_trace(go.Scatter(
                x=[xj[id(c)] for c in ringed], y=[c.accuracy_mean * metric.scale for c in ringed], mode="markers",
                marker=dict(symbol="circle-open", size=20, color="#777", line=dict(width=1.5)),
                name="within seed noise of the front", legendgroup="noisy", showlegend="noisy" not in legend_seen,
                hoverinfo="skip"), row=r, col=col)
            legend_seen.add("noisy")
        if front:
            fx = [xj[id(c)] for c in front]  # through the drawn markers
            fig.add_trace(go.Scatter(
                x=fx, y=[c.accuracy_mean * metric.scale for c in front], mode="lines",
                line=dict(color="black", width=1.5, shape="hv"),  # holds each point's value up to the next point's cost
                name="Pareto front (staircase)", legendgroup="front", showlegend="front" not in legend_seen,
                hoverinfo="skip"), row=r, col=col)
            legend_seen.add("front")
        if too_big:
            fig.add_trace(go.Scatter(
                x=[xj[id(c)] for c in too_big], y=[c.accuracy_mean * metric.scale for c in too_big], mode="markers",
                marker=dict(symbol="x-thin-open", size=20, color=NOFIT_COLOR, line=dict(color=NOFIT_COLOR, width=2.5)),
                name=f"does not fit in {human(capacity, 'B')}", legendgroup="nofit", showlegend="nofit" not in legend_seen,
                text=[f"<b>{c.label}: DOES NOT FIT</b><br>memory {memory_text(c)}<br>(never picked on {hw})"
                      for c in too_big], hovertemplate="%{text}<extra></extra>", meta="nofit"), row=r, col=col)
            legend_seen.add("nofit")
            if key == "footprint_bytes" and ys_all:
                lo = min(c.accuracy_mean - c.accuracy_std for c in rows) * metric.scale
                hi = max(c.accuracy_mean + c.accuracy_std for c in rows) * metric.scale
                cap_x = axis.transform([capacity])[0]
                fig.add_trace(go.Scatter(
                    x=[cap_x, cap_x], y=[lo, hi], mode="lines", line=dict(color=NOFIT_COLOR, width=1.5, dash="dash"),
                    name=f"memory of {hw}: {human(capacity, 'B')}", legendgroup="nofit",
                    hovertemplate=f"memory of {hw}: {human(capacity, 'B')}<extra></extra>", meta="capacity"),
                    row=r, col=col)
        for c in rows:
            p = picked.get(c.label)
            if p is None:
                continue
            fig.add_trace(go.Scatter(
                x=[xj[id(c)]], y=[c.accuracy_mean * metric.scale], mode="markers",
                marker=dict(symbol="star", size=22, color="gold", line=dict(color="black", width=1.5)),
                name=f"pick: {c.label}", legendgroup=f"pick {c.label}", showlegend=f"pick {c.label}" not in legend_seen,
                text=[f"<b>PICK ({GOALS.get(p.objective, p.objective)})</b><br>" + hover(c, metric)],
                hovertemplate="%{text}<extra></extra>", meta="pick"), row=r, col=col)
            legend_seen.add(f"pick {c.label}")
        fig.update_xaxes(title_text=axis.title, type="log" if axis.log else "linear", row=r, col=col,
                         **({"range": list(axis.range)} if axis.range else {}))
        fig.update_yaxes(title_text=metric.axis_title, row=r, col=col)
    for pat in dict.fromkeys(c.pattern_text for c in sorted(rows, key=lambda c: -pattern_density(c))):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"pattern {pat}", legendgroup=f"pat {pat}",
                                 marker=dict(symbol=style.symbol(pat), color="#555", size=10)), row=1, col=1)
    if len(costs) < 2 * cols:  # the free slot: what the footprint panel shows
        fig.add_annotation(text=_memory_caption(hw, capacity, too_big), showarrow=False, align="left",
                           xref="paper", yref="paper", x=fig.layout.xaxis3.domain[0], xanchor="left",
                           y=fig.layout[f"yaxis{cols + 1}"].domain[1], yanchor="top", font=dict(size=12))
    fig.update_layout(title=f"Pareto front on {hw}: {metric.name} (mean ± std over seeds) vs cost"
                            + (f"<br><sub>{tag}</sub>" if tag else ""),
                      height=2 * FIG_HEIGHT_PX - 40, margin=dict(t=120), legend=dict(orientation="v", x=1.02, y=1))
    return fig


def _memory_caption(hw: str, capacity: float, too_big: Sequence[Candidate]) -> str:
    """The text of a Pareto figure's free slot: what the memory footprint holds, and the target's
    memory (line breaks for the panel's width)."""
    lines = ["<b>memory footprint</b> (inference):", "stored weights (N:M compressed where",
             "the target stores them so) + peak live", "activations + KV cache"]
    if math.isfinite(capacity):
        lines.append(f"memory of {hw}: <b>{human(capacity, 'B')}</b>")
    if too_big:
        lines += [f"<span style='color:{NOFIT_COLOR}'>red X: does not fit ({len(too_big)} candidate"
                  f"{'s' if len(too_big) > 1 else ''}):</span>", "left off the fronts, never picked"]
    return "<br>".join(lines)


def hover(c: Candidate, metric: MetricInfo) -> str:
    return (f"<b>{c.label}</b><br>{metric.name} {metric.fmt(c)}<br>latency {human(c.latency_s, 's')}<br>"
            f"energy {human(c.energy_j, 'J')}<br>inference {human(c.inference_flops, 'FLOP')}<br>"
            f"training {human(c.train_flops, 'FLOP')}<br>weights {human(c.weight_bytes, 'B')}"
            + (f"<br>memory {memory_text(c)}" if math.isfinite(c.footprint_bytes) else ""))
