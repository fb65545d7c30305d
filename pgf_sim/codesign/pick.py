"""Pick the N:M pattern + recipe to train for one hardware target, under constraints.

Rules (deterministic):
- Feasible: ``accuracy_mean >= min_accuracy``, ``latency_s <= max_latency_s``,
  ``energy_j <= max_energy_j`` (every constraint given; mean accuracy over seeds; NaN never
  feasible).
- ``objective``: ``"accuracy"`` (maximise mean accuracy) or a cost metric of
  ``pareto.COST_METRICS`` (minimise it). Default: ``"accuracy"`` when a cost cap is given,
  else ``"latency_s"`` (the question "I need accuracy A: what is fastest?").
- Ties on the objective are broken by accuracy (higher), then latency, energy, weight bytes
  (lower), then label, so the winner is always on the accuracy-vs-objective Pareto front.
  For a cost objective, values within ``tie_rtol`` (default 1%) of the lowest count as a tie:
  a simulated 0.1% latency difference is below the cost model's resolution, so the more
  accurate of the tied candidates wins (and the explanation says so).
- The runner-up is the next candidate in the same order. When winner and runner-up differ in
  accuracy by less than their combined std over seeds, the explanation says the accuracy
  difference is within seed noise.
- Nothing feasible: ``NoFeasibleCandidate`` (a ``PgfSimError``) naming the closest miss: the
  candidate with the smallest total relative violation of the constraints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..core.errors import PgfSimError, UnknownNameError
from .pareto import COST_METRICS, Candidate, ResultTable

OBJECTIVES = ("accuracy", *COST_METRICS)


class NoFeasibleCandidate(PgfSimError):
    """No candidate meets the constraints; ``closest`` is the nearest miss (or None)."""

    def __init__(self, message: str, closest: Candidate | None) -> None:
        super().__init__(message)
        self.closest = closest


@dataclass(frozen=True)
class Pick:
    """The choice for one hardware target and the numbers behind it."""

    hardware: str
    objective: str
    constraints: dict[str, float]
    best: Candidate
    runner_up: Candidate | None
    n_candidates: int
    n_feasible: int
    tie_rtol: float = 0.01
    explanation: str = field(default="")

    def to_row(self) -> dict:
        """Flat dict for tables (report, CLI)."""
        b, r = self.best, self.runner_up
        return {
            "hardware": self.hardware,
            "objective": self.objective,
            "constraints": _fmt_constraints(self.constraints) or "none",
            "pick": b.label,
            "accuracy": _fmt_acc(b),
            "latency_s": b.latency_s,
            "energy_j": b.energy_j,
            "weight_bytes": b.weight_bytes,
            "runner_up": r.label if r else "-",
            "runner_up_accuracy": _fmt_acc(r) if r else "-",
            "runner_up_latency_s": r.latency_s if r else float("nan"),
            "feasible": f"{self.n_feasible}/{self.n_candidates}",
        }


_LIMITS = {  # constraint name -> (candidate field, sense)
    "min_accuracy": ("accuracy_mean", ">="),
    "max_latency_s": ("latency_s", "<="),
    "max_energy_j": ("energy_j", "<="),
}


def pick(table: ResultTable, hw: str, *, min_accuracy: float | None = None, max_latency_s: float | None = None,
         max_energy_j: float | None = None, objective: str | None = None, model: str | None = None,
         tie_rtol: float = 0.01) -> Pick:
    """Best candidate of ``table`` on hardware ``hw`` (optionally one ``model``) under the limits.

    Raises ``UnknownNameError`` for an unknown ``hw``/``model``/``objective`` (listing the
    valid ones) and ``NoFeasibleCandidate`` when nothing meets the constraints.
    """
    hws = table.hardware_names()
    if hw not in hws:
        raise UnknownNameError(f"no results for hardware {hw!r}; hardware in the results: {', '.join(hws) or 'none'}")
    rows = table.where(hardware=hw)
    if model is not None:
        models = sorted({c.model for c in rows})
        if model not in models:
            raise UnknownNameError(f"no results for model {model!r} on {hw!r}; models: {', '.join(models)}")
        rows = rows.where(model=model)
    limits = {k: float(v) for k, v in (("min_accuracy", min_accuracy), ("max_latency_s", max_latency_s),
                                        ("max_energy_j", max_energy_j)) if v is not None}
    if objective is None:
        objective = "accuracy" if ("max_latency_s" in limits or "max_energy_j" in limits) else "latency_s"
    if objective not in OBJECTIVES:
        raise UnknownNameError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")

    feasible = [c for c in rows if _violation(c, limits) == 0.0]
    if not feasible:
        raise _infeasible(hw, rows, limits)
    ranked = sorted(feasible, key=lambda c: _rank_key(c, objective))
    if objective != "accuracy":
        # near-ties on the cost: the most accurate of those within tie_rtol of the lowest comes first
        limit = getattr(ranked[0], objective) * (1.0 + tie_rtol)
        tied = [c for c in ranked if getattr(c, objective) <= limit]
        lead = min(tied, key=lambda c: (-c.accuracy_mean, _rank_key(c, objective)))
        ranked = [lead] + [c for c in ranked if c is not lead]
    best = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    result = Pick(hw, objective, limits, best, runner, len(rows), len(feasible), tie_rtol=tie_rtol)
    return replace(result, explanation=explain(result))


def _rank_key(c: Candidate, objective: str) -> tuple:
    primary = -c.accuracy_mean if objective == "accuracy" else getattr(c, objective)
    return (primary, -c.accuracy_mean, c.latency_s, c.energy_j, c.weight_bytes, c.label)


def _violation(c: Candidate, limits: dict[str, float]) -> float:
    """Sum of relative constraint violations (0.0 = feasible; inf for NaN values)."""
    total = 0.0
    for name, limit in limits.items():
        fld, sense = _LIMITS[name]
        value = getattr(c, fld)
        if math.isnan(value):
            return math.inf
        miss = (limit - value) if sense == ">=" else (value - limit)
        if miss > 0:
            total += miss / abs(limit) if limit else miss
    return total


def _infeasible(hw: str, rows: ResultTable, limits: dict[str, float]) -> NoFeasibleCandidate:
    scored = sorted(((_violation(c, limits), c.label, c) for c in rows), key=lambda t: (t[0], t[1]))
    closest = scored[0][2] if scored and math.isfinite(scored[0][0]) else None
    msg = f"no candidate on {hw!r} meets {_fmt_constraints(limits)} ({len(rows)} candidates)"
    if closest is None:
        return NoFeasibleCandidate(msg + "; none has finite results", None)
    misses = []
    for name, limit in limits.items():
        fld, sense = _LIMITS[name]
        value = getattr(closest, fld)
        ok = value >= limit if sense == ">=" else value <= limit
        misses.append(f"{fld} {_fmt_value(fld, value)} ({'meets' if ok else 'misses'} {sense} {_fmt_value(fld, limit)})")
    return NoFeasibleCandidate(
        f"{msg}. Closest miss: {closest.label} ({'; '.join(misses)}). "
        "Relax the limit it misses, or add patterns/recipes to the sweep.", closest)


def explain(p: Pick) -> str:
    """A few sentences: what was chosen, why, by how much over the runner-up."""
    b, r = p.best, p.runner_up
    goal = "highest mean accuracy" if p.objective == "accuracy" else f"lowest {p.objective}"
    head = (f"On {p.hardware}: train {b.label}. It has the {goal} of the {p.n_feasible} of {p.n_candidates} "
            f"candidates meeting {_fmt_constraints(p.constraints) or 'no constraints'}: accuracy {_fmt_acc(b)}, "
            f"latency {_fmt_value('latency_s', b.latency_s)}, energy {_fmt_value('energy_j', b.energy_j)}, "
            f"weights {_fmt_value('weight_bytes', b.weight_bytes)}.")
    if r is None:
        return head + " No runner-up: it is the only feasible candidate."
    if p.objective == "accuracy":
        gap = f"{(b.accuracy_mean - r.accuracy_mean) * 100:.2f} points more accurate"
    else:
        bv, rv = getattr(b, p.objective), getattr(r, p.objective)
        if abs(rv - bv) <= p.tie_rtol * min(bv, rv):
            gap = (f"tied on {p.objective} ({_fmt_value(p.objective, bv)} vs {_fmt_value(p.objective, rv)}, within "
                   f"{p.tie_rtol * 100:g}%), so the more accurate one is picked")
        else:
            gap = f"{rv / bv:.2f}x lower {p.objective}" if bv > 0 else f"{p.objective} {bv:g} vs {rv:g}"
    tail = (f" Runner-up: {r.label} (accuracy {_fmt_acc(r)}, latency {_fmt_value('latency_s', r.latency_s)}, "
            f"energy {_fmt_value('energy_j', r.energy_j)}); the pick is {gap}.")
    noise = math.hypot(b.accuracy_std, r.accuracy_std)
    if abs(b.accuracy_mean - r.accuracy_mean) < noise:
        tail += (f" Their accuracy difference ({abs(b.accuracy_mean - r.accuracy_mean) * 100:.2f} points) is within "
                 f"seed noise (combined std {noise * 100:.2f} points).")
    return head + tail


def _fmt_acc(c: Candidate) -> str:
    return f"{c.accuracy_mean * 100:.2f}% ± {c.accuracy_std * 100:.2f} (n={c.n_seeds})"


def _fmt_value(fld: str, v: float) -> str:
    if fld == "accuracy_mean":
        return f"{v * 100:.2f}%"
    if fld == "latency_s":
        return f"{v * 1e3:.4g} ms" if v < 1 else f"{v:.4g} s"
    if fld == "energy_j":
        return f"{v * 1e3:.4g} mJ" if v < 1 else f"{v:.4g} J"
    if fld == "weight_bytes":
        return f"{v / 1e6:.4g} MB" if v >= 1e6 else f"{v / 1e3:.4g} kB"
    return f"{v:.4g}"


def _fmt_constraints(limits: dict[str, float]) -> str:
    return " and ".join(f"{_LIMITS[k][0]} {_LIMITS[k][1]} {_fmt_value(_LIMITS[k][0], v)}" for k, v in limits.items())
