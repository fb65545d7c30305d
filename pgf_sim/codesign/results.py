"""Sweep membership and simulation results, as tables in the shared SQLite result store.

The training side (``pgf_sim.store.ResultStore``) owns the runs and their metrics; this module
adds three tables to the same database file:

- ``sweeps``: one row per sweep: its simulation settings, hardware targets and config.
- ``sweep_points``: which run belongs to which sweep, with its grid coordinates
  (recipe, pattern, seed, model label, swept parameters).
- ``sim_totals``: one row per (run_id, hw, sim_key): inference FLOPs (dense and executed),
  latency, energy, weight and DRAM bytes of the trained model's real per-layer masks on one
  hardware target. ``sim_key`` names the simulation settings (batch, dtype), so the same
  trained run can be simulated under several settings without one overwriting the other; the
  deployment-scale proxy cost (``deploy.py``) is stored under its own ``deploy=...`` key.
- ``sim_layers``: the per-layer rows behind each totals row.

Several worker processes write at once, so every connection uses WAL and a busy timeout, and
every write is one short ``BEGIN IMMEDIATE`` transaction. Writes are idempotent: a (run_id,
hw, sim_key) that is already stored is left untouched (first writer wins, the rows are equal
anyway: the simulator is deterministic), and the totals row is written in the same
transaction as its layer rows, so a totals row present means the layers are complete.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..core import ConfigError

BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    sweep TEXT PRIMARY KEY,
    sim_key TEXT NOT NULL,
    hardware_json TEXT NOT NULL,     -- [[label, name or path], ...] in the sweep's order
    config_json TEXT NOT NULL,       -- the sweep config as written (after overrides)
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_points (
    sweep TEXT NOT NULL,
    run_id TEXT NOT NULL,
    recipe TEXT NOT NULL,
    pattern TEXT NOT NULL,
    seed INTEGER NOT NULL,
    model TEXT NOT NULL,
    params_json TEXT NOT NULL,
    added_at REAL NOT NULL,
    PRIMARY KEY (sweep, run_id)
);
CREATE TABLE IF NOT EXISTS sim_totals (
    run_id TEXT NOT NULL,
    hw TEXT NOT NULL,
    sim_key TEXT NOT NULL,
    batch INTEGER NOT NULL,
    dtype TEXT NOT NULL,
    dense_flops REAL NOT NULL,
    exec_flops REAL NOT NULL,
    latency_s REAL NOT NULL,
    energy_j REAL NOT NULL,
    weight_bytes REAL NOT NULL,
    dram_bytes REAL NOT NULL,
    train_flops REAL,
    n_layers INTEGER NOT NULL,
    simulated_at REAL NOT NULL,
    PRIMARY KEY (run_id, hw, sim_key)
);
CREATE TABLE IF NOT EXISTS sim_layers (
    run_id TEXT NOT NULL,
    hw TEXT NOT NULL,
    sim_key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    layer TEXT NOT NULL,
    kind TEXT NOT NULL,
    role TEXT NOT NULL,
    pattern TEXT NOT NULL,
    exec_pattern TEXT NOT NULL,
    dense_flops REAL NOT NULL,
    exec_flops REAL NOT NULL,
    weight_bytes REAL NOT NULL,
    dram_bytes REAL NOT NULL,
    latency_s REAL NOT NULL,
    energy_j REAL NOT NULL,
    bound TEXT NOT NULL,
    PRIMARY KEY (run_id, hw, sim_key, idx)
);
"""

TOTAL_METRICS = ("dense_flops", "exec_flops", "latency_s", "energy_j", "weight_bytes", "dram_bytes")
LAYER_FIELDS = (
    "layer", "kind", "role", "pattern", "exec_pattern", "dense_flops", "exec_flops",
    "weight_bytes", "dram_bytes", "latency_s", "energy_j", "bound",
)


def sim_key(batch: int, dtype: str) -> str:
    """The name of one set of simulation settings, part of the ``sim_totals`` key."""
    return f"batch={batch},dtype={dtype}"


