"""The analysis of a seed study (docs/study.md) from the result database, torch-free.

For a sweep with several seeds per (recipe label, pattern) cell:

- **quality**: the task metric of each finished run's final model on the validation split
  (``RunRow.final_accuracy``; or, with ``split="test"``, the final ``test_<metric>`` the trainer
  logs for the test split), mean +- std (n) per cell;
- **vs the reference** (default SR-STE) at the same pattern: ``mean(recipe) - mean(reference)``
  with Welch's 95% interval and p-value, Holm-corrected over every comparison of the table
  (``stats.py``); a verdict says *better* / *worse* when the corrected p-value is <= alpha and
  *undecided* otherwise (direction from the task metric: lower bpc is better);
- **iso-FLOPs**: the seed-mean validation curve of a cell against its cumulative training FLOPs
  (the ``train_flops`` metric the trainer logs with every evaluation, from the torch-free
  accounting of ``pgf_sim.sparsity.flops``), linearly interpolated to the first point where it
  reaches the reference's mean final value at that pattern; reported as FLOPs and as a ratio to
  the reference's own FLOPs. The learning-rate schedule is set by the run's full length, so
  "reaching it earlier" is a point on a longer run, not a shorter run. A mid-run evaluation
  scores the model as it trains: for MDGF that is the forward weight W*(m + beta*(1-m)), not yet
  an N:M model while beta > 0 (with a fixed small alpha, never), so its curve can reach a value
  its finalized model does not;
- **bootstrap**: beside each Welch interval, a percentile bootstrap interval of the same
  difference (``stats.bootstrap``: B = 10000 resamples, NumPy seed 0); verdicts stay Welch + Holm;
- **views of a swept parameter** (e.g. the learning rate of an lr grid): ``fix`` keeps only the
  points with given values (the *untuned* view: one fixed lr for every recipe); ``tune`` picks,
  per (recipe label, pattern), the value whose runs have the best mean validation quality and
  keeps only those runs (the *tuned* view: each recipe at its own best lr). The pick is always
  made on the validation split; the tuned view then reports and compares each run's final metric
  on the **test** split (``split``, default ``test`` with ``tune``), which the pick never saw, so
  the tuned means carry no winner's curse. ``split="val"`` compares on the validation values the
  pick used (optimistic by the margin of a best-of-k pick);
- **gradient noise**: the trainer's diagnostics (``pgf_sim.train.diagnostics``) averaged over
  the sparsified layers, then over the windows of a run, then over seeds; per step for the
  figures.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ...core import NM, PgfSimError
from ...core.metric import Metric
from .stats import Difference, Interval, Summary, bootstrap, detectable, holm, summary, welch

SPLITS = ("val", "test")
SPLIT_NAMES = {"val": "validation", "test": "test"}
NOISE_KEYS = ("grad_var", "grad_var_kept", "grad_noise_ratio", "mask_flip_rate")


@dataclass
class Cell:
    label: str
    pattern: NM
    runs: list[Any] = field(default_factory=list)  # finished RunRows
    split: str = "val"  # which split's final metric ``values`` holds: val | test
    test_values: dict[str, float] = field(default_factory=dict)  # run_id -> final test metric

    @property
    def values(self) -> list[float]:
        """The final metric of each run on the cell's split (what the tables compare)."""
        if self.split == "test":
            return [self.test_values[r.run_id] for r in self.runs]
        return self.val_values

    @property
    def val_values(self) -> list[float]:
        """The final validation metric of each run (what a tuned pick and the iso-FLOPs target use)."""
        return [r.final_accuracy for r in self.runs]


@dataclass(frozen=True)
class Comparison:
    label: str
    pattern: NM
    cell: Summary
    reference: Summary
    difference: Difference
    p_holm: float
    verdict: str  # better | worse | undecided
    bootstrap: Interval  # percentile bootstrap interval of the same difference


@dataclass(frozen=True)
class IsoFlops:
    label: str
    pattern: NM
    target: float  # the reference's mean final value at this pattern
    flops_to_target: float | None  # None: the seed-mean curve never reaches it
    reference_flops: float
    total_flops: float

    @property
    def ratio(self) -> float | None:
        return None if self.flops_to_target is None else self.flops_to_target / self.reference_flops


@dataclass(frozen=True)
class TunedChoice:
    """The value of the tuned parameter picked for one cell, and every value's summary."""

    value: Any
    candidates: dict[Any, Summary]  # value -> validation quality of its finished runs


