"""Views of the result store for the co-design commands: the candidate table of a sweep, the
picks, the fronts as text, the report's data, and design-space exploration over trained runs.

Everything here reads the result database through ``pgf_sim.store`` (typed rows; it never
creates a database) and hands plain values to ``pareto`` / ``pick`` / ``report`` / ``dse``.
Library functions take typed arguments (``PickLimits``, ``TrainedSource``); the command line
(``cli.py``) turns its flags into them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from ...core import DENSE, NM, ConfigError
from ...core.metric import ACCURACY
from ...store import PointRow
from ..decide.pareto import ResultTable, aggregate_seeds, fronts
from ..decide.pick import NoFeasibleCandidate, Pick, pick
from ..decide.quality import metric_limit, sweep_metric, test_metric
from ..report.report_curves import run_label
from ..run import results


def _store(db: Any):
    """The existing result database ``db`` (a path or an open ``ResultStore``); never creates one."""
    from ...store import ResultStore

    return db if isinstance(db, ResultStore) else ResultStore(db, create=False, read_only=True)


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
    runtime: str = "eager"  # sim.cost.RUNTIMES: how every op of this view was priced

    @property
    def slug(self) -> str:
        """A file-name tag: the view's name, and its runtime where that is not eager."""
        return self.name if self.runtime == "eager" else f"{self.name}_{self.runtime}"


RUNTIME_NOTES = {
    "eager": "framework eager mode: every op its own kernel, issued by the host at a per-op cost that the GPU hides "
             "only when its kernels are longer",
    "graph": "CUDA graphs / torch.compile reduce-overhead: every op its own kernel, no host cost",
    "fused": "a serving engine: graph replay, element-wise ops fused into their producer, FlashAttention",
}


def cost_models(db: Any, sweep: str | None) -> list[CostModel]:
    """The cost views a sweep has, per runtime of its ``simulate.runtime`` (the default first):
    always ``trained``, plus ``deploy`` when its config names a ``simulate.deploy_model``
    (sweeps recorded before the proxy existed have only ``trained``; before runtimes, eager)."""
    from ..run.sweep import simulate_spec

    info = _store(db).sweep_info(sweep)
    sim = simulate_spec(info.config)
    out = []
    for i, (runtime, key) in enumerate(sim.keys()):
        key = info.sim_key if i == 0 else key  # the stored key of the sweep's default view
        how = f"{runtime} runtime ({RUNTIME_NOTES[runtime]})"
        out.append(CostModel("trained", key, f"cost model: trained model (batch={sim.batch}, {sim.dtype}), {runtime} runtime",
                             f"Quality (the task metric) and cost both come from the trained models themselves: each run's "
                             f"real per-layer masks simulated per inference (batch {sim.batch}, {sim.dtype}), priced "
                             f"in the {how}.", runtime))
        spec = sim.deploy_spec(runtime)
        if spec is not None:
            out.append(CostModel("deploy", spec.key, f"cost model: DEPLOYMENT PROXY {spec.describe()}",
                                 f"Deployment-scale proxy: quality (the task metric) comes from the small trained model of the sweep; cost "
                                 f"comes from the same recipe's per-role N:M patterns (MLP and q/k/v layers) applied to "
                                 f"the built-in {spec.model} architecture ({spec.describe()}), which was not trained, priced "
                                 f"in the {how}. The trained model is too small to load the hardware, so its own cost "
                                 f"hardly depends on the pattern; the proxy shows what the pattern costs at deployment scale.",
                                 runtime))
    return out


