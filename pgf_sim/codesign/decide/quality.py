"""The task's quality metric on the co-design side: which metric a sweep's runs are judged by,
the limit a user gives on it, and the test-split numbers reported beside picks (no torch)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ...core import ConfigError
from ...core.metric import ACCURACY, Metric
from .pareto import Candidate


def sweep_metric(store: Any, sweep: str) -> Metric:
    """The task metric of a sweep's runs (all runs of one sweep must share it)."""
    from ...train.experiment import metric_of

    found = {}
    for pt in store.sweep_points(sweep):
        run = store.get_run(pt.run_id)
        if run is not None:
            m = metric_of(run.config)
            found[m.name] = m
    if len(found) > 1:
        raise ConfigError(f"sweep {sweep!r} mixes runs judged by different metrics ({', '.join(sorted(found))}); "
                          "give every run of a sweep the same task metric")
    return next(iter(found.values()), ACCURACY)


def test_metric(store: Any, cand: Candidate, metric: Metric) -> tuple[float, float]:
    """Mean and std over seeds of the task metric on the TEST split (reported, never used to choose)."""
    vals = []
    for run_id in cand.run_ids:
        rows = store.run_metrics(run_id, f"test_{metric.name}")
        if rows:
            vals.append(rows[-1][-1])
    if not vals:
        return float("nan"), float("nan")
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def metric_limit(limit: float | None, min_acc: float | None, metric: Metric) -> float | None:
    """The worst acceptable metric value from ``--limit`` / ``--min-accuracy`` (accuracy only)."""
    if min_acc is not None:
        if metric.name != "accuracy":
            raise ConfigError(f"--min-accuracy applies to accuracy tasks; this sweep is judged by {metric.label} "
                              f"({metric.unit}, lower is better): use --limit VALUE (the largest acceptable {metric.name})")
        return min_acc
    if limit is not None and metric.name == "accuracy" and not 0.0 <= limit <= 1.0:
        raise ConfigError(f"--limit {limit:g} on an accuracy task: give the minimum accuracy as a fraction in [0, 1] "
                          f"(e.g. --limit 0.9, or --min-accuracy 90%%)".replace("%%", "%"))
    return limit