@dataclass
class Study:
    sweep: str
    metric: Metric
    reference: str
    alpha: float
    cells: dict[tuple[str, NM], Cell]
    comparisons: list[Comparison]
    iso: list[IsoFlops]
    curves: dict[tuple[str, NM], tuple[list[float], list[float]]]  # seed-mean (flops, value)
    noise: dict[tuple[str, NM], dict[str, Summary]]  # per key: over seeds of the run means
    noise_curves: dict[tuple[str, NM], dict[str, tuple[list[int], list[float]]]]
    wall_s: float
    unfinished: int
    fixed: dict[str, Any] = field(default_factory=dict)  # parameter -> the one value kept
    tuned_param: str | None = None
    tuned: dict[tuple[str, NM], TunedChoice] = field(default_factory=dict)
    split: str = "val"  # the split whose final metric the quality and comparison tables hold

    def labels(self) -> list[str]:
        return list(dict.fromkeys(label for label, _ in self.cells))

    def patterns(self) -> list[NM]:
        return sorted({p for _, p in self.cells if not p.is_dense}, key=lambda p: p.density, reverse=True)


def _metric(run: Any) -> Metric:
    from ...train.experiment import metric_of

    return metric_of(run.config)  # read without building the experiment: no factory is imported


def analyse(store: Any, sweep: str | None = None, *, reference: str = "sr-ste", alpha: float = 0.05,
            confidence: float = 0.95, patterns: Sequence[NM] | None = None,
            fix: dict[str, Any] | None = None, tune: str | None = None, split: str | None = None) -> Study:
    """The study of ``sweep`` (default: the database's only sweep) in ``store``. ``patterns``: only
    these N:M patterns (and the dense baseline), so the Holm family is the comparisons at them
    (e.g. the paper's high-sparsity claims at 1:16 and 1:32); default every pattern of the sweep.
    ``fix``: swept parameter -> value, only points with these values (the untuned view);
    ``tune``: a swept parameter whose best value (by mean validation quality) is picked per
    (recipe label, pattern) (the tuned view). A parameter in both is tuned.
    ``split``: ``val`` or ``test``, the split whose final metric the tables compare (default: ``test``
    with ``tune``, so the pick and the comparison use disjoint data; ``val`` otherwise)."""
    split = ("test" if tune is not None else "val") if split is None else split
    if split not in SPLITS:
        raise PgfSimError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    sweeps = [s.sweep for s in store.sweeps()]
    if sweep is None:
        if len(sweeps) != 1:
            raise PgfSimError(f"the database holds sweeps {sweeps}; name one with --sweep")
        sweep = sweeps[0]
    elif sweep not in sweeps:
        raise PgfSimError(f"no sweep {sweep!r} in the database; sweeps: {', '.join(sweeps) or 'none'}")
    cells: dict[tuple[str, NM], Cell] = {}
    unfinished = 0
    t0, t1 = math.inf, -math.inf
    points = store.sweep_points(sweep)
    if patterns is not None:
        have = {pt.pattern for pt in points if not pt.pattern.is_dense}
        missing = [str(p) for p in patterns if p not in have]
        if missing:
            raise PgfSimError(f"pattern(s) {', '.join(missing)} not in sweep {sweep!r}; its patterns: "
                              f"{', '.join(str(p) for p in sorted(have, key=lambda p: -p.density))}")
        wanted = set(patterns)
        points = [pt for pt in points if pt.pattern.is_dense or pt.pattern in wanted]
    fixed = {k: v for k, v in (fix or {}).items() if k != tune}
    points = _select(points, sweep, fixed, tune)
    by_value: dict[tuple[str, NM], dict[Any, Cell]] = {}
    for pt in points:
        run = store.get_run(pt.run_id)
        key = (pt.recipe, pt.pattern)
        cells.setdefault(key, Cell(*key))
        if tune is not None:  # the runs of each value apart; the best value's become the cell below
            by_value.setdefault(key, {}).setdefault(pt.params[tune], Cell(*key))
        if run is None or run.status != "finished" or run.final_accuracy is None:
            unfinished += 1
            continue
        (by_value[key][pt.params[tune]] if tune is not None else cells[key]).runs.append(run)
        t0, t1 = min(t0, run.started_at), max(t1, run.finished_at or run.started_at)
    runs = [r for c in [*cells.values(), *(c for v in by_value.values() for c in v.values())] for r in c.runs]
    if not runs:
        raise PgfSimError(f"sweep {sweep!r} has no finished run yet")
    metric = _metric(runs[0])
    if split == "test":
        _load_test_values(store, [*cells.values(), *(c for v in by_value.values() for c in v.values())], metric)
    tuned = {key: _pick(values, metric) for key, values in by_value.items() if any(c.runs for c in values.values())}
    for key, choice in tuned.items():
        cells[key] = by_value[key][choice.value]
    if not any(label == reference for label, _ in cells):
        raise PgfSimError(f"reference recipe {reference!r} is not a label of sweep {sweep!r}; "
                          f"labels: {', '.join(dict.fromkeys(l for l, _ in cells))}")
    comparisons = _compare(cells, metric, reference, alpha, confidence)
    curves = {key: _mean_curve(store, cell, metric) for key, cell in cells.items() if cell.runs}
    iso = _iso_flops(cells, curves, metric, reference)
    noise, noise_curves = _noise(store, cells)
    return Study(sweep, metric, reference, alpha, cells, comparisons, iso, curves, noise, noise_curves,
                 t1 - t0, unfinished, fixed, tune, tuned, split)