def cost_model(db: Any, sweep: str | None, name: str = "trained", runtime: str | None = None) -> CostModel:
    """One of ``cost_models`` (``runtime`` default: the sweep's default); asking for a view or a
    runtime the sweep lacks says how to add it."""
    if name not in COST_MODELS:
        raise ConfigError(f"unknown cost model {name!r}; valid: {', '.join(COST_MODELS)}")
    views = cost_models(db, sweep)
    runtime = runtime or views[0].runtime
    found = {m.name: m for m in views if m.runtime == runtime}
    sweep_name = _store(db).sweep_info(sweep).sweep
    if not found:
        have = sorted({m.runtime for m in views})
        raise ConfigError(f"sweep {sweep_name!r} has no {runtime} runtime cost (it has: {', '.join(have)}): add it to "
                          f"`runtime:` in its simulate section (e.g. runtime: [{have[0]}, {runtime}]) and rerun "
                          f"`pgf-sim sweep` on it (finished runs are only costed, not retrained)")
    if name not in found:
        raise ConfigError(f"sweep {sweep_name!r} has no deployment-proxy cost: add `deploy_model: vit_b` (and "
                          f"`deploy_batch`) to its simulate section and rerun `pgf-sim sweep` on it (finished runs "
                          f"are only costed, not retrained)")
    return found[name]


def default_view(db: Any, sweep: str | None, runtime: str | None = None) -> CostModel:
    """The cost view the answer uses when none is asked for, the same for ``pick``, ``run`` and
    ``report`` (``report.order_views``): in the sweep's default runtime (or ``runtime``), the
    deployment proxy when the sweep has one and the trained model's own costs are flat across
    N:M patterns (a model too small to load the hardware), else the trained model's own cost."""
    from ..report.report import CostSection, is_flat

    trained = cost_model(db, sweep, "trained", runtime)
    deploy = [m for m in cost_models(db, sweep) if m.name == "deploy" and m.runtime == trained.runtime]
    if deploy and is_flat(CostSection("", "", load_table(db, sweep, trained))) is not None:
        return deploy[0]
    return trained


def load_table(db: Any, sweep: str | None, cost: CostModel | None = None) -> ResultTable:
    """Candidates (accuracy mean/std over seeds + simulated costs) of a sweep, all targets;
    costs of ``cost`` (default: the trained models' own)."""
    store = _store(db)
    name = store.sweep_info(sweep).sweep
    rows = results.candidate_rows(store, name, None if cost is None else cost.key)
    if not rows:
        what = ("" if cost is None or cost.name == "trained" else
                f" with deployment-proxy costs in the {cost.runtime} runtime (rerun the sweep to add them)")
        raise ConfigError(f"sweep {name!r} in {db} has no finished runs{what} yet; run it first")
    return aggregate_seeds(rows, sweep_metric(store, name))


def accuracy_floor(table: ResultTable, hw: str, max_drop: float) -> tuple[float, str]:
    """The worst acceptable metric value: the dense baseline's mean (or the best mean without
    one) worsened by ``max_drop`` (accuracy: minus; bpc/loss/perplexity: plus)."""
    m = table.metric
    rows = [c for c in table.where(hardware=hw) if not math.isnan(c.accuracy_mean)]
    if not rows:  # an unknown target (``pick`` then names the valid ones) or nothing finished
        return None, ""
    dense = [c for c in rows if isinstance(c.pattern, NM) and c.pattern.is_dense]
    ref = max(dense or rows, key=lambda c: m.oriented(c.accuracy_mean))
    what = "the dense baseline" if dense else f"the best candidate ({ref.label})"
    floor = ref.accuracy_mean - max_drop if m.higher_is_better else ref.accuracy_mean + max_drop
    return floor, f"{m.label} within {m.fmt_delta(max_drop)} of {what} ({m.fmt(ref.accuracy_mean)})"


@dataclass(frozen=True)
class PickLimits:
    """The constraints of a pick: ``limit``, the worst acceptable value of the task metric on
    validation (a floor for accuracy, a ceiling for bpc / loss / perplexity), cost caps (SI
    units; ``max_footprint_bytes`` caps the inference memory), and ``max_drop``, the allowed worsening relative to the dense baseline used when no
    other limit is given (``"auto"``: the metric's default budget)."""

    limit: float | None = None
    max_latency_s: float | None = None
    max_energy_j: float | None = None
    max_drop: float | str | None = None
    max_footprint_bytes: float | None = None

    @property
    def explicit(self) -> bool:
        """True when an absolute limit is set (``max_drop`` is then ignored)."""
        return any(v is not None for v in (self.limit, self.max_latency_s, self.max_energy_j, self.max_footprint_bytes))


