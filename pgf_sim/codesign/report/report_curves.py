"""The report's curves from the result store: validation accuracy and loss vs step and vs
cumulative training FLOPs, train loss, MDGF's beta(t), the SDGF pattern frames and gradient
noise, each the mean over a candidate's seeds (± std), labelled and styled like the candidates
(``run_label``: ``[model] recipe pattern``; colour by recipe, dash by pattern).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from ..run import results

GRAD_NOISE_KEYS = ("grad_var", "grad_diff")  # positive quantities: the report draws them on log axes


def run_label(point: Any) -> str:
    """``[model] recipe pattern`` as ``Candidate.label`` writes it (the dense baseline: ``dense``)."""
    keys = style_keys(point)
    head = f"{point.model} " if point.model else ""
    if keys["recipe"] == keys["pattern"] == "dense":
        return f"{head}dense"
    return f"{head}{keys['recipe']} {keys['pattern']}"


def style_keys(point: Any) -> dict[str, str]:
    """The recipe label and pattern text the report colours and marks curves by (as its candidates)."""
    pattern = point.pattern  # a store PointRow: the pattern is an NM already
    recipe = results.recipe_label(point.recipe, point.params)
    return {"recipe": recipe, "pattern": "dense" if pattern.is_dense else str(pattern)}


def mean_curves(series: dict[str, list[dict[float, float]]], group: str, keys: dict[str, dict[str, str]] | None = None,
                 **fields: Any) -> list:
    """label -> per-seed {x: value} -> Curves of the mean (± std where > 1 seed); ``keys``:
    label -> recipe/pattern; ``fields``: the other ``Curve`` fields (axis titles ...)."""
    from .report import Curve

    out = []
    for label, per_seed in series.items():
        steps = sorted(set().union(*per_seed))
        vals = np.array([[s.get(t, np.nan) for t in steps] for s in per_seed])
        mean = np.nanmean(vals, axis=0)
        std = np.nanstd(vals, axis=0, ddof=1) if len(per_seed) > 1 else None
        out.append(Curve(label, steps, mean.tolist(), group, None if std is None else np.nan_to_num(std).tolist(),
                         **(keys or {}).get(label, {}), **fields))
    return out


def training_curves(store: Any, points: Sequence[Any], metric: Any = None) -> list:
    """The validation task metric (``metric``, a ``core.metric.Metric``; default accuracy) and
    validation loss vs step and vs cumulative training FLOPs (logged with each evaluation), train
    loss, MDGF's beta(t) and the SDGF pattern frames (from each run's schedule)."""
    from ...core.metric import ACCURACY

    metric = metric or ACCURACY
    keys = {run_label(pt): style_keys(pt) for pt in points}
    per_run = {pt.run_id: {} for pt in points}
    for pt in points:
        for step, key, value in store.run_metrics(pt.run_id):
            per_run[pt.run_id].setdefault(key, {})[step] = value
    curves = []
    key_metric = f"val_{metric.name}"
    evals = any(len(m.get(key_metric, {})) > 1 for m in per_run.values())
    panels = [(key_metric, f"validation {metric.label}", metric.scale, f"{metric.label} ({metric.unit})")]
    if metric.name != "loss":
        panels.append(("val_loss", "validation loss", 1.0, "cross-entropy (nats)"))
    panels = panels if evals else []
    for key, name, scale, ytitle in panels:
        for xkind in ("step", "train_flops"):
            series: dict[str, list[dict[float, float]]] = defaultdict(list)
            for pt in points:
                m = per_run[pt.run_id]
                xs = m.get("train_flops", {}) if xkind == "train_flops" else None
                vals = {(xs[s] if xs is not None else s): v * scale for s, v in m.get(key, {}).items()
                        if xs is None or s in xs}
                if len(vals) > 1:
                    series[run_label(pt)].append(vals)
            if series:
                extra = (dict(x_title="cumulative training FLOPs", x_unit="FLOP") if xkind == "train_flops" else {})
                curves += mean_curves(series, f"{name} vs {'training FLOPs' if extra else 'step'}", keys,
                                       y_title=ytitle, **extra)
    series = defaultdict(list)
    for pt in points:
        if per_run[pt.run_id].get("train_loss"):
            series[run_label(pt)].append(per_run[pt.run_id]["train_loss"])
    curves += mean_curves(series, "train loss vs step (per batch)", keys, y_title="cross-entropy (nats)")
    series = defaultdict(list)
    for pt in points:
        if per_run[pt.run_id].get("beta"):
            series[run_label(pt)].append(per_run[pt.run_id]["beta"])
    curves += mean_curves(series, "MDGF β(t): weight of the pruned weights", keys, y_title="β")
    curves += frame_curves(store, points, keys)
    return curves


def frame_curves(store: Any, points: Sequence[Any], keys: dict[str, dict[str, str]]) -> list:
    """The kept fraction N/M of each moving-pattern (SDGF) run's schedule over the steps, one
    staircase per recipe and target, labelled with each frame's pattern."""
    from ...core import from_dict
    from ...sparsity.schedules import RecipeConfig, segments
    from .report import Curve

    out, seen = [], set()
    for pt in points:
        label = run_label(pt)
        run = store.get_run(pt.run_id)
        if label in seen or run is None or "recipe" not in run.config:
            continue  # a run recorded without its config has no schedule to draw
        cfg = from_dict(RecipeConfig, run.config["recipe"], source=f"run {pt.run_id}", field_path="recipe")
        total = run.final_step or max((s for s, _, _ in store.run_metrics(pt.run_id, "train_loss")), default=0)
        if not cfg.spec.moving_pattern or not total:
            continue
        seen.add(label)
        segs = segments(cfg, total)
        xs = [seg.start for seg in segs] + [segs[-1].stop]
        ys = [seg.pattern.density for seg in segs] + [segs[-1].pattern.density]
        text = [f"{seg.pattern} ({seg.phase}) from step {seg.start}" for seg in segs] + [f"{segs[-1].pattern} (end)"]
        out.append(Curve(label, xs, ys, "SDGF pattern frames: kept fraction N/M", steps=True, text=text,
                         y_title="N/M kept", **keys.get(label, {})))
    return out


def grad_noise_curves(store: Any, points: Sequence[dict[str, Any]]) -> list:
    keys = {run_label(pt): style_keys(pt) for pt in points}
    curves = []
    for key in GRAD_NOISE_KEYS:
        series: dict[str, list[dict[int, float]]] = defaultdict(list)
        for pt in points:
            per_step: dict[int, list[float]] = defaultdict(list)
            for step, _, _, v in store.run_diagnostics(pt.run_id, key=key):
                if math.isfinite(v) and v > 0:
                    per_step[step].append(v)
            if per_step:  # mean over the run's sparse layers (fc1/fc2 by default)
                series[run_label(pt)].append({s: float(np.mean(v)) for s, v in per_step.items()})
        curves += mean_curves(series, f"{key} (mean over layers)", keys, y_title=key)
    return curves