def _load_test_values(store: Any, cells: Sequence[Cell], metric: Metric) -> None:
    """Switch ``cells`` to the test split: each run's last logged ``test_<metric>``. A finished run
    without one (a task with no test evaluation) is an error that names it."""
    key = f"test_{metric.name}"
    for cell in cells:
        cell.split = "test"
        for run in cell.runs:
            logged = store.run_metrics(run.run_id, key)
            if not logged:
                raise PgfSimError(f"run {run.run_id} has no final {key} in the database (it logged no test-split "
                                  f"evaluation); compare on the validation split instead (--split val)")
            cell.test_values[run.run_id] = logged[-1][-1]


def _select(points: list, sweep: str, fixed: dict[str, Any], tune: str | None) -> list:
    """The points with the ``fixed`` values; errors name the sweep's parameters and values."""
    swept: dict[str, set] = defaultdict(set)
    for pt in points:
        for k, v in pt.params.items():
            swept[k].add(v)
    for key in [*fixed, *([tune] if tune else [])]:
        if key not in swept:
            raise PgfSimError(f"sweep {sweep!r} does not sweep {key!r}; its swept parameters: "
                              f"{', '.join(sorted(swept)) or 'none'}")
    for key, value in fixed.items():
        if value not in swept[key]:
            raise PgfSimError(f"sweep {sweep!r} has no point with {key}={value!r}; its values: "
                              f"{', '.join(repr(v) for v in sorted(swept[key]))}")
    # seeds of different parameter values are not replicates: a cell must not pool them
    pooled = [k for k, vs in swept.items() if len(vs) > 1 and k not in fixed and k != tune]
    if pooled:
        key = pooled[0]
        raise PgfSimError(f"sweep {sweep!r} sweeps {key} over {len(swept[key])} values "
                          f"({', '.join(repr(v) for v in sorted(swept[key]))}); a cell would pool their runs as if "
                          f"they were seeds: choose a view, --fix {key}=VALUE (untuned) or --tune {key}")
    return [pt for pt in points if all(pt.params.get(k) == v for k, v in fixed.items())]


def _pick(values: dict[Any, Cell], metric: Metric) -> TunedChoice:
    """The value with the best mean validation quality (ties: the first in sorted order)."""
    candidates = {v: summary(c.val_values) for v, c in sorted(values.items()) if c.runs}
    best = max(candidates, key=lambda v: metric.oriented(candidates[v].mean))
    return TunedChoice(best, candidates)


def _compare(cells, metric: Metric, reference: str, alpha: float, confidence: float) -> list[Comparison]:
    refs = {p: c for (label, p), c in cells.items() if label == reference}
    raw = []
    for (label, pattern), cell in cells.items():
        targets = [pattern] if not pattern.is_dense else list(refs)  # dense: against every pattern's reference
        for target in targets:
            ref = refs.get(target)
            if label == reference or ref is None or len(cell.runs) < 2 or len(ref.runs) < 2:
                continue
            raw.append((label, target if pattern.is_dense else pattern, cell, ref,
                        welch(cell.values, ref.values, confidence)))
    adjusted = holm([d.p_value for *_, d in raw])
    out = []
    for (label, pattern, cell, ref, d), p in zip(raw, adjusted):
        verdict = "undecided"
        if p <= alpha:
            verdict = "better" if metric.oriented(d.diff) > 0 else "worse"
        out.append(Comparison(label, pattern, summary(cell.values), summary(ref.values), d, p, verdict,
                              bootstrap(cell.values, ref.values, confidence)))
    return out