def make_picks(table: ResultTable, hws: Sequence[str] | None, limits: PickLimits, *, objective: str | None = None,
               model: str | None = None, cost: CostModel | None = None,
               store: Any = None) -> tuple[list[Pick], list[str]]:
    """One pick per target (``hws``; None: every target of the table). Without an explicit
    limit, ``limits.max_drop`` (when set) gives the worst acceptable task metric relative to the
    dense baseline. ``cost``: the view the table holds; its label ends every explanation and
    error. ``store``: where the pick's test-split metric is read (reported, never used to choose)."""
    picks, errors = [], []
    m = table.metric
    for hw in hws or table.hardware_names():
        limit = limits.limit
        if not limits.explicit and limits.max_drop is not None:
            limit, why = accuracy_floor(table, hw, m.default_budget if limits.max_drop == "auto" else limits.max_drop)
            print_note = f"(on {hw}: {why})"
        else:
            print_note = ""
        try:
            p = pick(table, hw, metric_limit=limit, max_latency_s=limits.max_latency_s,
                     max_energy_j=limits.max_energy_j, max_footprint_bytes=limits.max_footprint_bytes,
                     objective=objective, model=model)
            test = test_metric(store, p.best, m) if store is not None else (float("nan"),) * 2
            test_text = m.fmt(test[0], test[1] if p.best.n_seeds > 1 else None)  # one seed: no spread to show
            test_note = (f"(test {m.label} of the pick, reported only, never used to choose: {test_text})"
                         if not math.isnan(test[0]) else "")
            tags = " ".join(t for t in (test_note, print_note, f"[{cost.label}]" if cost else "") if t)
            if tags:
                p = replace(p, explanation=f"{p.explanation} {tags}")
            picks.append(p)
        except NoFeasibleCandidate as exc:
            errors.append(f"{exc} [{cost.label}]" if cost else str(exc))
    return picks, errors


def resolve_targets(db: Any, sweep: str | None, hws: Sequence[str] | None) -> list[str] | None:
    """Target labels of a sweep from what the user typed: a label, or the YAML file (path) or
    built-in name the sweep was given (a YAML file also matches the target of the same name)."""
    if not hws:
        return None
    info = _store(db).sweep_info(sweep)
    labels = list(info.hardware)
    out = []
    for hw in hws:
        if hw in labels:
            out.append(hw)
            continue
        found = [label for label, spec in info.hardware_specs if _same_target(hw, spec)]
        if not found and Path(hw).suffix in (".yaml", ".yml") and Path(hw).is_file():
            from ...sim.hardware import load_hardware

            found = [label for label in labels if label == load_hardware(hw).name]
        out.append(found[0] if found else hw)  # no match: `pick` names the sweep's targets
    return out


def _same_target(given: str, spec: str) -> bool:
    if given == spec:
        return True
    a, b = Path(given), Path(spec)
    return a.is_file() and b.is_file() and a.resolve() == b.resolve()


