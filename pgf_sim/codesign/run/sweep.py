"""Sweeps: a grid of training runs (recipes x N:M patterns x seeds x models x parameters),
each simulated on every hardware target of the sweep. This module holds the sweep config, the
grid expansion and the driver; ``executors.py`` runs the points (local processes or Ray):
``execute_point`` is what one worker does for one point.

A sweep YAML (read strictly: unknown keys are errors listing the valid ones)::

    name: digits_default
    experiment: digits_vit.yaml      # base experiment: a path (relative to this file) or a mapping
    overrides: {schedule.steps: 300} # dotted overrides applied to every run
    grid:
      recipes: [dense, sr-ste, mdgf, sdgf]        # or {label: {recipe-section keys}}
      patterns: ["2:4", "1:8", "1:16"]            # the dense recipe runs once, pattern ignored
      seeds: [0, 1]
      models: {small: {options: {dim: 32}}}      # optional: label -> merged into `model`
      params: {recipe.dense_fraction: [0.0, 0.1]} # optional: any dotted experiment key
    hardware: [a100_80gb, flexible_nm]            # names (hw_configs/) or YAML paths
    workers: 2
    simulate: {batch: 1, dtype: fp16, deploy_model: vit_b, deploy_batch: 32}

``simulate.deploy_model`` (optional, a built-in architecture of ``pgf_sim.sim.workloads``)
adds the deployment-scale proxy cost of ``deploy.py``: every run's per-role N:M patterns are
also costed on that architecture (``deploy_phase``: forward, or prefill / decode of a decoder;
``deploy_batch``, default ``batch``; ``deploy_seq_len``,
default the architecture's), stored beside the trained model's own cost under another key.
``simulate.runtime`` (eager, graph, fused, or a list: ``sim.cost.RUNTIMES``) prices every op as
that runtime would; each runtime is its own cost view of the sweep, the first its default.

Run ids are the experiment's own ``default_run_id()``: name, recipe, pattern, seed and a hash
of the fully resolved experiment config, so rerunning the same sweep finds the same runs and a
changed config (any field) makes a new run instead of silently reusing an old one.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core import DENSE, NM, ConfigError, apply_overrides, from_dict, load_yaml, set_values, to_dict

DENSE_RECIPE = "dense"


@dataclass(frozen=True)
class GridSpec:
    """The axes of the grid. ``recipes``: names, or label -> keys of the experiment's
    ``recipe`` section (``name`` defaults to the label), so two variants of one recipe can be
    swept side by side (``mdgf-lin: {name: mdgf, decay: linear}``)."""

    recipes: tuple[str, ...] | dict[str, dict[str, Any]]
    patterns: tuple[NM, ...] = ()
    seeds: tuple[int, ...] = (0,)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    params: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.recipes:
            raise ConfigError("grid.recipes is empty; name at least one recipe")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"grid.seeds has duplicates: {list(self.seeds)}")
        object.__setattr__(self, "patterns", tuple(NM.parse(p) for p in self.patterns))  # "2:4" from Python
        if len(set(self.patterns)) != len(self.patterns):
            raise ConfigError(f"grid.patterns has duplicates: {[str(p) for p in self.patterns]}")
        for key, values in self.params.items():
            if not values:
                raise ConfigError(f"grid.params.{key} is empty; give at least one value")

    def recipe_sections(self) -> dict[str, dict[str, Any]]:
        """label -> recipe-section mapping (with ``name``)."""
        if isinstance(self.recipes, dict):
            return {label: {"name": label, **dict(sec)} for label, sec in self.recipes.items()}
        if len(set(self.recipes)) != len(self.recipes):
            raise ConfigError(f"grid.recipes has duplicates: {list(self.recipes)}")
        return {name: {"name": name} for name in self.recipes}


@dataclass(frozen=True)
class SimulateSpec:
    """Inference setting of the cost simulation: ``batch`` examples per forward, weights and
    activations in ``dtype`` (a dtype of the hardware's compute table), priced in ``runtime``
    (one of ``sim.cost.RUNTIMES`` or a list of them: each is its own cost view, the first the
    sweep's default)."""

    batch: int = 1
    dtype: str = "fp16"
    runtime: Any = "eager"               # a runtime, or a list of them
    deploy_model: str | None = None      # built-in architecture of the deployment-scale proxy cost
    deploy_batch: int | None = None      # its batch (default: ``batch``)
    deploy_seq_len: int | None = None    # its sequence length, or a decode step's context (default: the architecture's)
    deploy_phase: str = "forward"        # forward, or prefill / decode for a decoder architecture

    @property
    def runtimes(self) -> tuple[str, ...]:
        return (self.runtime,) if isinstance(self.runtime, str) else tuple(self.runtime)

    def __post_init__(self) -> None:
        from ...sim.cost import RUNTIMES
        from ...sim.ops import DTYPE_BITS
        from ...sim.workloads import PHASES

        if isinstance(self.runtime, list):
            object.__setattr__(self, "runtime", tuple(self.runtime))
        runtimes = self.runtimes if isinstance(self.runtime, (str, tuple)) else (self.runtime,)
        bad = [r for r in runtimes if r not in RUNTIMES]
        if bad or not runtimes or len(set(runtimes)) != len(runtimes):
            raise ConfigError(f"simulate.runtime: invalid value {self.runtime!r}; give one of {', '.join(RUNTIMES)} "
                              f"or a list of distinct ones (e.g. [fused, eager]: the first is the sweep's default view)")
        if self.deploy_phase not in PHASES or self.deploy_phase == "train":
            raise ConfigError(f"simulate.deploy_phase: invalid value {self.deploy_phase!r}; valid values: "
                              f"{', '.join(p for p in PHASES if p != 'train')}")
        if self.batch < 1:
            raise ConfigError(f"simulate.batch must be >= 1, got {self.batch}")
        if self.dtype not in DTYPE_BITS:
            raise ConfigError(f"simulate.dtype: invalid value {self.dtype!r}; valid values: {', '.join(DTYPE_BITS)}")
        if self.deploy_model is None and (self.deploy_batch is not None or self.deploy_seq_len is not None
                                          or self.deploy_phase != "forward"):
            raise ConfigError("simulate.deploy_batch / deploy_seq_len / deploy_phase need simulate.deploy_model (e.g. vit_b)")
        if self.deploy_batch is not None and self.deploy_batch < 1:
            raise ConfigError(f"simulate.deploy_batch must be >= 1, got {self.deploy_batch}")

    def deploy_spec(self, runtime: str | None = None):
        """The ``deploy.DeploySpec`` of the proxy cost in ``runtime`` (default: the first), or None
        without ``deploy_model``."""
        from .deploy import DeploySpec

        if self.deploy_model is None:
            return None
        return DeploySpec(self.deploy_model, self.deploy_batch or self.batch, self.deploy_seq_len, self.dtype,
                          self.deploy_phase, runtime or self.runtimes[0])

    def deploy_specs(self) -> tuple:
        """One ``DeploySpec`` per runtime (empty without ``deploy_model``)."""
        return () if self.deploy_model is None else tuple(self.deploy_spec(r) for r in self.runtimes)

    def keys(self) -> tuple[tuple[str, str], ...]:
        """(runtime, trained-model sim_key) per runtime, the default first."""
        from ...store import sim_key

        return tuple((r, sim_key(self.batch, self.dtype, r)) for r in self.runtimes)


def simulate_spec(config: dict[str, Any]) -> SimulateSpec:
    """The ``SimulateSpec`` of a sweep config mapping (as stored in the ``sweeps`` table)."""
    return from_dict(SimulateSpec, dict(config.get("simulate") or {}), source="sweep config in the result DB")


def spec_from_config(config: dict[str, Any]):
    """The ``deploy.DeploySpec`` of a sweep config mapping (as stored in the ``sweeps`` table);
    ``None`` when the sweep has no ``simulate.deploy_model`` (every sweep recorded before the
    proxy existed)."""
    return simulate_spec(config).deploy_spec()


@dataclass(frozen=True)
class SweepConfig:
    name: str
    experiment: str | dict[str, Any]
    grid: GridSpec
    hardware: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    workers: int = 2
    simulate: SimulateSpec = field(default_factory=SimulateSpec)

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\"):
            raise ConfigError(f"sweep name must be non-empty without slashes, got {self.name!r}")
        if not self.hardware:
            raise ConfigError("hardware is empty; name at least one target (see `pgf-sim hw list`)")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class GridPoint:
    """One run of the sweep. ``experiment`` is the resolved, validated experiment
    (a ``pgf_sim.train.experiment.ExperimentConfig``)."""

    run_id: str
    recipe: str          # the recipe label of the grid
    pattern: NM
    seed: int
    model: str           # model label ("" when the grid has no model axis)
    params: dict[str, Any]
    experiment: Any

    def record(self):
        """This point as a row of the store's ``sweep_points`` table."""
        from ...store import PointRow

        return PointRow(self.run_id, self.recipe, self.pattern, self.seed, self.model, self.params)

    def describe(self) -> str:
        bits = [self.model, self.recipe, "dense" if self.pattern.is_dense else str(self.pattern), f"seed {self.seed}"]
        bits += [f"{k}={v}" for k, v in self.params.items()]
        return " ".join(b for b in bits if b)


@dataclass(frozen=True)
class Sweep:
    """A loaded sweep: its config, where it came from and the base experiment mapping."""

    config: SweepConfig
    source: str
    base_dir: Path
    base_experiment: dict[str, Any]

    @property
    def name(self) -> str:
        return self.config.name

    def hardware_specs(self) -> list[tuple[str, str]]:
        """(label, name or absolute path) per target; a path's label is its file stem."""
        out = []
        for item in self.config.hardware:
            if item.endswith((".yaml", ".yml")) or "/" in item:
                path = Path(item)
                path = path if path.is_absolute() else (self.base_dir / path)
                out.append((path.stem, str(path.resolve())))
            else:
                out.append((item, item))
        labels = [label for label, _ in out]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{self.source}: hardware targets repeat a name: {labels}")
        return out


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """Read a sweep YAML strictly (after ``key=value`` overrides of the sweep file itself)."""
    path = Path(path)
    data = apply_overrides(load_yaml(path), list(overrides), source=f"{path} (command-line override)")
    cfg = from_dict(SweepConfig, data, source=str(path))
    return sweep_from_config(cfg, source=str(path), base_dir=path.resolve().parent)


def sweep_from_config(cfg: SweepConfig, *, source: str = "<sweep>", base_dir: Path | str = ".") -> Sweep:
    base_dir = Path(base_dir)
    if isinstance(cfg.experiment, str):
        exp_path = Path(cfg.experiment)
        exp_path = exp_path if exp_path.is_absolute() else base_dir / exp_path
        base = load_yaml(exp_path)
    else:
        base = copy.deepcopy(dict(cfg.experiment))
    return Sweep(cfg, source, base_dir, base)


def expand(sweep: Sweep) -> list[GridPoint]:
    """All grid points, in a stable order (model, recipe, pattern, params, seed).

    Every point's experiment is validated here (strict loader), so a bad value anywhere in
    the grid fails before any training starts. A dense recipe runs once per seed and model,
    whatever the patterns and ``recipe.*`` params. Two grid points that resolve to the same experiment (same run id)
    are an error: they would silently share one run.
    """
    from ...train.experiment import experiment_from_dict

    cfg = sweep.config
    grid = cfg.grid
    models = grid.models or {"": {}}
    param_keys = list(grid.params)
    param_values = list(itertools.product(*(grid.params[k] for k in param_keys))) or [()]
    points: list[GridPoint] = []
    seen: dict[str, str] = {}
    for (model_label, model_sec), (label, recipe_sec) in itertools.product(models.items(), grid.recipe_sections().items()):
        dense = recipe_sec.get("name") == DENSE_RECIPE
        if not dense and not grid.patterns:
            raise ConfigError(f"{sweep.source}: grid.patterns is empty but recipe {label!r} needs a pattern")
        for pattern, values, seed in itertools.product([DENSE] if dense else grid.patterns, param_values, grid.seeds):
            data = set_values(sweep.base_experiment, _flatten(cfg.overrides), source=sweep.source)
            data["model"] = _merge(data.get("model", {}), model_sec)
            data["recipe"] = _merge(data.get("recipe", {}), {**recipe_sec, "pattern": pattern})
            data["seed"] = seed
            params = dict(zip(param_keys, values))
            if dense:  # recipe settings do not change the dense baseline: it runs once, like its pattern
                params = {k: v for k, v in params.items() if not k.startswith("recipe.")}
            data = set_values(data, params, source=sweep.source)
            where = f"{sweep.source} (grid point {label} {pattern} seed {seed}{' ' + model_label if model_label else ''})"
            exp = experiment_from_dict(data, source=where)
            run_id = exp.default_run_id()
            point = GridPoint(run_id, label, pattern, seed, model_label, params, exp)
            if dense and run_id in seen:
                continue  # the dense point of another combination of recipe-only params
            if run_id in seen:
                raise ConfigError(f"{sweep.source}: grid points {seen[run_id]!r} and {point.describe()!r} "
                                  f"resolve to the same experiment (run {run_id}); remove one")
            seen[run_id] = point.describe()
            points.append(point)
    return points


def _merge(base: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of mappings (``extra`` wins); the base section may be absent."""
    out = copy.deepcopy(dict(base or {}))
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"schedule": {"steps": 5}}`` and ``{"schedule.steps": 5}`` both -> ``{"schedule.steps": 5}``
    (so ``overrides.schedule.steps=5`` on the command line changes one field, not the section)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def validate_sweep(sweep: Sweep, points: list[GridPoint], hardware: list[tuple[str, str]]):
    """Fail before any training on what would otherwise fail after it: every hardware target
    loads and simulates at ``simulate.dtype``, the deployment proxy builds, and every grid
    point's model fits in memory and takes its recipe (``train.models.check_trainable``).
    Returns the loaded targets as ``(label, Hardware)`` pairs."""
    from ...core import PgfSimError
    from ...sim.hardware import load_hardware
    from ...sim.simulate import simulate
    from ...sim.workloads import gemm_workload
    from ...train.models import check_trainable
    from .deploy import check_model

    sim = sweep.config.simulate
    probe = gemm_workload(1, 64, 64, dtype=sim.dtype)
    targets = []
    for label, spec in hardware:
        hw = load_hardware(spec)  # an unknown target is an error naming the valid ones
        try:
            simulate(probe, hw)
        except PgfSimError as exc:
            raise ConfigError(f"{sweep.source}: field 'simulate.dtype' = {sim.dtype!r} on hardware {label!r}: {exc}") from None
        targets.append((label, hw))
    deploy = sim.deploy_spec()
    if deploy is not None:
        check_model(deploy)  # an unknown architecture or bad setting fails now, too
    checked: set[str] = set()
    for p in points:
        e = p.experiment
        shape_key = repr((e.model, e.data, e.recipe, e.schedule.steps))
        if shape_key not in checked:
            checked.add(shape_key)
            check_trainable(e, source=f"{sweep.source} (grid point {p.describe()})")
    return tuple(targets)


# ------------------------------------------------------------------------------------ driver
@dataclass(frozen=True)
class SweepOutcome:
    """What a ``run_sweep`` call did. ``failed``: run_id -> error text."""

    points: tuple[GridPoint, ...]
    already_done: tuple[str, ...]
    completed: tuple[str, ...]
    failed: dict[str, str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failed


def run_sweep(sweep: Sweep, *, db: str | Path, workdir: str | Path, workers: int | None = None,
              executor: str = "local", address: str | None = None, resimulate: bool = False,
              retry_failed: bool = False, threads: int | None = None, echo=print) -> SweepOutcome:
    """Train every grid point not finished yet and simulate it on every target; resumable.

    A point is done when its run is finished in the store and its simulation is stored for
    every target under the sweep's simulation settings. A run that failed before (e.g. NaN
    loss) is not retried unless ``retry_failed``: rerunning would fail the same way.
    ``threads``: torch threads per worker (default: usable cores / workers). ``echo``: where the
    sweep's lines go; anything but ``print`` also turns off the workers' per-step progress.
    """
    import time

    from ...store import ResultStore, sim_key
    from .executors import RUNNERS, PointTask, error_text, usable_cores

    if executor not in RUNNERS:
        raise ConfigError(f"unknown executor {executor!r}; valid: {', '.join(RUNNERS)}")
    for flag, value in (("workers", workers), ("threads", threads)):
        if value is not None and value < 1:
            raise ConfigError(f"--{flag} must be >= 1, got {value}")
    t0 = time.time()
    points = expand(sweep)
    hardware = sweep.hardware_specs()
    targets = validate_sweep(sweep, points, hardware)  # everything that can fail fails now, before any training
    store = ResultStore(db)
    sim = sweep.config.simulate
    keys = sim.keys()  # (runtime, key) per runtime, the sweep's default first
    key = keys[0][1]
    deploys = sim.deploy_specs()
    store.record_sweep(sweep.name, key, hardware, to_dict(sweep.config))
    store.record_points(sweep.name, [p.record() for p in points])
    stale = store.prune_points(sweep.name, [p.run_id for p in points])
    stored = store.simulated(key)
    # a point is done only with every runtime's cost and proxy cost too (old DBs: costed, not retrained)
    for other in [k for _, k in keys[1:]] + [d.key for d in deploys]:
        stored &= store.simulated(other)
    runs = {r.run_id: r for r in store.list_runs()}
    done, failed_before, todo = [], {}, []
    for p in points:
        status = runs[p.run_id].status if p.run_id in runs else None
        if status == "finished" and not resimulate and all((p.run_id, h) in stored for h, _ in hardware):
            done.append(p.run_id)
        elif status == "failed" and not retry_failed:
            failed_before[p.run_id] = f"failed before: {runs[p.run_id].message} (rerun with --retry-failed)"
        else:
            todo.append(p)
    workers = max(1, min(workers or sweep.config.workers, len(todo) or 1))
    threads = threads or max(1, usable_cores() // workers)
    if stale:
        echo(f"sweep {sweep.name}: {stale} runs of an earlier version of this sweep (another grid or resolved "
             f"experiment config) no longer count in its results; they stay in {db}")
    echo(f"sweep {sweep.name}: {len(points)} runs x {len(hardware)} hardware targets; {len(done)} done, "
         f"{len(failed_before)} failed before, {len(todo)} to run ({executor}, {workers} workers x {threads} threads)")
    tasks = [PointTask(p.run_id, p.describe(), p.experiment, Path(db).resolve(), Path(workdir).resolve(),
                       targets, sim.batch, sim.dtype, key, threads,
                       # the trainer's own progress lines only when the caller prints (echo=print): a caller
                       # that routes or silences ``echo`` gets no worker output either
                       progress=(workers == 1 and executor == "local" and echo is print), resimulate=resimulate,
                       deploys=deploys,
                       runtimes=sim.runtimes)
             for p in todo]
    runner = RUNNERS[executor]
    stream = runner(tasks, workers) if executor == "local" else runner(tasks, address)
    completed, failed = [], dict(failed_before)
    finished: set[str] = set()
    last_note = time.time()
    width = len(str(len(tasks)))
    for item in stream:
        if item is None:  # nothing finished for a while: say what is in progress
            if time.time() - last_note >= PROGRESS_EVERY_S:
                echo(_in_progress(store, [t for t in tasks if t.run_id not in finished], t0))
                last_note = time.time()
            continue
        task, res, exc = item
        finished.add(task.run_id)
        i = len(finished)
        elapsed = time.time() - t0
        head = f"[{i:>{width}}/{len(tasks)}] {task.label}"
        if exc is not None:
            failed[task.run_id] = error_text(exc)
            echo(f"{head}: FAILED: {failed[task.run_id]}")
        else:
            completed.append(task.run_id)
            metric = task.experiment.task_metric
            acc = "n/a" if res.accuracy is None else metric.fmt(res.accuracy)
            eta = elapsed / i * (len(tasks) - i)
            echo(f"{head}: {res.status}, validation {metric.name} {acc}, {res.seconds:.0f} s  "
                 f"(elapsed {_mmss(elapsed)}, ~{_mmss(eta)} left)")
        last_note = time.time()
    return SweepOutcome(tuple(points), tuple(done), tuple(completed), failed, time.time() - t0)


PROGRESS_EVERY_S = 20.0


def _in_progress(store, tasks, t0: float) -> str:
    """One line: the steps committed so far (at each checkpoint) by runs of ``tasks`` that have started."""
    import time

    bits = []
    for task in tasks:
        run = store.get_run(task.run_id)
        if run is None or run.status != "running":
            continue
        steps = store.run_metrics(task.run_id, "train_loss")
        total = task.experiment.schedule.steps
        at = steps[-1][0] if steps else 0
        bits.append(f"{task.label} step {at}" + (f"/{total}" if total else ""))
    shown = "; ".join(bits) if bits else "starting workers"
    return f"  ... {_mmss(time.time() - t0)} elapsed; in progress: {shown}"


def _mmss(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