def _mean_curve(store: Any, cell: Cell, metric: Metric) -> tuple[list[float], list[float]]:
    """Seed-mean validation metric against cumulative training FLOPs at the evaluation steps every
    seed logged (the FLOPs at a step are the same for every seed of a cell)."""
    per_step: dict[int, list[float]] = defaultdict(list)
    flops: dict[int, float] = {}
    for run in cell.runs:
        for step, key, value in store.run_metrics(run.run_id):
            if key == f"val_{metric.name}":
                per_step[step].append(value)
            elif key == "train_flops":
                flops[step] = value
    steps = sorted(s for s, v in per_step.items() if len(v) == len(cell.runs) and s in flops)
    return [flops[s] for s in steps], [math.fsum(per_step[s]) / len(per_step[s]) for s in steps]


def flops_to_reach(xs: Sequence[float], ys: Sequence[float], target: float, metric: Metric) -> float | None:
    """FLOPs where the curve (xs ascending) first reaches ``target``, linearly interpolated between
    the two evaluations around the crossing; None if it never does. Starts from the first point."""
    good = [metric.oriented(y) >= metric.oriented(target) for y in ys]
    for i, ok in enumerate(good):
        if not ok:
            continue
        if i == 0:
            return float(xs[0])
        y0, y1 = ys[i - 1], ys[i]
        frac = (target - y0) / (y1 - y0) if y1 != y0 else 1.0
        return float(xs[i - 1] + frac * (xs[i] - xs[i - 1]))
    return None


def _iso_flops(cells, curves, metric: Metric, reference: str) -> list[IsoFlops]:
    out = []
    for pattern in sorted({p for _, p in cells if not p.is_dense}, key=lambda p: p.density, reverse=True):
        ref = cells.get((reference, pattern))
        if ref is None or not ref.runs or not curves.get((reference, pattern), ((), ()))[0]:
            continue  # no evaluation curve logged for the reference: nothing to reach
        target = summary(ref.val_values).mean  # the curves are validation curves, whatever the tables' split
        ref_total = curves[(reference, pattern)][0][-1]
        for (label, p), (xs, ys) in curves.items():
            if p != pattern and not (p.is_dense and label == "dense"):
                continue
            if not xs:
                continue
            out.append(IsoFlops(label, pattern, target, flops_to_reach(xs, ys, target, metric), ref_total, xs[-1]))
    return out


def _noise(store: Any, cells) -> tuple[dict, dict]:
    summaries: dict[tuple[str, NM], dict[str, Summary]] = {}
    curves: dict[tuple[str, NM], dict[str, tuple[list[int], list[float]]]] = {}
    for key, cell in cells.items():
        run_means: dict[str, list[float]] = defaultdict(list)
        by_step: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for run in cell.runs:
            per: dict[tuple[str, int], list[float]] = defaultdict(list)
            for step, _layer, k, value in store.run_diagnostics(run.run_id):
                if k in NOISE_KEYS and math.isfinite(value):
                    per[(k, step)].append(value)
            layer_mean = {ks: math.fsum(v) / len(v) for ks, v in per.items()}
            for k in NOISE_KEYS:
                vals = [v for (kk, _), v in layer_mean.items() if kk == k]
                if vals:
                    run_means[k].append(math.fsum(vals) / len(vals))
                for (kk, step), v in layer_mean.items():
                    if kk == k:
                        by_step[k][step].append(v)
        summaries[key] = {k: summary(v) for k, v in run_means.items()}
        curves[key] = {k: (sorted(d), [math.fsum(d[s]) / len(d[s]) for s in sorted(d)]) for k, d in by_step.items()}
    return summaries, curves


# ------------------------------------------------------------------------------------ text
def _fmt_flops(x: float | None) -> str:
    return "not reached" if x is None else f"{x / 1e9:.3g} GFLOP"


def _cell(study: Study, label: str, pattern: NM) -> Cell | None:
    """The cell of ``label`` at ``pattern``; the dense baseline's one cell stands in at every pattern."""
    cell = study.cells.get((label, pattern))
    if cell is None and label == "dense":
        cell = study.cells.get((label, NM(1, 1)))
    return cell


def quality_rows(study: Study) -> list[dict[str, str]]:
    """Per recipe label: mean ± std (n) of the final metric at every pattern ("—": no finished run)."""
    rows = []
    k, digits = study.metric.scale, _digits(study)
    for label in study.labels():
        row = {"recipe": label}
        for p in study.patterns():
            cell = _cell(study, label, p)
            row[str(p)] = summary([v * k for v in cell.values]).text(digits) if cell and cell.runs else "—"
        rows.append(row)
    return rows


