"""Co-design commands: ``run`` (the whole loop on the embedded default), ``sweep``, ``pick``,
``report``, ``dse`` and ``mixed``. No torch or plotly at import: each command imports what it
needs inside (``pgf-sim --help`` stays fast and the simulator path stays torch-free).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

DEFAULT_DB = Path("pgf_results.sqlite")
DEFAULT_WORKDIR = Path("runs")
DEFAULT_REPORT = Path("pgf_report.html")


def default_sweep_path() -> Path:
    """``training/sweep_default.yaml`` of the source tree (the README installs with ``-e .``)."""
    return Path(__file__).resolve().parents[3] / "training" / "sweep_default.yaml"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from ...sim.cli import add_runtime_flag, add_simulate_parser

    # The simulator's command, given the loader of training runs (the simulator knows no runs).
    add_simulate_parser(subparsers).set_defaults(func=_cmd_simulate)

    p = subparsers.add_parser(
        "run", help="the whole loop on the embedded default: sweep, simulate, pick, report",
        description="Train the default sweep (a small causal character-level transformer on the bundled "
                    "Shakespeare plays, judged by validation bits per character; recipes x N:M patterns x seeds), "
                    "simulate every trained model's real masks on the built-in hardware targets, print "
                    "the Pareto fronts and the pick per target, and write the HTML report. Resumable: rerun the "
                    "same command after an interruption.")
    p.add_argument("sweep", nargs="?", type=Path, default=None, help="sweep YAML (default: training/sweep_default.yaml)")
    _sweep_args(p)
    _pick_limits(p, default_drop=0.01)
    p.add_argument("--report", type=Path, default=DEFAULT_REPORT, help=f"HTML report path (default: {DEFAULT_REPORT})")
    p.set_defaults(func=_cmd_run)

    p = subparsers.add_parser(
        "sweep", help="train a grid of recipes x N:M patterns x seeds and simulate every run on every target",
        description="Run a sweep YAML (see training/sweep_default.yaml). Finished runs are skipped, unfinished "
                    "ones resume from their checkpoint; results go to the SQLite result database.")
    p.add_argument("sweep", type=Path, help="sweep YAML, e.g. training/sweep_default.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the sweep file, e.g. workers=4")
    _sweep_args(p)
    p.set_defaults(func=_cmd_sweep)

    p = subparsers.add_parser(
        "pick", help="best N:M pattern + recipe for a hardware target under constraints",
        description="Choose from a sweep's results, judged by its task metric on the validation split: e.g. "
                    "--hw flex_nm_systolic --limit 2.8 (a bits-per-character task: the fastest candidate with mean "
                    "validation bpc <= 2.8), --min-accuracy 0.9 (an accuracy task: at least 90%), or --max-latency "
                    "2ms (the best metric within it). The hardware is a target label of the sweep or the YAML file "
                    "the sweep was given.")
    _db_args(p)
    p.add_argument("--hw", action="append", metavar="NAME|FILE",
                   help="hardware target of the sweep: its name or its YAML file (repeatable; default: every "
                        "target of the sweep)")
    _pick_limits(p, default_drop=0.01)
    p.add_argument("--objective", help="accuracy (the best task metric: highest accuracy, lowest bpc) or a cost "
                                       "metric: latency_s, energy_j, inference_flops, weight_bytes, train_flops "
                                       "(default: latency_s, or accuracy under a cost cap)")
    p.add_argument("--model", help="only this model label of the sweep")
    p.add_argument("--cost-model", choices=("trained", "deploy"),
                   help="trained: the trained model's own simulated cost; deploy: the deployment-scale proxy (the "
                        "run's N:M patterns on the sweep's simulate.deploy_model, e.g. gpt2). Default: the view the "
                        "report's answer uses (the proxy when the trained model's costs are flat across patterns)")
    add_runtime_flag(p, default=None, help_suffix="; one the sweep priced (its simulate.runtime; default: the first)")
    _format_arg(p)
    p.set_defaults(func=_cmd_pick)

    p = subparsers.add_parser(
        "report", help="write the HTML co-design report from the result database",
        description="Write one self-contained HTML file (works offline): per target the pick with its task metric "
                    "(validation, test beside it), cost in ms / mJ / MB / GFLOP, speedup and runner-up, the cost per "
                    "pattern, Pareto charts, training curves and the design-space answers; every figure also as PNG "
                    "and SVG beside it (plotly + kaleido).")
    _db_args(p)
    p.add_argument("--out", type=Path, default=DEFAULT_REPORT, help=f"HTML path (default: {DEFAULT_REPORT})")
    _pick_limits(p, default_drop=0.01)
    p.add_argument("--png", type=Path, help="also export a PNG screenshot (needs headless Chromium)")
    p.add_argument("--cost-model", choices=("trained", "deploy", "both"), default="both",
                   help="which simulated cost the picks and fronts use: the trained model's own, the "
                        "deployment-scale proxy, or both views (default; the proxy only when the sweep has one)")
    add_runtime_flag(p, default=None, help_suffix="; only this one of the sweep's runtimes (default: every one it priced)")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                   help="run directories: the trained models for the native-pattern section (skipped if absent)")
    p.set_defaults(func=_cmd_report)

    p = subparsers.add_parser(
        "dse", help="hardware design-space exploration around a base target",
        description="Vary fields of a base hardware YAML (--set key=v1,v2,...) and cost built-in models "
                    "(--model NAME --pattern N:M) and/or the trained runs of a sweep (--trained) on every variant.")
    p.add_argument("--hw", required=True, help="base hardware target (name or YAML)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=V1,V2",
                   help="a swept hardware field, e.g. memory.dram_bw_bytes_per_s=1e12,2e12 (repeatable)")
    p.add_argument("--model", action="append", default=[], help="built-in architecture (repeatable), e.g. vit_b")
    p.add_argument("--pattern", action="append", default=[], help="N:M pattern of the built-in models (repeatable)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq-len", type=int)
    add_runtime_flag(p)
    p.add_argument("--trained", action="store_true", help="add the trained models of a sweep (seed-0 run per "
                                                          "recipe and pattern, real masks)")
    p.add_argument("--native", help="also answer: is native support of this N:M pattern worth it? (e.g. 1:8)")
    _db_args(p)
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="run directories of --trained")
    _format_arg(p)
    p.set_defaults(func=_cmd_dse)

    p = subparsers.add_parser(
        "mixed", help="per-layer mixed N:M assignment for a target under a quality budget (the task's metric)",
        description="From a trained run (default: the seed-0 run of --recipe at the sweep's densest sparse "
                    "pattern), measure per-layer sensitivity and per-layer cost, choose a pattern per layer, "
                    "compare with the best uniform pattern, and verify the choice: one-shot re-masking, a masked "
                    "fine-tune, and training the assignment from scratch with recipe.layer_patterns (recorded in "
                    "the result database, resumable). See pgf_sim.codesign.explore.mixed and mixed_verify.")
    _db_args(p)
    p.add_argument("--hw", required=True, metavar="NAME|FILE",
                   help="hardware target of the sweep: its name or its YAML file")
    p.add_argument("--run", help="run id to start from")
    p.add_argument("--recipe", default="mdgf", help="recipe label of the sweep (default: mdgf)")
    p.add_argument("--patterns", help="candidate patterns, comma separated (default: the sweep's)")
    p.add_argument("--budget", type=float, default=0.01,
                   help="how much worse the task metric may get, in its unit: an accuracy drop as a fraction "
                        "(default 0.01), or bits per character / nats / perplexity for a language model (e.g. 0.05)")
    p.add_argument("--metric", choices=("latency_s", "energy_j"), default="latency_s")
    add_runtime_flag(p)
    p.add_argument("--finetune-steps", type=int, default=100, help="steps of masked fine-tuning to verify (0: none)")
    p.add_argument("--no-train", action="store_true",
                   help="skip verifying the assignment by training it from scratch (one run per seed)")
    p.add_argument("--progress", action="store_true", help="progress bars for the verification training")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: the evaluations are small, and extra threads only spin on a busy machine)")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    _format_arg(p)
    p.set_defaults(func=_cmd_mixed)


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, help="parallel worker processes (default: the sweep's `workers`)")
    p.add_argument("--threads", type=int, help="torch threads per worker (default: usable cores / workers)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local processes (default) or a Ray cluster (pip install 'pgf_sim[ray]')")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"result database (default: {DEFAULT_DB})")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help=f"run directories (default: {DEFAULT_WORKDIR})")
    p.add_argument("--resimulate", action="store_true", help="simulate finished runs again (after a simulator change)")
    p.add_argument("--retry-failed", action="store_true", help="train runs that failed before again")


def _format_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="table: readable text (default); json / csv: machine-readable, SI units (s, J, bytes, FLOPs)")


def _db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"result database (default: {DEFAULT_DB})")
    p.add_argument("--sweep", help="sweep name in the database (default: the most recently run)")


def _pick_limits(p: argparse.ArgumentParser, *, default_drop: float | None) -> None:
    p.add_argument("--min-accuracy", type=_accuracy, help="minimum mean accuracy, e.g. 0.9 or 90%% (accuracy tasks)")
    p.add_argument("--limit", type=float, help="worst acceptable value of the task metric on validation: a "
                                               "minimum for accuracy, a maximum for bpc / loss / perplexity (e.g. 3.0)")
    p.add_argument("--max-latency", type=lambda s: _quantity(s, "s"), help="latency cap, e.g. 0.002 or 2ms")
    p.add_argument("--max-energy", type=lambda s: _quantity(s, "J"), help="energy cap, e.g. 0.01 or 10mJ")
    p.add_argument("--max-footprint", type=_size, help="inference memory cap (weights + activations + KV cache), "
                                                       "e.g. 2e9, 512MB or 16GiB (a candidate over its target's "
                                                       "capacity is never picked, with or without it)")
    if default_drop is not None:
        p.add_argument("--max-drop", type=_drop, default="auto",
                       help="without other limits: the metric at most this much worse than the dense baseline, in "
                            "its units (accuracy: a fraction or 1%%; bpc: bits/char). Default: 1 point of accuracy, "
                            "0.05 bits/char, 0.035 nats of loss, 0.25 of perplexity")


_PREFIX = {"": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "k": 1e3}


def _quantity(text: str, unit: str) -> float:
    """``"2ms"`` -> 0.002 (unit ``s``); a bare number is in the SI unit."""
    m = re.fullmatch(rf"\s*([0-9.eE+-]+)\s*([munµk]?){unit}?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number with an optional unit like 2m{unit}")
    try:
        return float(m.group(1)) * _PREFIX[m.group(2)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


_SIZE = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _size(text: str) -> float:
    """``"512MB"`` -> 5.12e8 bytes, ``"16GiB"`` -> 16 * 2**30; a bare number is in bytes."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kMGT]i?)?B?\s*", text)
    try:
        value = float(m.group(1)) * _SIZE[m.group(2) or ""] if m else -1.0
    except (ValueError, KeyError):
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size in bytes like 2e9, 512MB or 16GiB")
    return value


