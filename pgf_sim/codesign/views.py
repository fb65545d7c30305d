"""Views of the result store for the co-design commands: the candidate table of a sweep, the
picks, the fronts as text, the report's data, and design-space exploration over trained runs.

Everything here reads the database (training tables of ``pgf_sim.store`` + the sweep tables of
``results``) and hands plain values to C1's ``pareto`` / ``pick`` / ``report`` / ``dse``.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core import NM, ConfigError
from ..core.metric import ACCURACY
from . import results
from .pareto import ResultTable, aggregate_seeds, fronts
from .pick import NoFeasibleCandidate, Pick, pick
from .quality import metric_limit, sweep_metric, test_metric

GRAD_NOISE_KEYS = ("grad_var", "grad_diff")  # positive quantities: the report draws them on log axes


def _store(db: Any):
    from ..store import ResultStore

    if not Path(db).is_file():
        raise ConfigError(f"no result database at {db}; run `pgf-sim sweep` or `pgf-sim run` first")
    return ResultStore(db)


COST_MODELS = ("trained", "deploy")


@dataclass(frozen=True)
class CostModel:
    """Which simulated cost a view of a sweep uses: ``trained`` (the trained model itself, real
    masks) or ``deploy`` (the deployment-scale proxy of ``deploy.py``). ``label``: a short tag
    shown beside every number; ``note``: the sentence that says where accuracy and cost come from."""

    name: str
    key: str
    label: str
    note: str


def cost_models(db: Any, sweep: str | None) -> list[CostModel]:
    """The cost views a sweep has: always ``trained``, plus ``deploy`` when its config names a
    ``simulate.deploy_model`` (sweeps recorded before the proxy existed have only ``trained``)."""
    from .deploy import spec_from_config

    info = results.sweep_info(_store(db), sweep)
    sim = info["config"].get("simulate", {})
    out = [CostModel("trained", info["sim_key"], f"cost model: trained model ({info['sim_key']})",
                     f"Accuracy and cost both come from the trained models themselves: each run's real per-layer "
                     f"masks simulated per inference ({info['sim_key']}).")]
    spec = spec_from_config(info["config"])
    if spec is not None:
        out.append(CostModel("deploy", spec.key, f"cost model: DEPLOYMENT PROXY {spec.describe()}",
                             f"Deployment-scale proxy: accuracy comes from the small trained model of the sweep; cost "
                             f"comes from the same recipe's per-role N:M patterns (MLP and q/k/v layers) applied to "
                             f"the built-in {spec.model} architecture ({spec.describe()}), which was not trained. "
                             f"The trained model is too small to load the hardware, so its own cost hardly depends "
                             f"on the pattern; the proxy shows what the pattern costs at deployment scale."))
    return out


def cost_model(db: Any, sweep: str | None, name: str = "trained") -> CostModel:
    """One of ``cost_models``; asking for ``deploy`` on a sweep without one says how to add it."""
    if name not in COST_MODELS:
        raise ConfigError(f"unknown cost model {name!r}; valid: {', '.join(COST_MODELS)}")
    found = {m.name: m for m in cost_models(db, sweep)}
    if name not in found:
        sweep_name = results.sweep_info(_store(db), sweep)["sweep"]
        raise ConfigError(f"sweep {sweep_name!r} has no deployment-proxy cost: add `deploy_model: vit_b` (and "
                          f"`deploy_batch`) to its simulate section and rerun `pgf-sim sweep` on it (finished runs "
                          f"are only costed, not retrained)")
    return found[name]


def load_table(db: Any, sweep: str | None, cost: CostModel | None = None) -> ResultTable:
    """Candidates (accuracy mean/std over seeds + simulated costs) of a sweep, all targets;
    costs of ``cost`` (default: the trained models' own)."""
    store = _store(db)
    name = results.sweep_info(store, sweep)["sweep"]
    rows = results.candidate_rows(store, name, None if cost is None else cost.key)
    if not rows:
        what = "" if cost is None or cost.name == "trained" else " with deployment-proxy costs (rerun the sweep to add them)"
        raise ConfigError(f"sweep {name!r} in {db} has no finished runs{what} yet; run it first")
    return aggregate_seeds(rows, sweep_metric(store, name))


def accuracy_floor(table: ResultTable, hw: str, max_drop: float) -> tuple[float, str]:
    """The worst acceptable metric value: the dense baseline's mean (or the best mean without
    one) worsened by ``max_drop`` (accuracy: minus; bpc/loss/perplexity: plus)."""
    m = table.metric
    rows = [c for c in table.where(hardware=hw) if not math.isnan(c.accuracy_mean)]
    dense = [c for c in rows if isinstance(c.pattern, NM) and c.pattern.is_dense]
    ref = max(dense or rows, key=lambda c: m.oriented(c.accuracy_mean))
    what = "the dense baseline" if dense else f"the best candidate ({ref.label})"
    floor = ref.accuracy_mean - max_drop if m.higher_is_better else ref.accuracy_mean + max_drop
    return floor, f"{m.label} within {m.fmt_delta(max_drop)} of {what} ({m.fmt(ref.accuracy_mean)})"


def make_picks(table: ResultTable, hws: Sequence[str] | None, args: Any, *, objective: str | None = None,
               model: str | None = None, cost: CostModel | None = None) -> tuple[list[Pick], list[str]]:
    """One pick per target. Without any limit, ``args.max_drop`` (when present) sets the
    minimum accuracy relative to the dense baseline and the objective is latency. ``cost``:
    the view the table holds; its label ends every explanation and error."""
    picks, errors = [], []
    m = table.metric
    store = getattr(args, "db", None) and Path(args.db).is_file() and _store(args.db)
    for hw in hws or table.hardware_names():
        limit = metric_limit(args, m)
        no_limits = limit is None and args.max_latency is None and args.max_energy is None
        max_drop = getattr(args, "max_drop", None)
        if no_limits and max_drop is not None:
            limit, why = accuracy_floor(table, hw, m.default_budget if max_drop == "auto" else max_drop)
            print_note = f"(on {hw}: {why})"
        else:
            print_note = ""
        try:
            p = pick(table, hw, metric_limit=limit, max_latency_s=args.max_latency, max_energy_j=args.max_energy,
                     objective=objective, model=model)
            test = test_metric(store, p.best, m) if store else (float("nan"),) * 2
            test_note = (f"(test {m.label} of the pick, reported only, never used to choose: {m.fmt(*test)})"
                         if not math.isnan(test[0]) else "")
            tags = " ".join(t for t in (test_note, print_note, f"[{cost.label}]" if cost else "") if t)
            if tags:
                p = replace(p, explanation=f"{p.explanation} {tags}")
            picks.append(p)
        except NoFeasibleCandidate as exc:
            errors.append(f"{exc} [{cost.label}]" if cost else str(exc))
    return picks, errors


def format_fronts(table: ResultTable, metric: str = "latency_s", cost: CostModel | None = None) -> str:
    """The quality-vs-``metric`` front of every target, as text (cheapest first)."""
    lines = []
    m = table.metric
    tag = f" [{cost.label}]" if cost else ""
    for (hw, _), front in fronts(table, (metric,)).items():
        lines.append(f"Pareto front on {hw}, {m.label} ({m.unit}, validation, mean ± std over seeds; "
                     f"{'higher' if m.higher_is_better else 'lower'} is better) vs {metric}{tag}:")
        for c in front.candidates(table):
            weights = f"{c.weight_bytes / 1e6:8.2f} MB" if c.weight_bytes >= 1e6 else f"{c.weight_bytes / 1e3:8.2f} kB"
            lines.append(f"  {c.label:<28} {m.name} {m.fmt(c.accuracy_mean, c.accuracy_std):<24} n={c.n_seeds}  "
                         f"latency {c.latency_s * 1e6:9.3f} us  energy {c.energy_j * 1e6:9.3f} uJ  "
                         f"weights {weights}")
        for _, why in front.excluded:
            lines.append(f"  (left off: {why})")
    return "\n".join(lines)


def print_fronts(table: ResultTable, metrics: Sequence[str] = ("latency_s", "energy_j"),
                 cost: CostModel | None = None) -> None:
    for metric in metrics:
        print(format_fronts(table, metric, cost))


def format_pattern_costs(table: ResultTable, cost: CostModel | None = None) -> str:
    """Cost per N:M pattern on every target (lowest over recipes; in the deployment proxy every
    recipe of a pattern costs the same), so the spread the fronts trade against is visible."""
    lines = [f"cost per pattern{f' [{cost.label}]' if cost else ''}:"]
    for hw in table.hardware_names():
        best: dict[str, Any] = {}
        for c in table.where(hardware=hw):
            if not math.isnan(c.latency_s) and (c.pattern_text not in best or c.latency_s < best[c.pattern_text].latency_s):
                best[c.pattern_text] = c
        cells = [f"{pat} {c.latency_s * 1e3:.4g} ms / {c.energy_j * 1e3:.4g} mJ"
                 for pat, c in sorted(best.items(), key=lambda kv: -kv[1].latency_s)]
        lines.append(f"  {hw:<18} " + ";  ".join(cells))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ report
@dataclass(frozen=True)
class CostViewData:
    """One cost view of a sweep for the report: its cost model, candidates and picks."""

    cost: CostModel
    table: ResultTable
    picks: Sequence[Pick]
    errors: Sequence[str]


def build_report_data(db: Any, sweep: str, views: Sequence[CostViewData], pattern_gains: Sequence[Any] = ()):
    """Fill C1's ``ReportData`` from the store: per cost view (trained model, deployment proxy)
    the results, picks and per-layer breakdowns (the pick and the dense baseline per target);
    gradient-noise and training curves (mean over seeds), and the native-pattern answers of
    ``native_gains``."""
    from .report import CostSection, ReportData

    store = _store(db)
    info = results.sweep_info(store, sweep)
    points = results.sweep_points(store, sweep)
    sections = [CostSection(f"Cost model: {v.cost.label.removeprefix('cost model: ')}", v.cost.note, v.table,
                            list(v.picks), list(v.errors), _breakdowns(store, v))
                for v in views]
    n_runs = len(points)
    finished = sum(1 for pt in points if (store.get_run(pt["run_id"]) or {}).get("status") == "finished")
    meta = {"sweep": sweep, "database": str(db), "runs": f"{finished} finished of {n_runs}",
            "hardware targets": ", ".join(info["hardware"])}
    meta.update({f"cost model {v.cost.name}": v.cost.key for v in views})
    v0 = views[0] if views else None
    if v0 is not None:
        meta["quality metric"] = v0.table.metric.axis_label
    return ReportData(
        title=f"pgf_sim co-design report: {sweep}",
        cost_views=sections,
        grad_noise=_grad_noise_curves(store, points), training_curves=_training_curves(store, points),
        pattern_gains=list(pattern_gains),
        meta=meta,
        notes=[f"Quality is the {(v0.table.metric if v0 else ACCURACY).axis_label} of the final (masked) trained model "
               "on the validation split, mean ± std over seeds (picks are made on it; test numbers are reported beside "
               "the picks). "
               + " ".join(v.cost.note for v in views)],
    )


def _breakdowns(store: Any, view: CostViewData) -> list:
    from .report import LayerBreakdown

    out, seen = [], set()
    for p in view.picks:  # the latency and the energy pick of a target are often the same run: draw it once
        shown = [p.best] + [c for c in view.table.where(hardware=p.hardware)
                            if isinstance(c.pattern, NM) and c.pattern.is_dense and c is not p.best][:1]
        for cand in shown:
            if not cand.run_ids or (p.hardware, cand.label) in seen:
                continue
            seen.add((p.hardware, cand.label))
            rows = results.sim_layers(store, cand.run_ids[0], p.hardware, view.cost.key)
            weight_rows = [r for r in rows if r["kind"] == "gemm"]
            if weight_rows:
                tag = "" if view.cost.name == "trained" else f", {view.cost.name} proxy"
                out.append(LayerBreakdown(p.hardware, f"{cand.label} ({'pick' if cand is p.best else 'dense'}{tag})",
                                          [r["layer"] for r in weight_rows], [r["latency_s"] for r in weight_rows],
                                          [r["energy_j"] for r in weight_rows], [r["bound"] for r in weight_rows]))
    return out


def _group_label(point: dict[str, Any]) -> str:
    pattern = "dense" if NM.parse(point["pattern"]).is_dense else point["pattern"]
    head = f"{point['model']} " if point["model"] else ""
    return f"{head}{results.recipe_label(point['recipe'], point['params'])} {pattern}"


def _mean_curves(series: dict[str, list[dict[int, float]]], group: str) -> list:
    """label -> per-seed {step: value} -> Curves of the mean (± std where > 1 seed)."""
    from .report import Curve

    out = []
    for label, per_seed in series.items():
        steps = sorted(set().union(*per_seed))
        vals = np.array([[s.get(t, np.nan) for t in steps] for s in per_seed])
        mean = np.nanmean(vals, axis=0)
        std = np.nanstd(vals, axis=0, ddof=1) if len(per_seed) > 1 else None
        out.append(Curve(label, steps, mean.tolist(), group, None if std is None else np.nan_to_num(std).tolist()))
    return out


def _training_curves(store: Any, points: Sequence[dict[str, Any]]) -> list:
    curves = []
    from ..train.experiment import metric_of

    first = store.get_run(points[0]["run_id"]) if points else None
    key_eval = f"val_{metric_of(first['config']).name}" if first else "val_accuracy"
    for key, group in (("train_loss", "train loss"), (key_eval, f"validation {key_eval[4:]}")):
        series: dict[str, list[dict[int, float]]] = defaultdict(list)
        for pt in points:
            vals = {step: v for step, _, v in store.run_metrics(pt["run_id"], key)}
            if vals:
                series[_group_label(pt)].append(vals)
        if key == key_eval and all(len(s) == 1 for ss in series.values() for s in ss):
            continue  # only the final evaluation: the Pareto plots already show it
        curves += _mean_curves(series, group)
    return curves


def _grad_noise_curves(store: Any, points: Sequence[dict[str, Any]]) -> list:
    curves = []
    for key in GRAD_NOISE_KEYS:
        series: dict[str, list[dict[int, float]]] = defaultdict(list)
        for pt in points:
            per_step: dict[int, list[float]] = defaultdict(list)
            for step, _, _, v in store.run_diagnostics(pt["run_id"], key=key):
                if math.isfinite(v) and v > 0:
                    per_step[step].append(v)
            if per_step:  # mean over the run's sparse layers (fc1/fc2 by default)
                series[_group_label(pt)].append({s: float(np.mean(v)) for s, v in per_step.items()})
        curves += _mean_curves(series, f"{key} (mean over layers)")
    return curves


# ------------------------------------------------------------------------------ dse
def trained_workloads(db: Any, sweep: str | None, workdir: Path, *, dtype: str = "fp16",
                      recipe: str | None = None, pattern: NM | None = None) -> dict[str, Any]:
    """The seed-0 (lowest seed) finished run of each (model, recipe, pattern) of a sweep, captured
    with its real masks at the sweep's inference batch: ``{"<label>": Workload}``; optionally
    only one recipe label and/or pattern."""
    from ..sim.capture import capture
    from ..train.trainer import example_input, load_trained

    store = _store(db)
    info = results.sweep_info(store, sweep)
    batch = int(info["config"]["simulate"]["batch"])
    chosen: dict[str, dict[str, Any]] = {}
    for pt in sorted(results.sweep_points(store, info["sweep"]), key=lambda p: p["seed"]):
        if (recipe is not None and pt["recipe"] != recipe) or (pattern is not None and NM.parse(pt["pattern"]) != pattern):
            continue
        run = store.get_run(pt["run_id"])
        if run and run["status"] == "finished":
            chosen.setdefault(_group_label(pt), pt)
    out = {}
    for label, pt in chosen.items():
        model, cfg = load_trained(Path(workdir) / pt["run_id"])
        out[f"trained {label}"] = capture(model, (example_input(cfg, batch),), dtype=dtype, name=label)
    if not out:
        raise ConfigError(f"sweep {info['sweep']!r} has no finished runs to explore with")
    return out


def native_gains(db: Any, sweep: str, workdir: Path) -> list:
    """"Is native support of pattern P worth it?" for the sweep's first target with N:M support:
    each sparse grid pattern it lacks, costed with the models trained at P (seed 0 of the MDGF
    runs, or of the first sparse recipe when the sweep has no MDGF)."""
    from ..sim.hardware import load_hardware
    from .dse import native_pattern_gain

    store = _store(db)
    info = results.sweep_info(store, sweep)
    targets = [(label, load_hardware(spec)) for label, spec in info["hardware_specs"]]
    target = next(((label, hw) for label, hw in targets if hw.sparse.native_patterns), None)
    points = results.sweep_points(store, sweep)
    sparse = [p for p in points if not NM.parse(p["pattern"]).is_dense]
    if target is None or not sparse:
        return []
    recipe = "mdgf" if any(p["recipe"] == "mdgf" for p in sparse) else sparse[0]["recipe"]
    label, hw = target
    gains = []
    for pattern in sorted({NM.parse(p["pattern"]) for p in sparse}, key=lambda p: -p.density):
        if pattern in hw.sparse.native_patterns:
            continue
        try:
            workloads = trained_workloads(db, sweep, workdir, recipe=recipe, pattern=pattern)
        except ConfigError:
            continue  # no finished run at this pattern yet
        gains.append(native_pattern_gain(hw, pattern, workloads))
    return gains


def run_dse(args: Any) -> str:
    from ..sim.hardware import load_hardware
    from .dse import builtin_workloads, explore, native_pattern_gain

    base = load_hardware(args.hw)
    workloads: dict[str, Any] = {}
    if args.model:
        workloads.update(builtin_workloads(args.model, args.pattern or ["dense"], batch=args.batch, seq_len=args.seq_len))
    elif args.pattern:
        raise ConfigError("--pattern applies to --model; give a built-in model (e.g. --model vit_b)")
    if args.trained:
        workloads.update(trained_workloads(args.db, args.sweep, args.workdir))
    if not workloads:
        raise ConfigError("nothing to explore with: give --model NAME [--pattern N:M] and/or --trained")
    res = explore(base, args.sets, workloads)
    lines = [res.format_table(), ""]
    for w in res.workloads:
        lines.append(f"best for {w}: latency -> {res.best(w, 'latency_s').name}; energy -> {res.best(w, 'energy_j').name}")
    if args.native:
        lines += ["", native_pattern_gain(base, args.native, workloads).statement()]
    return "\n".join(lines)
