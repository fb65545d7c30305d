"""The co-design report's figures (plotly imported inside each function; the Pareto figure is in
``report_pareto``) and the human units they and the report's tables share.

Conventions held across the whole page (``Style``): one colour per recipe, one marker per N:M
pattern (and one dash per pattern on line plots), the pick a gold star, the Pareto front a
black staircase, a candidate whose memory footprint exceeds its target's memory a red cross. Axes are in SI-prefixed units (ms, mJ, GFLOP, ...) chosen from the data; a
cost axis whose values span less than ``TINY_SPAN`` (relative) is drawn as the change relative
to the target's dense baseline, on a range of at least ``MIN_REL_RANGE_PCT`` percentage
points, so that simulator-level differences of a fraction of a percent do not fill the plot.
Points whose costs coincide are spread sideways by a small, stated offset (hover shows the
exact values).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..decide.pareto import Candidate, ResultTable
from .report_png import FIG_HEIGHT_PX

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "hexagon", "triangle-down", "pentagon", "star-square")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
TINY_SPAN = 0.05        # relative span of a cost axis below which it is drawn relative to dense
MIN_REL_RANGE_PCT = 10  # such an axis covers at least this many percentage points
JITTER_FRACTION = 0.012  # sideways spread of coinciding points, as a fraction of the axis range

GOALS = {"latency_s": "fastest", "energy_j": "least energy", "footprint_bytes": "least memory",
         "accuracy": "best quality"}
#: (candidate field, panel label, unit) of each Pareto panel, in drawing order
COSTS = (("latency_s", "latency", "s"), ("energy_j", "energy", "J"), ("footprint_bytes", "memory footprint", "B"),
         ("inference_flops", "inference FLOPs", "FLOP"), ("train_flops", "training FLOPs", "FLOP"))

_UP = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))
_DOWN = ((1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"))


def unit_scale(values: Sequence[float], unit: str) -> tuple[float, str]:
    """(divisor, label) so the largest finite |value| reads between 1 and 1000: ms, mJ, GFLOP."""
    v = [abs(x) for x in values if x is not None and math.isfinite(x) and x != 0]
    if not v:
        return 1.0, unit
    top = max(v)
    for scale, prefix in (_UP if top >= 1 else _DOWN):
        if top >= scale:
            return scale, prefix + unit
    return _DOWN[-1][0], _DOWN[-1][1] + unit


def human(value: float | None, unit: str, digits: int = 3) -> str:
    """``0.0008989, "s"`` -> ``"0.899 ms"``; ``1.411e5, "B"`` -> ``"141 kB"``; None/NaN -> ``"-"``."""
    if value is None or not math.isfinite(value):
        return "-"
    scale, label = unit_scale([value], unit)
    return f"{value / scale:.{digits}g} {label}"


@dataclass(frozen=True)
class MetricInfo:
    """The quality metric the candidates carry (``Candidate.accuracy_mean`` / ``_std``): its name,
    display unit and scale (0.97 -> 97 %), whether higher is better, and where it was measured."""

    name: str = "validation accuracy"
    unit: str = "%"
    scale: float = 100.0
    higher_is_better: bool = True
    split: str = "validation split"

    @property
    def digits(self) -> int:
        """Decimals shown: 2 for percent, 4 otherwise (as the console: a bpc std is thousandths)."""
        return 2 if self.unit.strip() == "%" else 4

    def fmt(self, c: Candidate) -> str:
        """``"96.50% ± 0.20 (n=2)"`` or ``"2.7251 ± 0.0010 bits/char (n=2)"``."""
        return self.fmt_value(c.accuracy_mean, c.accuracy_std, c.n_seeds)

    def fmt_value(self, mean: float, std: float | None = None, n: int | None = None) -> str:
        """A value of the metric (e.g. the test split's) in the same form as ``fmt``; NaN: ``"-"``."""
        if mean is None or not math.isfinite(mean):
            return "-"
        d, pct = self.digits, self.unit.strip() == "%"
        text = f"{mean * self.scale:.{d}f}" + (self.unit if pct else "")
        if std is not None and math.isfinite(std) and n != 1:  # one seed has no spread: no "± 0.00"
            text += f" ± {std * self.scale:.{d}f}"
        return text + ("" if pct else self.unit) + (" (1 seed)" if n == 1 else f" (n={n})" if n else "")

    def fmt_delta(self, delta: float) -> str:
        """``"0.50 points"`` (percent) or ``"0.040 bits/char"``."""
        unit = " points" if self.unit.strip() == "%" else self.unit
        return f"{abs(delta) * self.scale:.{self.digits}f}{unit}"

    @property
    def better(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def oriented(self, value: float) -> float:
        """``value`` turned so that larger is better."""
        return value if self.higher_is_better else -value

    @property
    def axis_title(self) -> str:
        """``"validation bpc (bits/char, lower is better)"``: name, unit and direction on every axis."""
        return f"{self.name} ({self.unit.strip() or 'value'}, {self.better})"


@dataclass
class Style:
    """Colour per recipe, marker and dash per pattern: fixed for the whole page."""

    recipes: dict[str, str] = field(default_factory=dict)
    patterns: dict[str, str] = field(default_factory=dict)
    dashes: dict[str, str] = field(default_factory=dict)

    def color(self, recipe: str) -> str:
        return self.recipes.setdefault(recipe, PALETTE[len(self.recipes) % len(PALETTE)])

    def symbol(self, pattern: str) -> str:
        return self.patterns.setdefault(pattern, SYMBOLS[len(self.patterns) % len(SYMBOLS)])

    def dash(self, pattern: str) -> str:
        return self.dashes.setdefault(pattern, DASHES[len(self.dashes) % len(DASHES)])

    def register(self, candidates: Sequence[Candidate]) -> None:
        """Assign in a stable order (dense first, then densest patterns first)."""
        for c in sorted(candidates, key=lambda c: (c.recipe != "dense", c.recipe)):
            self.color(c.recipe)
        for c in sorted(candidates, key=lambda c: -pattern_density(c)):
            self.symbol(c.pattern_text)
            self.dash(c.pattern_text)


def pattern_density(c: Candidate) -> float:
    """The fraction of weights a candidate's pattern keeps (1.0 dense; 0.0 for a mixed assignment)."""
    return getattr(c.pattern, "density", 0.0)


def dense_reference(table: ResultTable, hw: str) -> Candidate | None:
    """The dense baseline on ``hw`` (the best dense candidate in the table metric's direction:
    the lowest bpc, the highest accuracy), None without one."""
    dense = [c for c in table.where(hardware=hw) if c.pattern_text == "dense" and not math.isnan(c.accuracy_mean)]
    return max(dense, key=lambda c: table.metric.oriented(c.accuracy_mean)) if dense else None


def relative_span(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if math.isfinite(x) and x > 0], float)
    return float(v.max() / v.min() - 1.0) if v.size else 0.0


@dataclass(frozen=True)
class Axis:
    """How one cost is drawn: ``transform(values) -> plotted``, title, type (linear/log) and range."""

    title: str
    kind: str            # "absolute" | "relative"
    scale: float = 1.0   # divisor (absolute) or the dense value (relative)
    log: bool = False
    range: tuple[float, float] | None = None

    def transform(self, values: Sequence[float]) -> list[float]:
        if self.kind == "relative":
            return [(v / self.scale - 1.0) * 100.0 for v in values]
        return [v / self.scale for v in values]


def cost_axis(values: Sequence[float], label: str, unit: str, dense: float | None) -> Axis:
    """Absolute SI-scaled axis, log when spanning > 10x; relative to dense (percent) when the
    span is below ``TINY_SPAN``, with a range of at least ``MIN_REL_RANGE_PCT`` points."""
    finite = [v for v in values if math.isfinite(v) and v > 0]
    span = relative_span(finite)
    if finite and span < TINY_SPAN:
        ref = dense if dense and dense > 0 else float(np.median(finite))
        rel = [(v / ref - 1) * 100 for v in finite]
        mid, half = (max(rel) + min(rel)) / 2, max(MIN_REL_RANGE_PCT / 2, (max(rel) - min(rel)) * 0.6)
        what = "dense" if dense else "the median"
        return Axis(f"{label}: change vs {what} ({human(ref, unit)}), %", "relative", ref, False, (mid - half, mid + half))
    scale, ulabel = unit_scale(finite, unit)
    return Axis(f"{label} ({ulabel})", "absolute", scale, span > 9.0)


def jitter(xs: Sequence[float], ys: Sequence[float], width: float, log: bool) -> list[float]:
    """Spread points that share (nearly) the same x sideways, symmetric about x, in the order
    given (not by ``ys``: that would draw a trend that is not there), by ``JITTER_FRACTION`` of
    the axis width per neighbour (multiplicative on a log axis), so markers and error bars of
    equal-cost candidates do not cover each other. ``ys`` only decides which points need it:
    points at one x but far apart in y are left in place."""
    out = list(xs)
    yspan = (max(ys) - min(ys)) if ys else 0.0
    groups: dict[float, list[int]] = {}
    for i in range(len(xs)):
        x = xs[i]
        if x is None or not math.isfinite(x):
            continue
        key = round(math.log10(x), 3) if log and x > 0 else round(x / (width or 1.0), 2)
        groups.setdefault(key, []).append(i)
    for idx in groups.values():
        near = [i for i in idx if any(j != i and abs(ys[j] - ys[i]) <= 0.08 * yspan for j in idx)]
        idx = near if len(near) > 1 else []
        for k, i in enumerate(idx):
            off = (k - (len(idx) - 1) / 2) * JITTER_FRACTION
            out[i] = xs[i] * 10 ** (off * 2) if log and xs[i] > 0 else xs[i] + off * width
    return out


def curves_figure(title: str, curves: Sequence[Any], style: Style, *, log_y: bool = False, cols: int = 2):
    """Panels by ``Curve.group`` (in order); colour by recipe, dash and marker by pattern; each
    panel's x title from its curves (``x_title``, SI-scaled when ``x_unit`` is set) and y title
    from ``y_title`` (default: the group). Bands (± std over seeds) only on linear axes: on a
    log axis mean - std can be <= 0 and would draw a solid block."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups = list(dict.fromkeys(c.group for c in curves))
    cols = min(cols, len(groups))
    nrows = math.ceil(len(groups) / cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=groups, vertical_spacing=min(0.3 / nrows + 0.05, 0.2))
    shown: set[str] = set()
    for gi, g in enumerate(groups):
        r, col = gi // cols + 1, gi % cols + 1
        members = [c for c in curves if c.group == g]
        xscale, xlabel = unit_scale([v for c in members for v in c.x], members[0].x_unit) if members[0].x_unit else (1.0, "")
        for c in members:
            x, y = np.asarray(c.x, float) / xscale, np.asarray(c.y, float)
            color = style.color(c.recipe or c.label)
            dash = style.dash(c.pattern) if c.pattern else "solid"
            if c.y_std is not None and not log_y:
                s = np.asarray(c.y_std, float)
                fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([y + s, (y - s)[::-1]]),
                                         fill="toself", line=dict(width=0), opacity=0.15, showlegend=False,
                                         fillcolor=color, hoverinfo="skip", legendgroup=c.label), row=r, col=col)
            few = len(x) <= 30
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines+markers" if few else "lines", name=c.label, legendgroup=c.label,
                showlegend=c.label not in shown, line=dict(color=color, dash=dash, shape="hv" if c.steps else "linear"),
                marker=dict(symbol=style.symbol(c.pattern) if c.pattern else "circle", size=6),
                text=c.text, hovertemplate=("%{text}<br>" if c.text else "") + f"{c.label}<br>x %{{x:.4g}}<br>y %{{y:.4g}}<extra></extra>"),
                row=r, col=col)
            shown.add(c.label)
        xt = members[0].x_title + (f" ({xlabel})" if members[0].x_unit else "")
        fig.update_xaxes(title_text=xt, row=r, col=col)
        fig.update_yaxes(title_text=members[0].y_title or g, type="log" if log_y else "linear", row=r, col=col)
    fig.update_layout(title=title, height=max(FIG_HEIGHT_PX, 360 * nrows), legend=dict(orientation="v", x=1.02, y=1))
    return fig


def layer_figure(breakdowns: Sequence[Any], title: str = "Per-layer latency and energy"):
    """One figure for all per-layer breakdowns (``report.LayerBreakdown``): a dropdown chooses the
    candidate and target; latency and energy per layer as bars coloured by what bounds the layer.
    One figure instead of one per breakdown keeps the page short."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    breakdowns = list(breakdowns)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["latency per layer", "energy per layer"])
    colors = {"compute": PALETTE[0], "memory": PALETTE[1], "overhead": PALETTE[8]}
    owner, views = [], []
    for i, b in enumerate(breakdowns):
        lat_scale, lat_unit = unit_scale(b.latency_s, "s")
        en_scale, en_unit = unit_scale(b.energy_j, "J")
        bound = list(b.bound) if b.bound is not None else ["layer"] * len(b.layers)
        for kind in dict.fromkeys(bound):
            idx = [j for j, k in enumerate(bound) if k == kind]
            name = f"{kind}-bound" if b.bound is not None else "layer"
            for col, (vals, scale) in enumerate(((b.latency_s, lat_scale), (b.energy_j, en_scale)), start=1):
                fig.add_trace(go.Bar(x=[b.layers[j] for j in idx], y=[vals[j] / scale for j in idx], name=name,
                                     legendgroup=kind, showlegend=col == 1, visible=i == 0,
                                     marker_color=colors.get(kind, PALETTE[2])), row=1, col=col)
                owner.append(i)
        views.append({"title.text": f"{title}: {b.label} on {b.hardware}",
                      "xaxis.categoryarray": list(b.layers), "xaxis2.categoryarray": list(b.layers),
                      "yaxis.title.text": f"latency ({lat_unit})", "yaxis2.title.text": f"energy ({en_unit})"})
    for col in (1, 2):  # keep the model's layer order on both panels
        fig.update_xaxes(categoryorder="array", tickangle=-45, title_text="layer", row=1, col=col)
    if views:
        fig.update_layout(**{k.replace(".", "_"): v for k, v in views[0].items()})
    if len(breakdowns) > 1:
        buttons = [dict(label=f"{b.label} on {b.hardware}", method="update",
                        args=[{"visible": [o == i for o in owner]}, views[i]]) for i, b in enumerate(breakdowns)]
        # the menu sits at the top right, clear of the left-aligned title
        fig.update_layout(updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.22,
                                            yanchor="top", showactive=True)],
                          margin=dict(t=130))
    fig.update_layout(height=FIG_HEIGHT_PX + 80, barmode="stack")
    return fig


def dse_figure(res: Any):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    lat_scale, lat_unit = unit_scale(res.latency_s.ravel(), "s")
    en_scale, en_unit = unit_scale(res.energy_j.ravel(), "J")
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"latency ({lat_unit})", f"energy ({en_unit})"])
    style = Style()
    names = [v.name for v in res.variants]
    for w, wl in enumerate(res.workloads):
        for col, (arr, scale) in enumerate(((res.latency_s, lat_scale), (res.energy_j, en_scale)), start=1):
            fig.add_trace(go.Bar(x=names, y=arr[:, w] / scale, name=wl, legendgroup=wl, showlegend=col == 1,
                                 marker_color=style.color(wl)), row=1, col=col)
    for col, unit in ((1, lat_unit), (2, en_unit)):
        fig.update_xaxes(tickangle=-30, title_text="hardware variant", row=1, col=col)
        fig.update_yaxes(title_text=unit, row=1, col=col)
    fig.update_layout(title=f"Hardware design space around {res.base}: latency and energy per variant",
                      barmode="group", height=FIG_HEIGHT_PX + 60)
    return fig
