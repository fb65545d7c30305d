"""Accuracy-vs-cost Pareto fronts over sweep results (pure NumPy; no torch, no plotly).

The results form
----------------
A ``Candidate`` is one trained configuration (model, recipe, N:M pattern) evaluated on one
hardware target, with its accuracy aggregated over seeds and its simulated cost. A
``ResultTable`` is an immutable sequence of candidates with columnar access
(``table.column("latency_s") -> (n,) float64``). Build one from plain dicts with
``ResultTable.from_records``; build candidates from per-seed rows with ``aggregate_seeds``.

The quality metric
------------------
``accuracy_mean``/``accuracy_std`` hold the task's quality metric (``pgf_sim.core.metric``), which
the table carries (``table.metric``): accuracy, or bpc / loss / perplexity for language models.
Everything below is written for "higher is better"; a lower-is-better metric is negated before
comparing (``higher_is_better=False``), so fronts and ranks come out the right way round.

Domination (accuracy maximised, every cost minimised)
-----------------------------------------------------
Point ``j`` dominates ``i`` when ``cost_j <= cost_i`` in every cost column and
``acc_j - acc_i >= margin_ij``, with at least one of them strict (``cost_j < cost_i`` in some
column, or ``acc_j - acc_i > margin_ij``). Classic Pareto: ``margin_ij = 0``.

- Exact ties (same accuracy and same cost): neither dominates the other, so duplicates are
  *both kept*; they stay distinguishable by their labels. Nothing is deduplicated silently.
- Noise-aware (``acc_std`` given): ``margin_ij = tol + k * sqrt(std_i**2 + std_j**2)``, so a
  point is dropped only if another point, at most as costly, is more accurate by more than
  ``k`` combined standard deviations. The front is then the set of "possibly optimal" points:
  costs are simulated (deterministic), only accuracy is noisy. Pass per-seed std (conservative)
  or the standard error ``std / sqrt(n)``; ``fronts(..., noise="sem")`` does the latter.
  Because ``sqrt(a²+c²) <= sqrt(a²+b²) + sqrt(b²+c²)`` the relation stays transitive, so
  every point off the front is dominated by a point *on* the front (property-tested).
- NaN in accuracy or cost: ``nan="raise"`` (default) raises ``ConfigError`` naming the rows;
  ``nan="exclude"`` leaves those rows off the front (``fronts`` reports each one and why).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Literal

import numpy as np

from ...core.errors import ConfigError
from ...core.metric import ACCURACY, Metric
from ...core.pattern import NM
from ...sim.report_table import si

#: Cost metrics of a candidate, all minimised. FLOPs per inference (executed, hardware aware
#: for ``inference_flops``), seconds, joules, bytes of stored weights, bytes of inference memory
#: (stored weights + peak activations + KV cache, ``sim/footprint.py``), FLOPs of the whole
#: training schedule.
COST_METRICS: tuple[str, ...] = ("inference_flops", "latency_s", "energy_j", "weight_bytes", "footprint_bytes",
                                 "train_flops")
#: cost metrics a per-seed row may lack (results simulated before they were stored): NaN
_OPTIONAL_COSTS = frozenset({"footprint_bytes"})

METRIC_LABELS = {
    "inference_flops": "inference FLOPs",
    "latency_s": "latency (s)",
    "energy_j": "energy (J)",
    "weight_bytes": "weight memory (bytes)",
    "footprint_bytes": "memory footprint (bytes)",
    "train_flops": "training FLOPs",
    "accuracy_mean": "accuracy",
}


@dataclass(frozen=True)
class Candidate:
    """One (model, recipe, pattern) on one hardware target, aggregated over seeds.

    ``pattern`` is an ``NM`` for a uniform pattern, or a string label for a per-layer mixed
    assignment (e.g. ``"mixed:fc1=1:8,fc2=2:4"``). Accuracy is a fraction in [0, 1];
    ``accuracy_std`` is the sample std over seeds (ddof=1), 0.0 when ``n_seeds == 1``.
    ``fits_memory`` is False when the footprint exceeds the target's capacity.
    """

    hardware: str
    recipe: str
    pattern: NM | str
    accuracy_mean: float
    accuracy_std: float
    n_seeds: int
    inference_flops: float
    latency_s: float
    energy_j: float
    weight_bytes: float
    train_flops: float
    footprint_bytes: float = math.nan  # inference memory; NaN: not simulated
    dram_capacity_bytes: float = math.nan  # the target's memory; NaN: unknown (never rules a candidate out)
    model: str = ""
    run_ids: tuple[str, ...] = ()
    cost_spread: float = 0.0  # max over cost metrics of (max - min) / mean across seeds


    @property
    def label(self) -> str:
        """Human name: ``"[model] recipe pattern"`` (``"dense"`` for the dense baseline)."""
        head = f"{self.model} " if self.model else ""
        if self.recipe == self.pattern_text == "dense":
            return f"{head}dense"
        return f"{head}{self.recipe} {self.pattern_text}"

    @property
    def fits_memory(self) -> bool:
        """False only when both are known and the footprint exceeds the capacity."""
        return not self.footprint_bytes > self.dram_capacity_bytes

    @property
    def pattern_text(self) -> str:
        """``"2:4"``, ``"dense"`` for 1:1 (and M:M), or the mixed-assignment label."""
        return "dense" if isinstance(self.pattern, NM) and self.pattern.is_dense else str(self.pattern)

    @property
    def accuracy_sem(self) -> float:
        """Standard error of the mean accuracy (std / sqrt(n)); 0.0 for one seed."""
        return self.accuracy_std / math.sqrt(self.n_seeds) if self.n_seeds > 0 else float("nan")

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["pattern"] = self.pattern_text
        out["run_ids"] = list(self.run_ids)
        return out


_FLOAT_FIELDS = ("accuracy_mean", "accuracy_std", *COST_METRICS, "dram_capacity_bytes", "cost_spread")


def _as_pattern(value: object) -> NM | str:
    if isinstance(value, NM):
        return value
    try:
        return NM.parse(value)  # type: ignore[arg-type]
    except ConfigError:
        if isinstance(value, str) and value:
            return value  # a mixed per-layer assignment keeps its label
        raise


class ResultTable(Sequence[Candidate]):
    """An immutable list of candidates with column access for vectorised analysis. ``metric``:
    what ``accuracy_mean`` measures (name, unit, direction)."""

    def __init__(self, candidates: Iterable[Candidate], metric: Metric = ACCURACY) -> None:
        self._rows: tuple[Candidate, ...] = tuple(candidates)
        self._cols: dict[str, np.ndarray] = {}
        self.metric = metric

    def quality(self) -> np.ndarray:
        """(n,) the metric means turned so that larger is better (for comparisons)."""
        col = self.column("accuracy_mean")
        return col if self.metric.higher_is_better else -col

    @classmethod
    def from_records(cls, records: Iterable[Mapping], metric: Metric = ACCURACY) -> "ResultTable":
        """Build from dicts with the ``Candidate`` field names (``pattern`` as ``"2:4"``).

        ``model`` and ``run_ids`` are optional; a missing required key is a ``ConfigError``.
        """
        names = {f.name for f in fields(Candidate)}
        rows = []
        for i, rec in enumerate(records):
            unknown = sorted(set(rec) - names)
            if unknown:
                raise ConfigError(f"result record {i}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
            missing = [f.name for f in fields(Candidate) if f.name not in rec and f.default is MISSING]
            if missing:
                raise ConfigError(f"result record {i}: missing key(s) {missing}")
            kw = dict(rec)
            kw["pattern"] = _as_pattern(kw["pattern"])
            kw["run_ids"] = tuple(kw.get("run_ids", ()))
            kw["n_seeds"] = int(kw["n_seeds"])
            for name in _FLOAT_FIELDS:
                if name in kw:
                    kw[name] = float("nan") if kw[name] is None else float(kw[name])
            rows.append(Candidate(**kw))
        return cls(rows, metric)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return ResultTable(self._rows[index], self.metric)
        return self._rows[index]

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self._rows)

    def column(self, name: str) -> np.ndarray:
        """(n,) array of one field: float64 for numbers, object for strings/patterns."""
        if name not in self._cols:
            valid = [f.name for f in fields(Candidate)]
            if name not in valid:
                raise ConfigError(f"unknown result column {name!r}; valid: {', '.join(valid)}")
            values = [getattr(c, name) for c in self._rows]
            if name in _FLOAT_FIELDS or name == "n_seeds":
                col = np.array(values, dtype=np.float64).reshape(len(values))
            else:
                col = np.empty(len(values), dtype=object)
                col[:] = values
            col.setflags(write=False)
            self._cols[name] = col
        return self._cols[name]

    def hardware_names(self) -> list[str]:
        """Hardware targets in first-appearance order."""
        return list(dict.fromkeys(c.hardware for c in self._rows))

    def where(self, **equals: object) -> "ResultTable":
        """Rows whose fields equal the given values, e.g. ``table.where(hardware="a100-80gb")``."""
        return ResultTable((c for c in self._rows if all(getattr(c, k) == v for k, v in equals.items())), self.metric)


def aggregate_seeds(rows: Iterable[Mapping], metric: Metric = ACCURACY) -> ResultTable:
    """Per-seed rows -> one ``Candidate`` per (hardware, model, recipe, pattern).

    A row has ``hardware, recipe, pattern, accuracy`` and the ``COST_METRICS`` (optional:
    ``model``, ``run_id``, ``seed``, ``footprint_bytes`` and ``dram_capacity_bytes``). Accuracy: mean and sample std (ddof=1; 0.0 for one
    seed), n. A NaN accuracy (a diverged or unfinished seed) makes the mean NaN on purpose:
    dropping it would make an unstable recipe look good. Costs are averaged; they are equal
    across seeds unless the captured masks differ, and ``Candidate.cost_spread`` records the
    largest relative range so a report can flag it. The same ``seed`` twice in one group is a
    ``ConfigError``: results of different configurations or simulator versions are mixed.
    """
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        key = (row["hardware"], row.get("model", ""), row["recipe"], str(_as_pattern(row["pattern"])))
        groups.setdefault(key, []).append(row)
    out = []
    for (hw, model, recipe, pat), members in groups.items():
        seeds = [r["seed"] for r in members if r.get("seed") is not None]
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            runs = [str(r.get("run_id", "?")) for r in members if r.get("seed") == dup[0]]
            raise ConfigError(
                f"{recipe} {pat} on {hw}{' (' + model + ')' if model else ''}: seed {dup[0]} appears "
                f"{seeds.count(dup[0])} times (runs {', '.join(runs)}): results of different sweep "
                "configurations or simulator versions are mixed; select one configuration's runs")
        acc = np.array([np.nan if r["accuracy"] is None else r["accuracy"] for r in members], dtype=np.float64)
        n = len(members)
        std = float(np.std(acc, ddof=1)) if n > 1 else 0.0
        vals = {m: np.array([np.nan if _cost(r, m) is None else _cost(r, m) for r in members], dtype=np.float64)
                for m in COST_METRICS}
        capacity = [r["dram_capacity_bytes"] for r in members if r.get("dram_capacity_bytes") is not None]
        spread = max((float((v.max() - v.min()) / abs(v.mean())) for v in vals.values()
                      if np.isfinite(v).all() and v.mean() != 0), default=0.0)
        out.append(Candidate(
            hardware=hw, model=model, recipe=recipe, pattern=_as_pattern(members[0]["pattern"]),
            accuracy_mean=float(np.mean(acc)), accuracy_std=std, n_seeds=n,
            run_ids=tuple(str(r["run_id"]) for r in members if r.get("run_id") is not None),
            cost_spread=spread, dram_capacity_bytes=float(min(capacity)) if capacity else math.nan,
            **{m: float(np.mean(v)) for m, v in vals.items()},
        ))
    return ResultTable(out, metric)


def _cost(row: Mapping, metric: str) -> float | None:
    return row.get(metric) if metric in _OPTIONAL_COSTS else row[metric]


def dominance_matrix(acc: np.ndarray, cost: np.ndarray, *, acc_std: np.ndarray | None = None,
                     k: float = 1.0, tol: float = 0.0) -> np.ndarray:
    """(n, n) bool, ``D[j, i]`` = point j dominates point i (see the module docstring).

    acc: (n,); cost: (n,) or (n, d); acc_std: (n,) or None. No NaN allowed here.
    """
    a = np.asarray(acc, dtype=np.float64).reshape(-1)
    c = np.asarray(cost, dtype=np.float64)
    c = c.reshape(-1, 1) if c.ndim <= 1 else c
    s = None if acc_std is None else np.asarray(acc_std, dtype=np.float64).reshape(-1)
    return _dominates_block(a, c, s, k, tol, 0, a.shape[0])


def pareto_front(acc: Sequence[float] | np.ndarray, cost: Sequence[float] | np.ndarray, *,
                 acc_std: Sequence[float] | np.ndarray | None = None, k: float = 1.0, tol: float = 0.0,
                 nan: Literal["raise", "exclude"] = "raise", higher_is_better: bool = True) -> np.ndarray:
    """(n,) bool mask of the non-dominated points: maximise ``acc`` (minimise it when
    ``higher_is_better`` is False, e.g. bits per character), minimise ``cost``.

    ``cost`` (n,) or (n, d) for several costs at once. ``acc_std`` switches on the noise-aware
    relation with ``k`` standard deviations; ``tol`` is an extra absolute accuracy margin
    (same units as ``acc``). NaN rows: ``nan="raise"`` -> ``ConfigError``; ``"exclude"`` ->
    False in the mask. O(n^2) time, computed in row blocks to bound memory.
    """
    acc = np.asarray(acc, dtype=np.float64).reshape(-1) * (1.0 if higher_is_better else -1.0)
    cost = np.asarray(cost, dtype=np.float64)
    cost2 = cost.reshape(-1, 1) if cost.ndim <= 1 else cost
    if cost2.shape[0] != acc.shape[0]:
        raise ConfigError(f"pareto_front: {acc.shape[0]} accuracies but {cost2.shape[0]} costs")
    std = None if acc_std is None else np.asarray(acc_std, dtype=np.float64).reshape(-1)
    if std is not None and std.shape != acc.shape:
        raise ConfigError(f"pareto_front: acc_std has {std.shape[0]} values for {acc.shape[0]} points")
    if k < 0 or tol < 0:
        raise ConfigError(f"pareto_front: k and tol must be >= 0, got k={k}, tol={tol}")
    bad = np.isnan(acc) | np.isnan(cost2).any(axis=1)
    if std is not None:
        bad |= np.isnan(std) | (std < 0)
    if nan not in ("raise", "exclude"):
        raise ConfigError(f"pareto_front: nan={nan!r}; valid: 'raise', 'exclude'")
    if bad.any() and nan == "raise":
        raise ConfigError(f"pareto_front: NaN (or negative std) in rows {np.flatnonzero(bad).tolist()}; "
                          "pass nan='exclude' to leave them off the front")
    good = np.flatnonzero(~bad)
    a, c = acc[good], cost2[good]
    s = None if std is None else std[good]
    on = np.ones(good.size, dtype=bool)
    block = 512  # rows of dominators per step: memory O(block * n)
    for start in range(0, good.size, block):
        stop = min(start + block, good.size)
        dom = _dominates_block(a, c, s, k, tol, start, stop)  # (stop-start, n)
        on &= ~dom.any(axis=0)
    mask = np.zeros(acc.shape[0], dtype=bool)
    mask[good[on]] = True
    return mask


def _dominates_block(a: np.ndarray, c: np.ndarray, s: np.ndarray | None, k: float, tol: float,
                     start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the dominance matrix (which of those points dominate each point)."""
    diff = a[start:stop, None] - a[None, :]
    margin = tol if s is None else tol + k * np.sqrt(s[start:stop, None] ** 2 + s[None, :] ** 2)
    cj, ci = c[start:stop, None, :], c[None, :, :]
    cost_le = np.all(cj <= ci, axis=2)
    cost_lt = np.any(cj < ci, axis=2)
    return cost_le & (diff >= margin) & (cost_lt | (diff > margin))


