"""Machine-readable forms of the co-design answers (``--format json|csv`` of ``pick``, ``dse``,
``mixed`` and ``results``): plain dicts in SI units (seconds, joules, bytes, FLOPs), one place
for every command so the same field always has the same name.

``emit(records, fmt, table=...)`` turns a list of flat dicts into JSON (a list, or the
``document`` given), CSV (one header, every key of every record), or the human ``table`` text.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ...core import ConfigError
from .pareto import Candidate
from .pick import Pick

FORMATS = ("table", "json", "csv")


def emit(records: Sequence[Mapping[str, Any]], fmt: str, *, table: str = "", document: Any = None) -> str:
    """``fmt`` ``"json"``: ``document`` (default: the records) as JSON; ``"csv"``: the records
    as CSV (columns in first-seen order); ``"table"``: ``table``."""
    from ...sim.report_table import rows_to_csv, to_json

    if fmt == "json":
        return to_json(_finite(records if document is None else document))
    if fmt == "csv":
        columns = list(dict.fromkeys(k for r in records for k in r))
        return rows_to_csv([dict(r) for r in records], columns).rstrip("\n")
    if fmt == "table":
        return table
    raise ConfigError(f"unknown output format {fmt!r}; valid: {', '.join(FORMATS)}")


def _finite(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def candidate_record(c: Candidate, prefix: str = "") -> dict[str, Any]:
    """A candidate's fields (``pattern`` as text, ``run_ids`` joined by spaces for CSV)."""
    d = c.to_dict()
    d["label"] = c.label
    d["run_ids"] = " ".join(c.run_ids)
    return {f"{prefix}{k}": v for k, v in d.items()}


def distinguishable(a: Candidate, b: Candidate) -> bool:
    """Whether two candidates' mean accuracies differ by more than their combined per-seed
    standard deviation (``hypot(std_a, std_b)``), the rule the pick's explanation uses. Only
    meaningful with at least 2 seeds each (``pick_record`` writes null below that)."""
    return abs(a.accuracy_mean - b.accuracy_mean) > math.hypot(a.accuracy_std, b.accuracy_std)


def pick_record(p: Pick, cost_model: str = "", runtime: str = "") -> dict[str, Any]:
    """One flat row per pick: target, objective, cost view and runtime, constraints, the pick's
    and the runner-up's fields (``runner_up_*``), whether their accuracies are distinguishable,
    the explanation."""
    r = p.runner_up
    row: dict[str, Any] = {"hardware": p.hardware, "objective": p.objective, "cost_model": cost_model,
                           "runtime": runtime,
                           **{f"constraint_{k}": v for k, v in p.constraints.items()},
                           "n_feasible": p.n_feasible, "n_candidates": p.n_candidates}
    m = p.metric
    row.update(metric=m.name, direction="higher_is_better" if m.higher_is_better else "lower_is_better")
    row.update(candidate_record(p.best))
    if r is not None:
        row.update(candidate_record(r, "runner_up_"))
    # quality_* hold the task metric whatever it is (accuracy, bpc, loss ...); accuracy_* are their
    # former names, kept one release as aliases (docs/api.md)
    for prefix, c in (("", p.best), ("runner_up_", r)):
        if c is not None:
            row[f"{prefix}quality_mean"] = c.accuracy_mean
            row[f"{prefix}quality_std"] = c.accuracy_std
            if m.name != "accuracy":  # the aliases only where they hold an accuracy
                del row[f"{prefix}accuracy_mean"], row[f"{prefix}accuracy_std"]
    # one seed has no spread to judge a difference by: "cannot tell" (null), never a yes
    row["distinguishable_from_runner_up"] = (None if r is None or min(p.best.n_seeds, r.n_seeds) < 2
                                             else distinguishable(p.best, r))
    row["explanation"] = p.explanation
    return row


def dse_records(res: Any) -> list[dict[str, Any]]:
    """``dse.DseResult.rows()``: one row per (variant, workload), SI units."""
    return res.rows()


def mixed_records(res: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A ``mixed_verify.MixedResult`` as (one row per layer, the whole result as a document).
    Costs in SI units of ``res.metric`` (seconds or joules)."""
    pats = res.sensitivity.patterns
    pen = res.sensitivity.penalty
    layers = [{"layer": name, "pattern": str(pats[c]), "extra_errors": int(pen[i, c]),
               res.metric: float(res.cost[i, c])}
              for i, (name, c) in enumerate(zip(res.sensitivity.layers, res.mixed.choice))]
    doc: dict[str, Any] = {
        "hardware": res.hw, "metric": res.metric, "runtime": res.runtime, "run_id": res.run_id, "base_pattern": str(res.base_pattern),
        "budget": res.budget, "budget_errors": res.budget_errors, "calibration_examples": res.sensitivity.n_calib,
        "layers": layers,
        "mixed": {"predicted_extra_errors": res.mixed.penalty, f"total_{res.metric}": res.mixed.cost + res.const},
        "uniform": None if res.uniform is None else {
            "pattern": str(pats[res.uniform.choice[0]]), "predicted_extra_errors": res.uniform.penalty,
            f"total_{res.metric}": res.uniform.cost + res.const},
        "accuracy": dict(res.accuracy),
        "trained_uniform": {p: {"accuracy_mean": a, res.metric: c, "n_seeds": k} for p, (a, c, k) in res.trained.items()},
        "trained_mixed": None if res.trained_mixed is None else {
            "run_ids": list(res.trained_mixed.run_ids), "seeds": list(res.trained_mixed.seeds),
            "accuracies": list(res.trained_mixed.accuracies), res.metric: list(res.trained_mixed.costs)},
    }
    return layers, doc