def comparison_rows(study: Study) -> list[dict[str, str]]:
    """Per comparison with the reference: difference, Welch interval, raw and Holm p, verdict."""
    ref, k, n = study.reference, study.metric.scale, _digits(study)
    return [{"recipe": c.label, "pattern": str(c.pattern), f"mean − {ref}": f"{c.difference.diff * k:+.{n}f}",
             f"{_confidence(study)}% interval": f"[{c.difference.low * k:+.{n}f}, {c.difference.high * k:+.{n}f}]",
             f"bootstrap {_confidence(study)}%": f"[{c.bootstrap.low * k:+.{n}f}, {c.bootstrap.high * k:+.{n}f}]",
             "p": f"{c.difference.p_value:.3g}", "p (Holm)": f"{c.p_holm:.3g}", "verdict": c.verdict}
            for c in study.comparisons]


def iso_rows(study: Study) -> list[dict[str, str]]:
    """Per pattern and recipe: training FLOPs to reach the reference's mean final value."""
    ref, k, n = study.reference, study.metric.scale, _digits(study)
    return [{"pattern": str(it.pattern), "target": f"{it.target * k:.{n}f}", "recipe": it.label,
             "FLOPs to target": _fmt_flops(it.flops_to_target),
             f"ratio to {ref}": "—" if it.ratio is None else f"{it.ratio:.2f}",
             "run's total FLOPs": _fmt_flops(it.total_flops)} for it in study.iso]


def tuned_rows(study: Study) -> list[dict[str, str]]:
    """Per tuned cell: the value picked and every value's mean ± std (n) of the validation quality."""
    k, digits = study.metric.scale, _digits(study)
    values = sorted({v for c in study.tuned.values() for v in c.candidates})
    def text(s: Summary) -> str:
        return Summary(s.mean * k, s.std * k, s.n).text(digits)

    return [{"recipe": label, "pattern": "dense" if p.is_dense else str(p), f"best {study.tuned_param}": f"{c.value:g}",
             **{f"{v:g}": text(c.candidates[v]) if v in c.candidates else "—" for v in values}}
            for (label, p), c in study.tuned.items()]


def noise_rows(study: Study) -> list[dict[str, str]]:
    """Per cell with diagnostics: each noise statistic, mean ± std over seeds."""
    return [{"recipe": label, "pattern": str(p),
             **{k: f"{per[k].mean:.3g} ± {per[k].std:.2g}" if k in per else "—" for k in NOISE_KEYS}}
            for (label, p), per in study.noise.items() if per]


def noise_trend_rows(study: Study, key: str = "grad_var_kept") -> list[dict[str, str]]:
    """Per recipe label: one noise statistic (mean over seeds) at every pattern, densest first, so
    a row reads as "how the gradient noise changes with sparsity" (dense: its one value)."""
    rows = []
    for label in study.labels():
        row, seen = {"recipe": label}, False
        for p in study.patterns():
            cell = _cell(study, label, p)
            per = study.noise.get((cell.label, cell.pattern), {}) if cell else {}
            row[str(p)] = f"{per[key].mean:.3g}" if key in per else "—"
            seen = seen or key in per
        if seen:
            rows.append(row)
    return rows


def _digits(study: Study) -> int:
    """Decimals of the displayed metric: 3 for bpc / loss, 2 for accuracy shown in percent."""
    return 2 if study.metric.scale != 1.0 else 3


def _confidence(study: Study) -> int:
    return round(study.comparisons[0].difference.confidence * 100) if study.comparisons else 95


def caption(study: Study) -> str:
    """One sentence: what the study holds (runs, wall time, metric and its direction)."""
    m = study.metric
    better = "higher" if m.higher_is_better else "lower"
    view = ""
    if study.tuned_param:
        view += f"tuned view: each recipe and pattern at its best {study.tuned_param} (picked on validation), "
    if study.fixed:
        view += ("untuned view: " if not study.tuned_param else "with ") + ", ".join(
            f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in study.fixed.items()) + ", "
    return (f"Sweep `{study.sweep}` ({view.rstrip(', ')}): " if view else f"Sweep `{study.sweep}`: ") + (
            f"{SPLIT_NAMES[study.split]} {m.label} ({m.unit}, {better} is better)"
            + (" of each run's final model (the split no pick used)" if study.split == "test" else "") + ", "
            f"{sum(len(c.runs) for c in study.cells.values())} finished runs"
            + (f", {study.unfinished} not finished" if study.unfinished else "")
            + f", wall time {study.wall_s / 60:.0f} min from first start to last finish.")


