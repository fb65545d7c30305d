"""``pgf-sim results``: what the result database holds, as a table, JSON or CSV.

- ``pgf-sim results``: every run (sweep point or lone ``pgf-sim train`` run) with its sweep,
  recipe, pattern, seed, status, final task metric on the validation split (named per run:
  ``metric``, e.g. ``bpc``, written as ``final_quality``) and training FLOPs;
- ``pgf-sim results --sweep NAME``: only that sweep's points;
- ``pgf-sim results RUN_ID``: one run: its fields, final metrics, per-layer patterns and the
  simulated cost on every target of its sweeps (each cost view).

JSON and CSV keep SI units (seconds, joules, bytes, FLOPs); the table scales them.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ...core import ConfigError

DEFAULT_DB = Path("pgf_results.sqlite")
STATUSES = ("running", "interrupted", "finished", "failed")  # as ``store.run_status`` reports them


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "results", help="list the runs and sweep points in the result database, or show one run",
        description="Without RUN_ID: one row per run (sweep, recipe, pattern, seed, status, the task metric of "
                    "the final model on the validation split, e.g. bits per character or accuracy, and training "
                    "FLOPs). With RUN_ID: the run's fields, final metrics, per-layer N:M patterns and its "
                    "simulated cost on each target. --format json|csv for scripts (SI units).")
    p.add_argument("run", nargs="?", metavar="RUN_ID", help="show this run (default: list all runs)")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"result database (default: {DEFAULT_DB})")
    p.add_argument("--sweep", help="list only this sweep's points")
    p.add_argument("--status", choices=STATUSES,
                   help="list only runs with this status (interrupted: stopped by Ctrl-C or SIGTERM, resumable)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="table: readable text (default); json / csv: machine-readable, SI units")
    p.set_defaults(func=_cmd_results)


def _cmd_results(args: argparse.Namespace) -> int:
    from ..decide.records import emit

    if not args.db.is_file():
        raise ConfigError(f"no result database at {args.db}; run `pgf-sim train`, `pgf-sim sweep` or `pgf-sim run` first")
    from ...store import ResultStore

    store = ResultStore(args.db, create=False, read_only=True)
    if args.run:
        doc = run_details(store, args.run)
        records = [{"run_id": doc["run_id"], "hardware": s["hardware"], "cost_model": s["cost_model"],
                    **{k: v for k, v in s.items() if k not in ("hardware", "cost_model")}}
                   for s in doc["simulations"]] or [{k: doc[k] for k in _RUN_KEYS}]  # trained, never simulated
        print(emit(records, args.format, table=_format_run(doc), document=doc))
        return 0
    rows = list_runs(store, sweep=args.sweep, status=args.status)
    print(emit(rows, args.format, table=_format_list(rows), document={"runs": rows}))
    return 0


def list_runs(store: Any, *, sweep: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """One flat row per run (oldest first): ``run_id, sweep, name, recipe, pattern, seed, status,
    final_step, metric, direction, final_quality, train_flops`` (and ``final_accuracy`` on accuracy
    tasks); ``sweep`` lists every sweep the run is a point of. ``final_quality`` is the run's task
    metric (named by ``metric``: ``accuracy``, ``bpc`` ...) of the final model on the validation split."""
    member: dict[str, list[str]] = {}
    known = store.sweeps()
    if sweep is not None and sweep not in {s.sweep for s in known}:
        raise ConfigError(f"no sweep {sweep!r} in {store.path}; sweeps there: "
                          f"{', '.join(s.sweep for s in known) or 'none'}")
    for s in known:
        for pt in store.sweep_points(s.sweep):
            member.setdefault(pt.run_id, []).append(s.sweep)
    stored = "running" if status == "interrupted" else status  # the store keeps interrupted runs as running
    rows = [_run_row(r, member.get(r.run_id, [])) for r in store.list_runs(status=stored)]
    return [r for r in rows if (sweep is None or sweep in r["sweep"].split(" ")) and (status is None or r["status"] == status)]


_RUN_KEYS = ("run_id", "sweep", "name", "recipe", "pattern", "seed", "status", "final_step", "metric",
             "direction", "final_quality", "train_flops")


def _run_row(run: Any, sweeps: list[str]) -> dict[str, Any]:
    """A store ``RunRow`` as a flat record (the pattern as its text, e.g. ``1:8`` or ``dense``;
    ``metric``: the name of the task metric ``final_quality`` holds, ``direction`` which way is
    better; ``final_accuracy``, its former name, is kept one release as an alias on accuracy tasks
    only, so no field named accuracy ever holds bpc)."""
    from ...store import run_status
    from ...train.experiment import metric_of

    m = metric_of(run.config or {})
    row = {"run_id": run.run_id, "sweep": " ".join(sweeps), "name": run.name, "recipe": run.recipe,
           "pattern": "dense" if run.pattern.is_dense else str(run.pattern), "seed": run.seed, "status": run_status(run),
           "final_step": run.final_step, "metric": m.name,
           "direction": "higher_is_better" if m.higher_is_better else "lower_is_better",
           "final_quality": run.final_accuracy, "train_flops": run.train_flops}
    if m.name == "accuracy":  # the former name, an alias only where it holds an accuracy
        row["final_accuracy"] = run.final_accuracy
    return row


def _final(row: dict[str, Any]) -> str:
    """The final validation metric of a row in its own unit: ``2.7250 bits/char`` or ``95.68%``."""
    from ...core.metric import get_metric

    return "-" if row["final_quality"] is None else get_metric(row["metric"]).fmt(row["final_quality"])


def run_details(store: Any, run_id: str) -> dict[str, Any]:
    """Everything about one run: its row, ``config``, ``final_metrics`` (the last value of each
    metric key), ``layers`` and ``simulations`` (per target and cost view, SI units)."""
    from ..run.sweep import simulate_spec

    run = store.get_run(run_id)
    if run is None:
        ids = [r.run_id for r in store.list_runs()]
        hint = [i for i in ids if i.startswith(run_id)]
        raise ConfigError(f"no run {run_id!r} in {store.path}" +
                          (f"; did you mean {', '.join(hint[:5])}?" if hint else
                           f"; `pgf-sim results` lists the {len(ids)} runs there"))
    final: dict[str, float] = {}
    for _, key, value in store.run_metrics(run_id):
        final[key] = value  # ordered by step: the last one wins
    sweeps = [s for s in store.sweeps() if any(p.run_id == run_id for p in store.sweep_points(s.sweep))]
    sims = []
    for s in sweeps:
        sim = simulate_spec(s.config)
        keys = [("trained", runtime, s.sim_key if i == 0 else key) for i, (runtime, key) in enumerate(sim.keys())]
        keys += [("deploy", d.runtime, d.key) for d in sim.deploy_specs()]
        for view, runtime, key in keys:
            for t in store.sim_totals(key, [run_id]):
                sims.append({"hardware": t.hw, "cost_model": view, "runtime": runtime, "sim_key": key, "latency_s": t.latency_s,
                             "energy_j": t.energy_j, "exec_flops": t.exec_flops, "dense_flops": t.dense_flops,
                             "weight_bytes": t.weight_bytes, "dram_bytes": t.dram_bytes,
                             "footprint_bytes": t.footprint_bytes, "dram_capacity_bytes": t.dram_capacity_bytes})
    out = _run_row(run, [s.sweep for s in sweeps])
    out.update(started_at=run.started_at, finished_at=run.finished_at, message=run.message,
               train_flops_split=run.train_flops_split, sweeps=[s.sweep for s in sweeps], final_metrics=final,
               layers=[{"layer": r.layer, "role": r.role, "pattern": str(r.pattern), "shape": list(r.shape)}
                       for r in store.run_layers(run_id)],
               simulations=sims, config=run.config)
    return out


def _format_list(rows: list[dict[str, Any]]) -> str:
    from ...sim.report_table import format_columns, si

    if not rows:
        return "(no runs)"
    from ...core.metric import get_metric

    names = list(dict.fromkeys(r["metric"] for r in rows))
    head = (f"validation {get_metric(names[0]).label}" if len(names) == 1 else "validation metric")
    table = [[r["run_id"], r["sweep"] or "-", r["recipe"], r["pattern"], r["seed"], r["status"], _final(r),
              si(r["train_flops"], "FLOP")] for r in rows]
    counts = {s: n for s in ("finished", "running", "interrupted", "failed")
              if (n := sum(r["status"] == s for r in rows)) or s != "interrupted"}
    return (format_columns(["run", "sweep", "recipe", "pattern", "seed", "status", head, "training"],
                           table, right=(4, 6, 7)) +
            "\n(" + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"; `pgf-sim results RUN_ID` shows one)")


def _format_run(doc: dict[str, Any]) -> str:
    from ...sim.report_table import format_columns, si

    from ...core.metric import get_metric

    lines = [f"run {doc['run_id']} ({doc['status']}): {doc['name']}, {doc['recipe']} {doc['pattern']}, seed {doc['seed']}",
             f"  sweeps: {', '.join(doc['sweeps']) or '-'}",
             f"  final validation {get_metric(doc['metric']).label}: {_final(doc)} at step {doc['final_step']}",
             f"  training FLOPs: {si(doc['train_flops'], 'FLOP')}"]
    if doc.get("message"):
        last = doc["message"].splitlines()[-1]
        lines.append(f"  {last}" if doc["status"] == "interrupted" else f"  {doc['status']}: {last}")
    if doc["final_metrics"]:
        lines.append("  last value of each metric: " + ", ".join(f"{k} {v:.4g}" for k, v in doc["final_metrics"].items()))
    if doc["layers"]:
        lines += ["", format_columns(["layer", "role", "pattern", "shape"],
                                     [[r["layer"], r["role"] or "-", r["pattern"], "x".join(map(str, r["shape"]))]
                                      for r in doc["layers"]])]
    if doc["simulations"]:
        lines += ["", format_columns(
            ["target", "cost model", "latency", "energy", "executed", "weights", "memory"],
            [[s["hardware"], s["cost_model"], si(s["latency_s"], "s"), si(s["energy_j"], "J"),
              si(s["exec_flops"], "FLOP"), si(s["weight_bytes"], "B"),
              "-" if s["footprint_bytes"] is None else si(s["footprint_bytes"], "B")] for s in doc["simulations"]],
            right=(2, 3, 4, 5, 6))]
    return "\n".join(lines)