def _drop(text: str):
    if text == "auto":
        return "auto"
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 0.01, 1%, or 0.05 for bpc)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--max-drop must be >= 0, got {text!r}")
    return value


def _accuracy(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an accuracy (0.9 or 90%)") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"accuracy {text!r} must be a fraction in [0, 1] (or a percentage)")
    return value


# ------------------------------------------------------------------------------ commands
def _cmd_sweep(args: argparse.Namespace) -> int:
    from ..run.sweep import load_sweep, run_sweep

    sweep = load_sweep(args.sweep, args.overrides)
    out = run_sweep(sweep, db=args.db, workdir=args.workdir, workers=args.workers, executor=args.executor,
                    address=args.address, resimulate=args.resimulate, retry_failed=args.retry_failed,
                    threads=args.threads)
    _print_outcome(out, args.db)
    return 0 if out.ok else 1


def _print_outcome(out, db: Path) -> None:
    print(f"sweep finished in {out.seconds:.0f} s: {len(out.completed)} runs done now, {len(out.already_done)} "
          f"were done before, {len(out.failed)} failed; results in {db}")
    for run_id, msg in out.failed.items():
        print(f"  failed {run_id}: {msg.splitlines()[-1] if msg else ''}")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ...sim.cli import run_simulate
    from ..run.trained import load_run_for_simulation

    return run_simulate(args, load_run=load_run_for_simulation)


def _cmd_run(args: argparse.Namespace) -> int:
    import time

    from ..run.sweep import _mmss, load_sweep, run_sweep

    t0 = time.time()
    from ..query.views import (CostViewData, build_report_data, cost_models, format_pattern_costs, load_table,
                               native_gains, print_fronts)

    path = args.sweep or default_sweep_path()
    if not path.is_file():
        from ...core import ConfigError

        raise ConfigError(f"the default sweep {path} is missing (install from the source tree with "
                          "`pip install -e .`, or give a sweep YAML)")
    sweep = load_sweep(path)
    out = run_sweep(sweep, db=args.db, workdir=args.workdir, workers=args.workers, executor=args.executor,
                    address=args.address, resimulate=args.resimulate, retry_failed=args.retry_failed,
                    threads=args.threads)
    _print_outcome(out, args.db)
    views = []
    for cost in cost_models(args.db, sweep.name):
        table = load_table(args.db, sweep.name, cost)
        print(f"\n=== {cost.label} ===\n{cost.note}\n")
        print_fronts(table, cost=cost)
        print(format_pattern_costs(table, cost))
        picks, errors = _default_picks(table, args, cost)
        _print_picks(picks, errors, cost)
        views.append(CostViewData(cost, table, picks, errors))
    gains = native_gains(args.db, sweep.name, args.workdir)
    for gain in gains:
        print("\n" + gain.statement())
    from ..report.report import write_report

    path = write_report(args.report, build_report_data(args.db, sweep.name, views, gains), figure_files=True)
    print(f"\nreport: {path}   results: {args.db}   runs: {args.workdir}/   (done in {_mmss(time.time() - t0)})")
    return 0 if out.ok else 1


def _limits(args: argparse.Namespace, metric):
    """The pick constraints of the command line, for a table judged by ``metric``."""
    from ..decide.quality import metric_limit
    from ..query.views import PickLimits

    return PickLimits(metric_limit(args.limit, args.min_accuracy, metric), args.max_latency, args.max_energy,
                      getattr(args, "max_drop", None), args.max_footprint)


def _existing_store(args: argparse.Namespace):
    """The result store of ``--db`` when it exists (for the test metric printed beside a pick), else None."""
    from ...store import ResultStore

    db = getattr(args, "db", None)
    return ResultStore(db, create=False, read_only=True) if db is not None and Path(db).is_file() else None


def _default_picks(table, args, cost=None):
    """Without explicit limits: the fastest and the most energy-efficient candidate per target
    within ``--max-drop`` of the dense baseline; with limits: one pick per target under them."""
    from ..query.views import make_picks

    limits = _limits(args, table.metric)
    store = _existing_store(args)
    if limits.explicit:
        return make_picks(table, None, limits, cost=cost, store=store)
    picks, errors = [], []
    for objective in ("latency_s", "energy_j"):
        p, e = make_picks(table, None, limits, objective=objective, cost=cost, store=store)
        picks += p
        errors += e
    return picks, errors


def _print_picks(picks, errors, cost=None) -> None:
    """A compact table (the full explanations are in the report and from `pgf-sim pick`)."""
    from ...sim.report_table import si

    from ..report.report_figures import GOALS as goals

    print(f"\npicks (train this for that target){f' [{cost.label}]' if cost else ''}:")
    for p in picks:
        b, r, m = p.best, p.runner_up, p.metric
        print(f"  {p.hardware:<18} {goals.get(p.objective, 'min ' + p.objective):<12} -> {b.label:<14} "
              f"{m.name} (val) {m.fmt(b.accuracy_mean, b.accuracy_std if b.n_seeds > 1 else None):<22}"
              f"  latency {si(b.latency_s, 's'):>9}  energy {si(b.energy_j, 'J'):>9}"
              f"  (runner-up: {r.label if r else '-'})")
    for p in picks[:len({q.hardware for q in picks})]:
        floor = p.constraints.get("metric_limit")
        if floor is not None:
            sense = ">=" if p.metric.higher_is_better else "<="
            print(f"  on {p.hardware}: candidates need mean {p.metric.name} {sense} {p.metric.fmt(floor)}")
    for e in errors:
        print(f"  {e}")


def _cmd_pick(args: argparse.Namespace) -> int:
    import sys

    from ..decide.records import emit, pick_record
    from ..query.views import cost_model, cost_models, default_view, load_table, make_picks, resolve_targets

    cost = (default_view(args.db, args.sweep, args.runtime) if args.cost_model is None
            else cost_model(args.db, args.sweep, args.cost_model, args.runtime))
    table = load_table(args.db, args.sweep, cost)
    hws = resolve_targets(args.db, args.sweep, args.hw)
    picks, errors = make_picks(table, hws, _limits(args, table.metric), objective=args.objective, model=args.model,
                               cost=cost, store=_existing_store(args))
    if args.format != "table":
        records = [pick_record(p, cost.name, cost.runtime) for p in picks]
        print(emit(records, args.format, document={"picks": records, "errors": list(errors), "cost_model": cost.name,
                                                   "runtime": cost.runtime, "cost_view": cost.label}))
        if args.format == "csv":  # csv has no place for the errors: stderr keeps stdout parseable
            for e in errors:
                print(e, file=sys.stderr)
        return 0 if picks and not errors else 1
    for p in picks:  # each explanation ends with the cost view and its runtime
        print(p.explanation)
    for e in errors:
        print(e)
    others = [c for c in cost_models(args.db, args.sweep) if (c.name, c.runtime) != (cost.name, cost.runtime)]
    if cost.name == "trained" and any(c.name == "deploy" for c in others):
        print("(this sweep also has a deployment-scale proxy cost: add --cost-model deploy)")
    other_runtimes = sorted({c.runtime for c in others} - {cost.runtime})
    if other_runtimes:
        print(f"(this sweep was also priced in the {', '.join(other_runtimes)} runtime: add --runtime NAME)")
    return 0 if picks and not errors else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from ...store import ResultStore
    from ..query.views import CostViewData, build_report_data, cost_model, cost_models, load_table, native_gains
    from ..report.report import export_png, write_report

    from ...core.files import check_output_dir

    if Path(args.out).parent.is_dir():
        check_output_dir(args.out)  # a device, FIFO or link as --out: refused before any work
    name = ResultStore(args.db, create=False, read_only=True).sweep_info(args.sweep).sweep
    if args.cost_model == "both":
        costs = cost_models(args.db, name)
        if args.runtime is not None:
            costs = [c for c in costs if c.runtime == args.runtime] or [cost_model(args.db, name, "trained", args.runtime)]
    else:
        costs = ([cost_model(args.db, name, args.cost_model, args.runtime)] if args.runtime is not None else
                 [c for c in cost_models(args.db, name) if c.name == args.cost_model]
                 or [cost_model(args.db, name, args.cost_model)])
    views = []
    for cost in costs:
        table = load_table(args.db, name, cost)
        views.append(CostViewData(cost, table, *_default_picks(table, args, cost)))
    gains = native_gains(args.db, name, args.workdir) if args.workdir.is_dir() else []
    path = write_report(args.out, build_report_data(args.db, name, views, gains), figure_files=True)
    print(f"report: {path} ({'; '.join(c.label for c in costs)}); figures: {path.parent / (path.stem + '_figures')}/")
    if args.png:
        export_png(path, args.png)
        print(f"png: {args.png}")
    return 0


def _cmd_dse(args: argparse.Namespace) -> int:
    from ...core import NM
    from ...sim.hardware import load_hardware
    from ..decide.records import dse_records, emit
    from ..explore.dse import parse_set
    from ..query.views import TrainedSource, explore_dse, format_dse

    res, gain = explore_dse(load_hardware(args.hw), [parse_set(s) for s in args.sets], models=args.model,
                            patterns=[NM.parse(p) for p in args.pattern], batch=args.batch, seq_len=args.seq_len,
                            runtime=args.runtime,
                            trained=TrainedSource(args.db, args.sweep, args.workdir) if args.trained else None,
                            native=NM.parse(args.native) if args.native else None)
    records = dse_records(res)
    doc = {"base": res.base, "rows": records, "native_gain": None if gain is None else gain.statement()}
    print(emit(records, args.format, table=format_dse(res, gain), document=doc))
    return 0


def _cmd_mixed(args: argparse.Namespace) -> int:
    import torch

    from ...core import NM
    from ..decide.records import emit, mixed_records
    from ..explore.mixed_verify import run_mixed
    from ..query.views import resolve_targets

    torch.set_num_threads(max(1, args.threads))
    patterns = tuple(NM.parse(p) for p in args.patterns.split(",")) if args.patterns else None
    (hw,) = resolve_targets(args.db, args.sweep, [args.hw])  # a target label or the sweep's YAML path
    res = run_mixed(db=args.db, sweep=args.sweep, workdir=args.workdir, hw=hw, run_id=args.run,
                    recipe=args.recipe, patterns=patterns, budget=args.budget, metric=args.metric,
                    finetune_steps=args.finetune_steps, train=not args.no_train, progress=args.progress,
                    runtime=args.runtime)
    layers, doc = mixed_records(res)
    print(emit(layers, args.format, table=res.format(), document=doc))
    return 0