@contextmanager
def connect(db: Any) -> Iterator[sqlite3.Connection]:
    """A connection to the result DB with WAL and a busy timeout; ``db`` is a path or a store.

    A ``ResultStore`` (anything with ``.connect()``) is used through its own connection so
    the pragmas and file are the store's; a path opens the file directly with the same pragmas.
    """
    if hasattr(db, "connect"):
        with db.connect() as conn:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _ensure_schema(conn)
            yield conn
        return
    path = Path(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the write
    # lock up front instead of failing on lock upgrade halfway through a transaction.
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")
        _ensure_schema(conn)
        yield conn
    finally:
        conn.close()


_SCHEMA_DONE: set[str] = set()  # database files whose tables this process has created


def _ensure_schema(conn: sqlite3.Connection) -> None:
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    if path in _SCHEMA_DONE:
        return
    with _write(conn):
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                conn.execute(stmt)
    _SCHEMA_DONE.add(path)


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """One short write transaction that takes the write lock at once."""
    if conn.in_transaction:  # a store connection may have opened one implicitly
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def record_sweep(db: Any, sweep: str, key: str, hardware: Sequence[tuple[str, str]], config: Mapping[str, Any]) -> None:
    """Register (or update) a sweep's settings; the latest run of a sweep wins. ``hardware``:
    (label, name or path) per target."""
    with connect(db) as conn, _write(conn):
        conn.execute("INSERT OR REPLACE INTO sweeps VALUES (?,?,?,?,?)",
                     (sweep, key, json.dumps([list(h) for h in hardware]), json.dumps(config, sort_keys=True), time.time()))


def sweeps(db: Any) -> list[dict[str, Any]]:
    """Registered sweeps, most recently run first: ``hardware`` (labels), ``hardware_specs``
    ((label, name or path) pairs), ``sim_key``, ``config``."""
    with connect(db) as conn:
        rows = conn.execute("SELECT sweep, sim_key, hardware_json, config_json, updated_at FROM sweeps "
                            "ORDER BY updated_at DESC").fetchall()
    out = []
    for r in rows:
        specs = [tuple(h) for h in json.loads(r[2])]
        out.append({"sweep": r[0], "sim_key": r[1], "hardware": [label for label, _ in specs], "hardware_specs": specs,
                    "config": json.loads(r[3]), "updated_at": r[4]})
    return out


def record_points(db: Any, sweep: str, points: Iterable[Mapping[str, Any]]) -> int:
    """Register grid points (``run_id, recipe, pattern, seed, model, params``) under ``sweep``.

    Idempotent: an already registered (sweep, run_id) is kept as it was. Returns how many
    points were new.
    """
    now = time.time()
    rows = [
        (sweep, p["run_id"], p["recipe"], str(p["pattern"]), int(p["seed"]), p["model"],
         json.dumps(p.get("params", {}), sort_keys=True), now)
        for p in points
    ]
    with connect(db) as conn, _write(conn):
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO sweep_points VALUES (?,?,?,?,?,?,?,?)", rows)
        return conn.total_changes - before


def prune_points(db: Any, sweep: str, keep: Iterable[str]) -> int:
    """Drop the points of ``sweep`` whose run is not in ``keep`` (the sweep's current grid), so
    runs of an edited grid or of an older resolved config (another run id) stop counting as
    seeds of its candidates; the runs and their simulations stay in the DB. Returns how many."""
    keep = set(keep)
    with connect(db) as conn, _write(conn):
        stale = [r for (r,) in conn.execute("SELECT run_id FROM sweep_points WHERE sweep=?", (sweep,)) if r not in keep]
        conn.executemany("DELETE FROM sweep_points WHERE sweep=? AND run_id=?", [(sweep, r) for r in stale])
    return len(stale)


def sweep_points(db: Any, sweep: str) -> list[dict[str, Any]]:
    with connect(db) as conn:
        cur = conn.execute(
            "SELECT run_id, recipe, pattern, seed, model, params_json FROM sweep_points "
            "WHERE sweep=? ORDER BY rowid", (sweep,))
        return [
            {"run_id": r[0], "recipe": r[1], "pattern": r[2], "seed": r[3], "model": r[4],
             "params": json.loads(r[5])}
            for r in cur.fetchall()
        ]


def write_simulation(
    db: Any,
    run_id: str,
    hw: str,
    key: str,
    *,
    batch: int,
    dtype: str,
    totals: Mapping[str, float],
    layers: Sequence[Mapping[str, Any]],
    train_flops: float | None = None,
    replace: bool = False,
) -> bool:
    """Store one simulation (totals + per-layer rows) in one transaction.

    Returns True if written, False if (run_id, hw, key) was already stored and ``replace`` is
    False. ``totals`` needs every name of ``TOTAL_METRICS``; each layer row every name of
    ``LAYER_FIELDS``.
    """
    missing = [k for k in TOTAL_METRICS if k not in totals]
    if missing:
        raise KeyError(f"simulation totals lack {missing}")
    layer_rows = [
        (run_id, hw, key, i, *(_layer_value(row, f) for f in LAYER_FIELDS))
        for i, row in enumerate(layers)
    ]
    with connect(db) as conn, _write(conn):
        if replace:
            conn.execute("DELETE FROM sim_layers WHERE run_id=? AND hw=? AND sim_key=?", (run_id, hw, key))
            conn.execute("DELETE FROM sim_totals WHERE run_id=? AND hw=? AND sim_key=?", (run_id, hw, key))
        cur = conn.execute(
            "INSERT OR IGNORE INTO sim_totals VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, hw, key, int(batch), dtype, *(float(totals[k]) for k in TOTAL_METRICS),
             None if train_flops is None else float(train_flops), len(layer_rows), time.time()),
        )
        if cur.rowcount == 0:
            return False
        conn.executemany(f"INSERT INTO sim_layers VALUES ({','.join('?' * (4 + len(LAYER_FIELDS)))})", layer_rows)
        return True


def _layer_value(row: Mapping[str, Any], name: str) -> Any:
    value = row[name]
    if name in ("layer", "kind", "role", "pattern", "exec_pattern", "bound"):
        return str(value)
    return float(value)