def verdicts(study: Study) -> dict[str, list[str]]:
    """``better`` / ``worse`` / ``undecided`` -> the "recipe pattern" comparisons with that verdict."""
    out: dict[str, list[str]] = {"better": [], "worse": [], "undecided": []}
    for c in study.comparisons:
        out[c.verdict].append(f"{c.label} {c.pattern}")
    return out


def headings(study: Study) -> dict[str, str]:
    """The titles of the four tables (shared by the Markdown and the HTML report)."""
    ref = study.reference
    split = "" if study.split == "val" else f", {SPLIT_NAMES[study.split]} split"
    return {"quality": f"Quality per recipe and pattern (mean ± std over seeds, n{split})",
            "difference": (f"Difference to {ref}{split} (Welch {_confidence(study)}% interval; Holm-corrected over "
                           f"{len(study.comparisons)} comparisons, alpha {study.alpha}; percentile bootstrap "
                           f"interval beside it, B = 10000, seed 0)"),
            "tuned": (f"Tuned {study.tuned_param}: the value with the best mean validation quality per recipe and "
                      "pattern (mean ± std (n) of every value)"),
            "iso": (f"Iso-FLOPs: training FLOPs to reach {ref}'s mean final validation value (seed-mean validation "
                    "curve; a mid-run point scores the model as it trains, e.g. MDGF's pruned weights still scaled "
                    "by beta, not yet its N:M finalization)"),
            "noise": "Gradient noise (sparsified layers; mean over layers and windows, then ± std over seeds)",
            "trend": ("Gradient variance of the kept weights by pattern (grad_var_kept, mean over seeds): "
                      "does it grow with sparsity?")}