def format_fronts(table: ResultTable, metric: str = "latency_s", cost: CostModel | None = None) -> str:
    """The quality-vs-``metric`` front of every target, as text (cheapest first); candidates that do
    not fit the target's memory are left off and listed (as in the picks and the report)."""
    from ...sim.report_table import si
    from ..report.report_figures import COSTS

    lines = []
    m = table.metric
    tag = f" [{cost.label}]" if cost else ""
    for (hw, _), front in fronts(table, (metric,), fits_only=True).items():  # what can run on each target
        what = {k: label for k, label, _ in COSTS}.get(metric, metric)
        lines.append(f"Pareto front on {hw}, {m.label} ({m.unit}, validation, mean ± std over seeds; "
                     f"{'higher' if m.higher_is_better else 'lower'} is better) vs {what}{tag}:")
        for c in front.candidates(table):
            lines.append(f"  {c.label:<28} {m.name} {m.fmt(c.accuracy_mean, c.accuracy_std if c.n_seeds > 1 else None):<24} n={c.n_seeds}  "
                         f"latency {si(c.latency_s, 's'):>9}  energy {si(c.energy_j, 'J'):>9}  "
                         f"weights {si(c.weight_bytes, 'B'):>8}")
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
    from ...sim.report_table import si

    lines = [f"cost per pattern{f' [{cost.label}]' if cost else ''}:"]
    for hw in table.hardware_names():
        best: dict[str, Any] = {}
        for c in table.where(hardware=hw):
            if not math.isnan(c.latency_s) and (c.pattern_text not in best or c.latency_s < best[c.pattern_text].latency_s):
                best[c.pattern_text] = c
        cells = [f"{pat} {si(c.latency_s, 's')} / {si(c.energy_j, 'J')}"
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
    """Fill the report's ``ReportData`` from the store: per cost view (trained model, deployment proxy)
    the results, picks and per-layer breakdowns (the pick and the dense baseline per target);
    training curves (validation metric and loss vs step and vs training FLOPs, beta, SDGF
    frames) and gradient noise (mean over seeds), and the native-pattern answers of ``native_gains``."""
    from ..report.report import CostSection, ReportData
    from ..report.report_curves import grad_noise_curves, training_curves
    from ..report.report_figures import MetricInfo

    store = _store(db)
    info = store.sweep_info(sweep)
    points = store.sweep_points(info.sweep)
    sections = [CostSection(f"Cost model: {v.cost.label.removeprefix('cost model: ')}", v.cost.note, v.table,
                            list(v.picks), list(v.errors), _breakdowns(store, v), kind=v.cost.name,
                            slug=v.cost.slug)
                for v in views]
    n_runs = len(points)
    finished = sum(1 for pt in points if (run := store.get_run(pt.run_id)) is not None and run.status == "finished")
    import datetime

    from ...core.version import VERSION

    meta = {"sweep": sweep, "database": str(db), "runs": f"{finished} finished of {n_runs}",
            "hardware targets": ", ".join(info.hardware), "pgf_sim version": VERSION,
            "written": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    meta.update({f"cost model {v.cost.slug}": v.cost.key for v in views})
    meta["runtimes"] = ", ".join(dict.fromkeys(v.cost.runtime for v in views))
    data_name = _data_name(store, points)
    task = views[0].table.metric if views else sweep_metric(store, info.sweep)
    meta["quality metric"] = task.axis_label
    from ..report.report import order_views

    lead = order_views(list(sections))[:1]  # the view the report's answer uses
    limits = {p.hardware: p.constraints.get("metric_limit") for v in lead for p in v.picks}
    if any(v is not None for v in limits.values()):
        sense = ">=" if task.higher_is_better else "<="
        meta["quality budget (answer's view)"] = "; ".join(
            f"{hw}: mean validation {task.name} {sense} {task.fmt(v)}" for hw, v in limits.items() if v is not None)
    metric = MetricInfo(name=f"validation {task.name}", unit="%" if task.unit == "%" else f" {task.unit}",
                        scale=task.scale, higher_is_better=task.higher_is_better,
                        split=f"validation split of {data_name}" if data_name else "validation split")
    test_results = {}
    for v in views[:1]:  # the test number of a candidate is the same on every target and view
        for c in v.table:
            if c.label not in test_results:
                mean, std = test_metric(store, c, task)
                test_results[c.label] = (mean, std, len(c.run_ids))
    return ReportData(
        title=f"pgf_sim co-design report: {sweep}",
        cost_views=sections, metric=metric, test_results=test_results,
        grad_noise=grad_noise_curves(store, points), training_curves=training_curves(store, points, task),
        pattern_gains=list(pattern_gains),
        dse_note=("Native-pattern answers below are computed on the trained models of this sweep (their captured "
                  f"masks, seed 0); a deployment-scale answer comes from `pgf-sim dse --model {_deploy_model(info)} "
                  "...`, and they can differ because the small trained model does not load the hardware."
                  if pattern_gains else ""),
        meta=meta, study=_seed_study(store, info.sweep),
        notes=[f"Quality is the {task.axis_label} of the final (masked) trained model "
               "on the validation split, mean ± std over seeds (picks are made on it; test numbers are reported beside "
               "the picks). "
               + " ".join(v.cost.note for v in views)],
    )


def _seed_study(store: Any, sweep: str):
    """The seed-study analysis (``study.analyse``) of a sweep with SR-STE and another recipe at
    two or more finished seeds each, else None (without SR-STE, or with one seed, there is nothing
    to compare)."""
    from ...core.errors import PgfSimError
    from ..decide.study import analyse

    try:
        study = analyse(store, sweep)
    except PgfSimError:  # no finished run yet, or no SR-STE cell
        return None
    return study if study.comparisons else None


def _deploy_model(info: Any) -> str:
    """The sweep's deployment-proxy architecture (``simulate.deploy_model``), else ``vit_b``."""
    from ..run.sweep import spec_from_config

    spec = spec_from_config(info.config)
    return spec.model if spec is not None else "vit_b"


def _data_name(store: Any, points: Sequence[PointRow]) -> str:
    """The data set the sweep's runs trained on (from a run's stored config: a sweep's
    ``experiment`` may be a file name), "" when no run has one."""
    for pt in points:
        run = store.get_run(pt.run_id)
        data = (run.config or {}).get("data") if run is not None else None
        if isinstance(data, dict) and data.get("name"):
            return str(data["name"])
    return ""


def _breakdowns(store: Any, view: CostViewData) -> list:
    from ..report.report import LayerBreakdown

    out, seen = [], set()
    for p in view.picks:  # the latency and the energy pick of a target are often the same run: draw it once
        shown = [p.best] + [c for c in view.table.where(hardware=p.hardware)
                            if isinstance(c.pattern, NM) and c.pattern.is_dense and c is not p.best][:1]
        for cand in shown:
            if not cand.run_ids or (p.hardware, cand.label) in seen:
                continue
            seen.add((p.hardware, cand.label))
            rows = store.sim_layers(cand.run_ids[0], p.hardware, view.cost.key)
            weight_rows = [r for r in rows if r.kind == "gemm"]
            if weight_rows:
                tag = "" if view.cost.name == "trained" else f", {view.cost.name} proxy"
                names = [r.layer for r in weight_rows]
                lat = [r.latency_s for r in weight_rows]
                en = [r.energy_j for r in weight_rows]
                bound = [r.bound for r in weight_rows]
                # the rest of the time, one bar per kind, so the chart shows all of it
                for kind, what in (("matmul", "[attention matmuls, all layers]"),
                                   ("elementwise", "[element-wise ops, all layers]")):
                    rest = [r for r in rows if r.kind == kind]
                    if rest:
                        names.append(what)
                        lat.append(sum(r.latency_s for r in rest))
                        en.append(sum(r.energy_j for r in rest))
                        by = {}
                        for r in rest:
                            by[r.bound] = by.get(r.bound, 0.0) + r.latency_s
                        bound.append(max(by, key=by.get))
                out.append(LayerBreakdown(p.hardware, f"{cand.label} ({'pick' if cand is p.best else 'dense'}{tag})",
                                          names, lat, en, bound))
    return out


# ------------------------------------------------------------------------------ dse
def trained_workloads(db: Any, sweep: str | None, workdir: Path, *, dtype: str = "fp16",
                      recipe: str | None = None, pattern: NM | None = None) -> dict[str, Any]:
    """The seed-0 (lowest seed) finished run of each (model, recipe, pattern) of a sweep, captured
    with its real masks at the sweep's inference batch: ``{"<label>": Workload}``; optionally
    only one recipe label and/or pattern."""
    from ..run.trained import capture_run

    store = _store(db)
    info = store.sweep_info(sweep)
    batch = int(info.config["simulate"]["batch"])
    chosen: dict[str, dict[str, Any]] = {}
    for pt in sorted(store.sweep_points(info.sweep), key=lambda p: p.seed):
        if (recipe is not None and pt.recipe != recipe) or (pattern is not None and pt.pattern != pattern):
            continue
        run = store.get_run(pt.run_id)
        if run and run.status == "finished":
            chosen.setdefault(run_label(pt), pt)
    out = {}
    for label, pt in chosen.items():
        out[f"trained {label}"], _ = capture_run(Path(workdir) / pt.run_id, batch=batch, dtype=dtype, name=label)
    if not out:
        raise ConfigError(f"sweep {info.sweep!r} has no finished runs to explore with")
    return out


def native_gains(db: Any, sweep: str, workdir: Path) -> list:
    """"Is native support of pattern P worth it?" for the sweep's first target with N:M support:
    each sparse grid pattern it lacks, costed with the models trained at P (seed 0 of the MDGF
    runs, or of the first sparse recipe when the sweep has no MDGF)."""
    from ...sim.hardware import load_hardware
    from ..explore.dse import native_pattern_gain

    store = _store(db)
    info = store.sweep_info(sweep)
    targets = [(label, load_hardware(spec)) for label, spec in info.hardware_specs]
    target = next(((label, hw) for label, hw in targets if hw.sparse.native_patterns), None)
    points = store.sweep_points(info.sweep)
    sparse = [p for p in points if not p.pattern.is_dense]
    if target is None or not sparse:
        return []
    recipe = "mdgf" if any(p.recipe == "mdgf" for p in sparse) else sparse[0].recipe
    label, hw = target
    gains = []
    for pattern in sorted({p.pattern for p in sparse}, key=lambda p: -p.density):
        if pattern in hw.sparse.native_patterns:
            continue
        try:
            workloads = trained_workloads(db, sweep, workdir, recipe=recipe, pattern=pattern)
        except ConfigError:
            continue  # no finished run at this pattern yet
        gains.append(native_pattern_gain(hw, pattern, workloads))
    return gains


@dataclass(frozen=True)
class TrainedSource:
    """Where the trained runs of a DSE come from: a result database, a sweep in it (None: the
    latest) and the run directories."""

    db: Path
    sweep: str | None
    workdir: Path


def explore_dse(base: Any, axes: Sequence[Any], *, models: Sequence[str] = (), patterns: Sequence[NM] = (),
                batch: int = 1, seq_len: int | None = None, trained: TrainedSource | None = None,
                native: NM | None = None, runtime: str = "eager") -> tuple[Any, Any]:
    """The DSE table of ``base`` (a ``Hardware``) varied along ``axes`` for built-in ``models`` at
    ``patterns`` and/or a sweep's trained runs; ``native``: also say whether native support of
    that pattern pays off. Returns the ``dse.DseResult`` and the native-pattern gain (None
    without ``native``)."""
    from ..explore.dse import builtin_workloads, explore, native_pattern_gain

    workloads: dict[str, Any] = {}
    if models:
        workloads.update(builtin_workloads(models, patterns or [DENSE], batch=batch, seq_len=seq_len))
    elif patterns:
        raise ConfigError("--pattern applies to --model; give a built-in model (e.g. --model vit_b)")
    if trained is not None:
        workloads.update(trained_workloads(trained.db, trained.sweep, trained.workdir))
    if not workloads:
        raise ConfigError("nothing to explore with: give --model NAME [--pattern N:M] and/or --trained")
    res = explore(base, axes, workloads, runtime=runtime)
    return res, (native_pattern_gain(base, native, workloads, runtime=runtime) if native is not None else None)


def format_dse(res: Any, gain: Any = None) -> str:
    lines = [res.format_table(), ""]
    for w in res.workloads:
        lines.append(f"best for {w}: latency -> {res.best(w, 'latency_s').name}; energy -> {res.best(w, 'energy_j').name}")
    if gain is not None:
        lines += ["", gain.statement()]
    return "\n".join(lines)