def simulated(db: Any, key: str, run_ids: Iterable[str] | None = None) -> set[tuple[str, str]]:
    """The (run_id, hw) pairs with a stored simulation under settings ``key``."""
    with connect(db) as conn:
        rows = conn.execute("SELECT run_id, hw FROM sim_totals WHERE sim_key=?", (key,)).fetchall()
    wanted = None if run_ids is None else set(run_ids)
    return {(r, h) for r, h in rows if wanted is None or r in wanted}


def sim_totals(db: Any, key: str, run_ids: Iterable[str] | None = None, hw: str | None = None) -> list[dict[str, Any]]:
    """Totals rows (dicts with run_id, hw, the metrics, train_flops, simulated_at)."""
    sql = "SELECT * FROM sim_totals WHERE sim_key=?"
    args: list[Any] = [key]
    if hw is not None:
        sql += " AND hw=?"
        args.append(hw)
    with connect(db) as conn:
        cur = conn.execute(sql + " ORDER BY run_id, hw", args)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    if run_ids is not None:
        wanted = set(run_ids)
        rows = [r for r in rows if r["run_id"] in wanted]
    return rows


def sim_layers(db: Any, run_id: str, hw: str, key: str) -> list[dict[str, Any]]:
    with connect(db) as conn:
        cur = conn.execute(
            "SELECT * FROM sim_layers WHERE run_id=? AND hw=? AND sim_key=? ORDER BY idx", (run_id, hw, key))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def sweep_info(db: Any, sweep: str | None = None) -> dict[str, Any]:
    """A registered sweep's row (``sweeps()``); ``None``: the most recently run sweep."""
    known = sweeps(db)
    if not known:
        raise ConfigError(f"{_db_name(db)} holds no sweep results yet; run `pgf-sim sweep` or `pgf-sim run` first")
    if sweep is None:
        return known[0]
    for row in known:
        if row["sweep"] == sweep:
            return row
    raise ConfigError(f"no sweep {sweep!r} in {_db_name(db)}; sweeps there: {', '.join(r['sweep'] for r in known)}")


def _db_name(db: Any) -> str:
    return str(getattr(db, "path", db))


def candidate_rows(store: Any, sweep: str, key: str | None = None) -> list[dict[str, Any]]:
    """Per-seed rows of a sweep for ``pareto.aggregate_seeds``: one per (run, hardware).

    Finished runs carry their accuracy and simulated costs; failed runs (e.g. NaN loss) are
    included with accuracy ``None`` on every target of the sweep, so their candidate's mean is
    NaN and is reported off the front instead of a lucky seed standing for an unstable recipe.
    Runs not started or still running are left out (their sweep is not finished).
    ``inference_flops`` is the executed FLOPs (hardware-aware: a pattern the hardware cannot
    skip costs its dense FLOPs). ``key``: the simulation settings whose costs are joined
    (default: the sweep's trained-model key; ``deploy.DeploySpec.key`` for the proxy cost).
    """
    info = sweep_info(store, sweep)
    points = sweep_points(store, sweep)
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for row in sim_totals(store, key or info["sim_key"], [p["run_id"] for p in points]):
        totals[(row["run_id"], row["hw"])] = row
    hardware = info["hardware"]
    out = []
    for p in points:
        run = store.get_run(p["run_id"])
        if run is None or run["status"] not in ("finished", "failed"):
            continue
        for hw in hardware:
            t = totals.get((p["run_id"], hw))
            if run["status"] == "finished" and t is None:
                continue  # simulation not stored yet (sweep interrupted after training)
            out.append({
                "hardware": hw, "model": p["model"], "recipe": recipe_label(p["recipe"], p["params"]),
                "pattern": p["pattern"],
                "run_id": p["run_id"],
                "accuracy": run["final_accuracy"] if run["status"] == "finished" else None,
                "inference_flops": t["exec_flops"] if t else None,
                "latency_s": t["latency_s"] if t else None,
                "energy_j": t["energy_j"] if t else None,
                "weight_bytes": t["weight_bytes"] if t else None,
                "train_flops": run.get("train_flops"),
            })
    return out


def recipe_label(recipe: str, params: dict[str, Any]) -> str:
    """The recipe label with its swept parameters, so each parameter value is its own candidate:
    ``mdgf(dense_fraction=0.1)`` (the last part of each dotted key)."""
    if not params:
        return recipe
    parts = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in sorted(params.items())]
    return f"{recipe}({', '.join(parts)})"


def from_sim_result(sim: Any) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(totals, layer rows) in this module's column names from a ``pgf_sim.sim.simulate.SimResult``."""
    t = sim.totals
    totals = {"dense_flops": t["dense_flops"], "exec_flops": t["exec_flops"], "latency_s": t["time_s"],
              "energy_j": t["energy_j"], "weight_bytes": t["weight_bytes"], "dram_bytes": t["dram_bytes"]}
    layers = [{**{k: r[k] for k in LAYER_FIELDS if k != "latency_s"}, "latency_s": r["time_s"]} for r in sim.rows]
    return totals, layers