def _md_table(rows: Sequence[dict[str, str]]) -> list[str]:
    if not rows:
        return ["(none)"]
    keys = list(rows[0])
    return (["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            + ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows])


def markdown(study: Study) -> str:
    """The study's tables as Markdown."""
    head = headings(study)
    lines = [caption(study), ""]
    tables = [("tuned", tuned_rows(study))] if study.tuned else []
    for key, rows in (*tables, ("quality", quality_rows(study)), ("difference", comparison_rows(study)),
                      ("iso", iso_rows(study)), ("trend", noise_trend_rows(study)), ("noise", noise_rows(study))):
        lines += [f"### {head[key]}", "", *_md_table(rows), ""]
    return "\n".join(lines[:-1]) + "\n"


def view_name(study: Study) -> str:
    """``"lr 0.003"`` / ``"tuned lr"`` / ``"all points"``: which view of its sweep a study is."""
    fixed = ", ".join(f"{k.rsplit('.', 1)[-1]} {v:g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in study.fixed.items())
    if study.tuned_param:
        return f"tuned {study.tuned_param.rsplit('.', 1)[-1]}" + (f" ({fixed} fixed)" if fixed else "")
    return fixed or "all points"


def across_rows(studies: Sequence[Study]) -> list[dict[str, str]]:
    """One row per comparison of every study (several sweeps, or views of one): the sweep, the view,
    the recipe (with its tuned value), both means, the difference with Welch's and the bootstrap
    interval, and the Holm verdict within that study's own family. Dense rows are left out when the
    study has a sparse pattern to compare at (the dense gap is in each study's own tables)."""
    rows = []
    for st in studies:
        k, n = st.metric.scale, _digits(st)
        for c in st.comparisons:
            if c.label == "dense":
                continue
            choice = st.tuned.get((c.label, c.pattern))
            ref_choice = st.tuned.get((st.reference, c.pattern))
            def at(label: str, ch: TunedChoice | None) -> str:
                return label if ch is None else f"{label} ({st.tuned_param.rsplit('.', 1)[-1]} {ch.value:g})"
            rows.append({"sweep": st.sweep, "view": view_name(st), "split": SPLIT_NAMES[st.split],
                         "recipe": at(c.label, choice), "pattern": str(c.pattern),
                         "recipe's mean": Summary(c.cell.mean * k, c.cell.std * k, c.cell.n).text(n),
                         "reference": at(st.reference, ref_choice),
                         "reference's mean": Summary(c.reference.mean * k, c.reference.std * k, c.reference.n).text(n),
                         "difference (Welch 95%)": f"{c.difference.diff * k:+.{n}f} [{c.difference.low * k:+.{n}f}, "
                                                   f"{c.difference.high * k:+.{n}f}]",
                         "bootstrap 95%": f"[{c.bootstrap.low * k:+.{n}f}, {c.bootstrap.high * k:+.{n}f}]",
                         "Holm p (family)": f"{c.p_holm:.2g} ({len(st.comparisons)})", "verdict": c.verdict,
                         "detectable (80% power, α/m)": f"{detectable(c.cell, c.reference, st.alpha / len(st.comparisons)) * k:.{n}f}"})
    return rows


def across_markdown(studies: Sequence[Study]) -> str:
    """The across-sweeps table as Markdown, with a caption that says how to read it."""
    if not studies:
        return ""
    ref = studies[0].reference
    lines = [f"### Across sweeps: every recipe against {ref}, per sweep and view", "",
             "Means are of each run's final model on the split named; the Holm family is each sweep view's own "
             "comparisons (its size in brackets), so verdicts are not corrected across rows of different "
             "sweeps. \"Detectable\" is the smallest true difference these seeds would declare with 80% "
             "probability at Holm's strictest level (alpha / family size), from the observed spreads: a gap "
             "smaller than it can hide in seed noise.", "", *_md_table(across_rows(studies))]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- figures
def figures(study: Study) -> list[tuple[str, Any]]:
    """(name, plotly figure): quality per cell, difference to the reference, validation vs FLOPs,
    gradient variance over training."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    import plotly.express as px

    m = study.metric
    pats = study.patterns()
    labels = [l for l in study.labels() if l != "dense"]
    palette = px.colors.qualitative.Alphabet  # 26 distinct colours
    color = {label: palette[i % len(palette)] for i, label in enumerate(study.labels())}  # same in every panel
    out = []
    fig = go.Figure()
    for p in pats:
        xs, ys, es = [], [], []
        for label in labels:
            cell = study.cells.get((label, p))
            if cell and cell.runs:
                s = summary([v * m.scale for v in cell.values])
                xs.append(label), ys.append(s.mean), es.append(s.std)
        fig.add_trace(go.Scatter(x=xs, y=ys, error_y=dict(type="data", array=es), mode="markers", name=str(p),
                                 marker=dict(size=9)))
    dense = study.cells.get(("dense", NM(1, 1)))
    if dense and dense.runs:
        fig.add_hline(y=summary(dense.values).mean * m.scale, line_dash="dot", annotation_text="dense")
    fig.update_layout(title=f"Final {SPLIT_NAMES[study.split]} {m.label} per recipe (mean ± std over seeds)",
                      yaxis_title=m.axis_label, height=480)
    out.append(("quality", fig))

    fig = go.Figure()
    for p in pats:
        cs = [c for c in study.comparisons if c.pattern == p]
        fig.add_trace(go.Scatter(
            x=[c.difference.diff * m.scale for c in cs], y=[c.label for c in cs], mode="markers", name=str(p),
            error_x=dict(type="data", symmetric=False,
                         array=[(c.difference.high - c.difference.diff) * m.scale for c in cs],
                         arrayminus=[(c.difference.diff - c.difference.low) * m.scale for c in cs]),
            marker=dict(size=9)))
    fig.add_vline(x=0.0, line_dash="dot")
    fig.update_layout(title=f"Difference to {study.reference} with Welch 95% interval "
                            f"({'negative' if not m.higher_is_better else 'positive'} is better)",
                      xaxis_title=f"{m.label} − {study.reference} ({m.unit})", height=560)
    out.append(("difference", fig))

    fig = make_subplots(rows=1, cols=len(pats), subplot_titles=[str(p) for p in pats], shared_yaxes=True)
    for j, p in enumerate(pats, start=1):
        for (label, cp), (xs, ys) in study.curves.items():
            if cp == p or (label == "dense" and cp.is_dense):
                fig.add_trace(go.Scatter(x=[x / 1e9 for x in xs], y=[y * m.scale for y in ys], mode="lines+markers",
                                         name=label,
                                         legendgroup=label, showlegend=j == 1, line=dict(color=color[label])),
                              row=1, col=j)
        ref = study.cells.get((study.reference, p))
        if ref and ref.runs:  # the iso-FLOPs target: the validation mean (these are validation curves)
            fig.add_hline(y=summary(ref.val_values).mean * m.scale, line_dash="dot", row=1, col=j)
        fig.update_xaxes(title_text="cumulative training GFLOP", row=1, col=j)
    fig.update_yaxes(title_text=f"validation {m.label} ({m.unit})", row=1, col=1)
    window = iso_y_range([y * m.scale for _, ys in study.curves.values() for y in ys], m)
    if window is not None:
        fig.update_yaxes(range=list(window))
    fig.update_layout(title=f"Iso-FLOPs: seed-mean validation {m.label} vs training FLOPs "
                            f"(dotted: {study.reference}'s final mean"
                            + ("; early and post-pruning spikes run off the axis" if window is not None else "")
                            + ")", height=520)
    out.append(("iso_flops", fig))

    fig = make_subplots(rows=1, cols=len(pats), subplot_titles=[str(p) for p in pats], shared_yaxes=True)
    for j, p in enumerate(pats, start=1):
        for (label, cp), per in study.noise_curves.items():
            if "grad_var" in per and (cp == p or (label == "dense" and cp.is_dense)):
                steps, vals = per["grad_var"]
                fig.add_trace(go.Scatter(x=steps, y=vals, mode="lines+markers", name=label, legendgroup=label,
                                         showlegend=j == 1, line=dict(color=color[label])), row=1, col=j)
        fig.update_xaxes(title_text="training step", row=1, col=j)
    fig.update_yaxes(title_text="gradient variance per weight", type="log", row=1, col=1)
    fig.update_yaxes(type="log")
    fig.update_layout(title="Gradient noise over training (sparsified layers, mean over layers and seeds)", height=520)
    out.append(("grad_noise", fig))
    return out


def iso_y_range(values: Sequence[float], metric: Metric, keep: float = 0.8) -> tuple[float, float] | None:
    """The y window of the iso-FLOPs panels: from the best value to the ``keep`` quantile towards
    the worst (plus 5% margins), so that the first evaluations and the spike after a one-shot
    prune, far worse than where the curves meet, do not squash the region the comparison is
    about. None when nothing would be cut."""
    ys = sorted((v for v in values if math.isfinite(v)), key=metric.oriented, reverse=True)  # best first
    if len(ys) < 5:
        return None
    best, edge = ys[0], ys[min(len(ys) - 1, int(keep * (len(ys) - 1)))]
    if edge == ys[-1]:
        return None
    pad = 0.05 * abs(edge - best)
    lo, hi = sorted((best, edge))
    return lo - pad, hi + pad


def write(study: Study, out: Path) -> list[Path]:
    """``out/study_tables.md`` (the tables) and ``out/<figure>.png`` per figure (plotly's static
    export through kaleido, which drives an installed Chrome/Chromium)."""
    from ...core.files import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    md = out / "study_tables.md"
    atomic_write(md, markdown(study))
    return [md, *write_figures(figures(study), out)]


def write_figures(figs: Sequence[tuple[str, Any]], out: Path) -> list[Path]:
    """``out/<name>.png`` per (name, figure); none, with a note saying why, when kaleido or a
    Chrome/Chromium for it is missing."""
    import plotly.io as pio

    paths = [out / f"{name}.png" for name, _ in figs]
    try:  # one batch: kaleido starts its browser once
        pio.write_images([f for _, f in figs], paths, width=1300, height=[f.layout.height for _, f in figs], scale=1.5)
    except (ImportError, ValueError, RuntimeError) as exc:
        print(f"pgf-sim: figures skipped ({type(exc).__name__}: {str(exc).splitlines()[0]}); they need "
              "kaleido and Chrome/Chromium (`apt-get install chromium`)")
        return []
    return paths


def across_figure(studies: Sequence[Study]) -> Any:
    """Each recipe's difference to the reference with its Welch 95% interval, one x position per
    sweep view (and pattern): how a ranking moves across sweeps, e.g. the widths of a width arm."""
    import plotly.graph_objects as go

    m = studies[0].metric
    fig = go.Figure()
    by_label: dict[str, list[tuple[str, Comparison]]] = defaultdict(list)
    for st in studies:
        for c in st.comparisons:
            if c.label != "dense":
                by_label[c.label].append((f"{st.sweep}<br>{view_name(st)}, {c.pattern}", c))
    for label, items in by_label.items():
        cs = [c for _, c in items]
        fig.add_trace(go.Scatter(
            x=[x for x, _ in items], y=[c.difference.diff * m.scale for c in cs], mode="markers", name=label,
            error_y=dict(type="data", symmetric=False, array=[(c.difference.high - c.difference.diff) * m.scale for c in cs],
                         arrayminus=[(c.difference.diff - c.difference.low) * m.scale for c in cs]),
            marker=dict(size=10)))
    fig.add_hline(y=0.0, line_dash="dot")
    better = "below" if not m.higher_is_better else "above"
    splits = sorted({SPLIT_NAMES[st.split] for st in studies})
    fig.update_layout(title=f"Difference to {studies[0].reference} per sweep ({' / '.join(splits)} split), Welch 95% "
                            f"interval ({better} 0: the recipe is better)", yaxis_title=f"{m.label} − {studies[0].reference} ({m.unit})",
                      height=520, scattermode="group")
    return fig
