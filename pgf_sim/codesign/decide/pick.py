"""Pick the N:M pattern + recipe to train for one hardware target, under constraints.

Rules (deterministic). "Quality" is the table's task metric (``table.metric``): accuracy
(higher is better) or bpc / loss / perplexity (lower is better); "more accurate" below means
better on that metric, and the metric's values are those of the validation split.
- Feasible: quality at least as good as ``metric_limit`` (accuracy >= limit, bpc <= limit;
  ``min_accuracy`` is the same limit for an accuracy task), ``latency_s <= max_latency_s``,
  ``energy_j <= max_energy_j``, ``footprint_bytes <= max_footprint_bytes`` (every constraint
  given; mean over seeds; NaN never feasible). Always, whatever the limits: the candidate's
  inference memory footprint fits its target's memory (``dram_capacity_bytes``); a candidate
  that does not fit is infeasible, and the explanation (or the no-feasible error) names it.
  An unknown footprint or capacity (results stored before footprints were) rules nothing out.
- ``objective``: ``"accuracy"`` (best mean quality) or a cost metric of
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

from ...core.errors import ConfigError, PgfSimError, UnknownNameError
from ...core.metric import ACCURACY, Metric
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
    metric: Metric = ACCURACY
    too_big: tuple[str, ...] = ()  # labels of the candidates ruled out because they do not fit memory

    def to_row(self) -> dict:
        """Flat dict for tables (report, CLI); ``accuracy`` holds the task metric, named in ``metric``."""
        b, r = self.best, self.runner_up
        return {
            "hardware": self.hardware,
            "objective": self.objective,
            "constraints": _fmt_constraints(self.constraints, self.metric) or "none",
            "pick": b.label,
            "metric": self.metric.label,
            "accuracy": _fmt_acc(b, self.metric),
            "latency_s": b.latency_s,
            "energy_j": b.energy_j,
            "weight_bytes": b.weight_bytes,
            "footprint_bytes": b.footprint_bytes,
            "runner_up": r.label if r else "-",
            "runner_up_accuracy": _fmt_acc(r, self.metric) if r else "-",
            "runner_up_latency_s": r.latency_s if r else float("nan"),
            "feasible": f"{self.n_feasible}/{self.n_candidates}",
        }


def _limit_rule(name: str, metric: Metric) -> tuple[str, str]:
    """constraint name -> (candidate field, sense)."""
    if name == "metric_limit":
        return "accuracy_mean", ">=" if metric.higher_is_better else "<="
    return {"max_latency_s": ("latency_s", "<="), "max_energy_j": ("energy_j", "<="),
            "max_footprint_bytes": ("footprint_bytes", "<=")}[name]


def pick(table: ResultTable, hw: str, *, min_accuracy: float | None = None, max_latency_s: float | None = None,
         max_energy_j: float | None = None, objective: str | None = None, model: str | None = None,
         tie_rtol: float = 0.01, metric_limit: float | None = None, max_footprint_bytes: float | None = None) -> Pick:
    """Best candidate of ``table`` on hardware ``hw`` (optionally one ``model``) under the limits.

    ``metric_limit``: the worst acceptable value of the table's metric (``min_accuracy`` is the
    same for an accuracy table; giving it for a bpc table is an error). Raises
    ``UnknownNameError`` for an unknown ``hw``/``model``/``objective`` (listing the valid ones)
    and ``NoFeasibleCandidate`` when nothing meets the constraints.
    """
    metric = table.metric
    if min_accuracy is not None:
        if not metric.higher_is_better or metric.name != "accuracy":
            raise ConfigError(f"min_accuracy applies to an accuracy task; this one is judged by {metric.label} "
                              f"({metric.unit}, lower is better): give metric_limit (the largest acceptable value)")
        if metric_limit is not None and metric_limit != min_accuracy:
            raise ConfigError("give min_accuracy or metric_limit, not both")
        metric_limit = min_accuracy
    hws = table.hardware_names()
    if hw not in hws:
        raise UnknownNameError(f"no results for hardware {hw!r}; hardware in the results: {', '.join(hws) or 'none'}")
    rows = table.where(hardware=hw)
    if model is not None:
        models = sorted({c.model for c in rows})
        if model not in models:
            raise UnknownNameError(f"no results for model {model!r} on {hw!r}; models: {', '.join(models)}")
        rows = rows.where(model=model)
    limits = {k: float(v) for k, v in (("metric_limit", metric_limit), ("max_latency_s", max_latency_s),
                                        ("max_energy_j", max_energy_j), ("max_footprint_bytes", max_footprint_bytes))
              if v is not None}
    if objective is None:
        objective = "accuracy" if set(limits) - {"metric_limit"} else "latency_s"
    if objective not in OBJECTIVES:
        raise UnknownNameError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")

    feasible = [c for c in rows if _violation(c, limits, metric) == 0.0]
    if not feasible:
        raise _infeasible(hw, rows, limits, metric)
    ranked = sorted(feasible, key=lambda c: _rank_key(c, objective, metric))
    if objective != "accuracy":
        # near-ties on the cost: the most accurate of those within tie_rtol of the lowest comes first
        limit = getattr(ranked[0], objective) * (1.0 + tie_rtol)
        tied = [c for c in ranked if getattr(c, objective) <= limit]
        lead = min(tied, key=lambda c: (-metric.oriented(c.accuracy_mean), _rank_key(c, objective, metric)))
        ranked = [lead] + [c for c in ranked if c is not lead]
    best = ranked[0]
    runner = ranked[1] if len(ranked) > 1 else None
    too_big = tuple(c.label for c in rows if not c.fits_memory)
    result = Pick(hw, objective, limits, best, runner, len(rows), len(feasible), tie_rtol=tie_rtol, metric=metric,
                  too_big=too_big)
    return replace(result, explanation=explain(result))


def _rank_key(c: Candidate, objective: str, metric: Metric = ACCURACY) -> tuple:
    quality = -metric.oriented(c.accuracy_mean)  # smaller = better
    primary = quality if objective == "accuracy" else getattr(c, objective)
    return (primary, quality, c.latency_s, c.energy_j, c.weight_bytes, c.label)


def _violation(c: Candidate, limits: dict[str, float], metric: Metric = ACCURACY) -> float:
    """Sum of relative constraint violations (0.0 = feasible; inf for NaN values), the memory
    capacity included."""
    total = 0.0 if c.fits_memory else (c.footprint_bytes - c.dram_capacity_bytes) / c.dram_capacity_bytes
    for name, limit in limits.items():
        fld, sense = _limit_rule(name, metric)
        value = getattr(c, fld)
        if math.isnan(value):
            return math.inf
        miss = (limit - value) if sense == ">=" else (value - limit)
        if miss > 0:
            total += miss / abs(limit) if limit else miss
    return total


def _infeasible(hw: str, rows: ResultTable, limits: dict[str, float], metric: Metric) -> NoFeasibleCandidate:
    scored = sorted(((_violation(c, limits, metric), c.label, c) for c in rows), key=lambda t: (t[0], t[1]))
    closest = scored[0][2] if scored and math.isfinite(scored[0][0]) else None
    too_big = [c for c in rows if not c.fits_memory]
    needs = " and ".join(x for x in (_fmt_constraints(limits, metric), "fits the target's memory" if too_big else "") if x)
    msg = f"no candidate on {hw!r} meets {needs} ({len(rows)} candidates)"
    if too_big:
        msg += f"; {len(too_big)} do not fit its memory ({_fmt_value('footprint_bytes', too_big[0].dram_capacity_bytes)})"
    if closest is None:
        return NoFeasibleCandidate(msg + "; none has finite results", None)
    misses = []
    for name, limit in limits.items():
        fld, sense = _limit_rule(name, metric)
        value = getattr(closest, fld)
        ok = value >= limit if sense == ">=" else value <= limit
        what = metric.name if fld == "accuracy_mean" else fld
        misses.append(f"{what} {_fmt_value(fld, value, metric)} ({'meets' if ok else 'misses'} {sense} "
                      f"{_fmt_value(fld, limit, metric)})")
    if not closest.fits_memory:
        misses.append(f"memory footprint {_fmt_value('footprint_bytes', closest.footprint_bytes)} exceeds the "
                      f"target's {_fmt_value('footprint_bytes', closest.dram_capacity_bytes)}")
    return NoFeasibleCandidate(
        f"{msg}. Closest miss: {closest.label} ({'; '.join(misses)}). "
        "Relax the limit it misses, or add patterns/recipes to the sweep.", closest)


def explain(p: Pick) -> str:
    """A few sentences: what was chosen, why, by how much over the runner-up."""
    b, r, m = p.best, p.runner_up, p.metric
    obj = _OBJECTIVE_WORDS.get(p.objective, p.objective)
    goal = f"best mean {m.label} (validation)" if p.objective == "accuracy" else f"lowest {obj}"
    head = (f"On {p.hardware}: train {b.label}. It has the {goal} of the {p.n_feasible} of {p.n_candidates} "
            f"candidates meeting {_fmt_constraints(p.constraints, m) or 'no constraints'}: {m.label} {_fmt_acc(b, m)}, "
            f"latency {_fmt_value('latency_s', b.latency_s)}, energy {_fmt_value('energy_j', b.energy_j)}, "
            f"weights {_fmt_value('weight_bytes', b.weight_bytes)}"
            + ("" if math.isnan(b.footprint_bytes) else f", memory {_fmt_value('footprint_bytes', b.footprint_bytes)}")
            + ".")
    if p.too_big:
        head += (f" Ruled out because their memory footprint exceeds the target's "
                 f"{_fmt_value('footprint_bytes', b.dram_capacity_bytes)}: {', '.join(p.too_big)}.")
    if r is None:
        return head + " No runner-up: it is the only feasible candidate."
    if p.objective == "accuracy":
        delta = m.fmt_delta(abs(b.accuracy_mean - r.accuracy_mean))
        gap = f"{delta} more accurate" if m.name == "accuracy" else f"{delta} {'higher' if m.higher_is_better else 'lower'}"
    else:
        bv, rv = getattr(b, p.objective), getattr(r, p.objective)
        if abs(rv - bv) <= p.tie_rtol * min(bv, rv):
            gap = (f"tied on {obj} ({_fmt_value(p.objective, bv)} vs {_fmt_value(p.objective, rv)}, within "
                   f"{p.tie_rtol * 100:g}%), so the more accurate one is picked")
        else:
            gap = f"{rv / bv:.2f}x lower {obj}" if bv > 0 else f"{obj} {bv:g} vs {rv:g}"
    tail = (f" Runner-up: {r.label} ({m.label} {_fmt_acc(r, m)}, latency {_fmt_value('latency_s', r.latency_s)}, "
            f"energy {_fmt_value('energy_j', r.energy_j)}); the pick is {gap}.")
    noise = math.hypot(b.accuracy_std, r.accuracy_std)
    if min(b.n_seeds, r.n_seeds) < 2:
        tail += (f" With 1 seed {'each' if max(b.n_seeds, r.n_seeds) < 2 else 'for one of them'} there is no seed "
                 f"noise to judge their {m.label} difference by: cannot tell (train more seeds to decide).")
    elif abs(b.accuracy_mean - r.accuracy_mean) < noise:
        tail += (f" Their {m.label} difference ({m.fmt_delta(abs(b.accuracy_mean - r.accuracy_mean))}) is within "
                 f"seed noise (combined std {m.fmt_delta(noise)}).")
    return head + tail


_OBJECTIVE_WORDS = {"latency_s": "latency", "energy_j": "energy", "footprint_bytes": "memory footprint",
                    "inference_flops": "inference FLOPs",
                    "weight_bytes": "weight memory", "train_flops": "training FLOPs"}


def _fmt_acc(c: Candidate, metric: Metric = ACCURACY) -> str:
    if c.n_seeds < 2:  # one seed has no spread: no "± 0.00" that looks certain
        return f"{metric.fmt(c.accuracy_mean)} (1 seed)"
    return f"{metric.fmt(c.accuracy_mean, c.accuracy_std)} (n={c.n_seeds})"


def _fmt_value(fld: str, v: float, metric: Metric = ACCURACY) -> str:
    if fld == "accuracy_mean":
        return metric.fmt(v)
    if fld == "latency_s":
        return f"{v * 1e3:.4g} ms" if v < 1 else f"{v:.4g} s"
    if fld == "energy_j":
        return f"{v * 1e3:.4g} mJ" if v < 1 else f"{v:.4g} J"
    if fld in ("weight_bytes", "footprint_bytes"):
        if v >= 1e9:
            return f"{v / 1e9:.4g} GB"
        if v >= 1e6:
            return f"{v / 1e6:.4g} MB"
        return f"{v / 1e3:.4g} kB" if v >= 1e3 else f"{v:.4g} B"
    return f"{v:.4g}"


def _fmt_constraints(limits: dict[str, float], metric: Metric = ACCURACY) -> str:
    parts = []
    for k, v in limits.items():
        fld, sense = _limit_rule(k, metric)
        parts.append(f"{metric.name if fld == 'accuracy_mean' else fld} {sense} {_fmt_value(fld, v, metric)}")
    return " and ".join(parts)