@dataclass(frozen=True)
class Front:
    """The front of one hardware target for one cost metric.

    ``indices``: rows of the *source table* on the front, sorted by cost ascending (then
    accuracy descending, then label). ``excluded``: (row, reason) for rows left out (NaN).
    """

    hardware: str
    metric: str
    indices: tuple[int, ...]
    excluded: tuple[tuple[int, str], ...]
    noise_k: float | None

    def candidates(self, table: ResultTable) -> list[Candidate]:
        return [table[i] for i in self.indices]


def fronts(table: ResultTable, metrics: Sequence[str] = COST_METRICS, *,
           noise: Literal["none", "std", "sem"] = "none", k: float = 1.0, tol: float = 0.0,
           fits_only: bool = False) -> dict[tuple[str, str], Front]:
    """Fronts per (hardware, metric) over a ``ResultTable``; NaN rows excluded and reported.

    ``noise``: ``"none"`` classic Pareto; ``"std"`` noise-aware with the per-seed std;
    ``"sem"`` noise-aware with the standard error of the mean (std / sqrt(n_seeds)).
    ``fits_only``: the fronts of what can run on each target: a candidate whose memory footprint
    exceeds its target's capacity (``Candidate.fits_memory`` False, infeasible in ``pick``) is
    left off every front and reported in ``excluded``, so it cannot hide a candidate that fits.
    """
    for m in metrics:
        if m not in COST_METRICS:
            raise ConfigError(f"unknown cost metric {m!r}; valid: {', '.join(COST_METRICS)}")
    if noise not in ("none", "std", "sem"):
        raise ConfigError(f"noise={noise!r}; valid: 'none', 'std', 'sem'")
    hw_col = table.column("hardware")
    acc_all = table.quality()  # oriented: larger is better, whatever the metric
    std_all = {"none": None, "std": table.column("accuracy_std"),
               "sem": table.column("accuracy_std") / np.sqrt(np.maximum(table.column("n_seeds"), 1))}[noise]
    fits = np.array([c.fits_memory or not fits_only for c in table], dtype=bool)
    out: dict[tuple[str, str], Front] = {}
    for hw in table.hardware_names():
        on_hw = hw_col == hw
        rows = np.flatnonzero(on_hw & fits)
        too_big = tuple((int(r), f"{table[int(r)].label}: memory footprint {si(table[int(r)].footprint_bytes, 'B')} "
                                 f"exceeds the target's {si(table[int(r)].dram_capacity_bytes, 'B')} (does not fit)")
                        for r in np.flatnonzero(on_hw & ~fits))
        for metric in metrics:
            cost = table.column(metric)[rows]
            acc = acc_all[rows]
            std = None if std_all is None else std_all[rows]
            mask = pareto_front(acc, cost, acc_std=std, k=k, tol=tol, nan="exclude")
            excluded = tuple(
                (int(r), f"{table[int(r)].label}: " + (f"{table.metric.name} is NaN (a seed diverged or has no result)"
                                                       if math.isnan(acc_all[r]) else f"{metric} is NaN"))
                for r in rows[np.isnan(acc) | np.isnan(cost)]
            ) + too_big
            on = rows[mask]
            order = sorted(on.tolist(), key=lambda r: (getattr(table[r], metric), -acc_all[r], table[r].label))
            out[(hw, metric)] = Front(hw, metric, tuple(int(r) for r in order), excluded,
                                      None if noise == "none" else k)
    return out
