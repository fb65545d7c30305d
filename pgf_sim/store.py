"""The embedded result database (SQLite): runs, per-step metrics, layers, diagnostics.

Several processes may write at once (parallel sweeps, DDP's rank 0 beside a report): the file
is in WAL mode (readers never block the writer) and every connection waits up to
``busy_timeout_s`` for the write lock instead of failing. Each write is one short transaction.

Durability contract with the trainer: metrics are buffered in memory and written at each
checkpoint, *before* the checkpoint file. A run killed in between leaves metrics past its last
checkpoint; ``truncate_after(run_id, step)`` on resume drops them, so nothing is duplicated and
at most the steps since the last checkpoint are lost. Other parts add their own tables via
``connect()``.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    config TEXT NOT NULL,            -- the full ExperimentConfig as JSON
    recipe TEXT NOT NULL,
    pattern TEXT NOT NULL,           -- target N:M, e.g. '2:4' ('1:1' = dense)
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    started_at REAL NOT NULL,        -- unix time, s
    finished_at REAL,
    final_step INTEGER,
    final_accuracy REAL,             -- test accuracy in [0, 1] of the final (masked) model
    train_flops REAL,                -- total training FLOPs over the schedule (fwd + dgrad + wgrad)
    train_flops_json TEXT,           -- their split, JSON
    message TEXT                     -- why a run failed
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, key TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, step, key)
);
CREATE TABLE IF NOT EXISTS layers (
    run_id TEXT NOT NULL, layer TEXT NOT NULL, role TEXT, pattern TEXT NOT NULL,
    shape TEXT NOT NULL,             -- JSON list, e.g. [256, 64]
    PRIMARY KEY (run_id, layer)
);
CREATE TABLE IF NOT EXISTS diagnostics (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, layer TEXT NOT NULL, key TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, step, layer, key)
);
"""


class ResultStore:
    def __init__(self, path: str | Path, *, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    def _init_schema(self) -> None:
        # Switching to WAL needs an exclusive lock and SQLite does not wait on its busy handler
        # for it, so processes opening a new database together retry briefly. The mode is
        # persistent: once set, later opens only read it.
        for attempt in range(100):
            try:
                with self.connect() as con:
                    if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        con.execute("PRAGMA journal_mode=WAL")
                    con.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.02 * (1 + attempt % 10))

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection whose ``with`` block is one transaction (committed on success)."""
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_s)
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        try:
            with con:
                yield con
        finally:
            con.close()

    # --- runs -----------------------------------------------------------------------------
    def start_run(self, run_id: str, *, name: str, config: dict[str, Any], recipe: str, pattern: str, seed: int) -> None:
        """Insert the run, or mark an existing one running again (resume)."""
        with self.connect() as con:
            con.execute(
                "INSERT INTO runs (run_id, name, config, recipe, pattern, seed, status, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running', ?) "
                "ON CONFLICT(run_id) DO UPDATE SET status='running', finished_at=NULL, message=NULL",
                (run_id, name, json.dumps(config, sort_keys=True), recipe, pattern, seed, time.time()),
            )

    def finish_run(self, run_id: str, *, final_step: int, final_accuracy: float,
                   train_flops: dict[str, float] | None = None) -> None:
        total = sum(train_flops.values()) if train_flops else None
        with self.connect() as con:
            con.execute(
                "UPDATE runs SET status='finished', finished_at=?, final_step=?, final_accuracy=?, "
                "train_flops=?, train_flops_json=? WHERE run_id=?",
                (time.time(), final_step, final_accuracy, total,
                 json.dumps(train_flops) if train_flops else None, run_id),
            )

    def fail_run(self, run_id: str, message: str) -> None:
        with self.connect() as con:
            con.execute("UPDATE runs SET status='failed', finished_at=?, message=? WHERE run_id=?",
                        (time.time(), message, run_id))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.connect() as con:
            row = con.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return _run_dict(row) if row else None

    def list_runs(self, *, name: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if name is not None:
            query, args = query + " AND name=?", args + [name]
        if status is not None:
            query, args = query + " AND status=?", args + [status]
        with self.connect() as con:
            rows = con.execute(query + " ORDER BY started_at, run_id", args).fetchall()
        return [_run_dict(r) for r in rows]

    # --- per-step data --------------------------------------------------------------------
    def add_metrics(self, run_id: str, rows: Iterable[tuple[int, str, float]]) -> None:
        """``rows`` of (step, key, value), written in one transaction."""
        with self.connect() as con:
            con.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)",
                            [(run_id, int(s), k, float(v)) for s, k, v in rows])

    def add_diagnostics(self, run_id: str, rows: Iterable[tuple[int, str, str, float]]) -> None:
        """``rows`` of (step, layer, key, value)."""
        with self.connect() as con:
            con.executemany("INSERT OR REPLACE INTO diagnostics VALUES (?, ?, ?, ?, ?)",
                            [(run_id, int(s), layer, k, float(v)) for s, layer, k, v in rows])

    def set_layers(self, run_id: str, layers: dict[str, tuple[str, tuple[int, ...], str | None]]) -> None:
        """``layers[name] = (pattern, shape, role)``; replaces what the run had."""
        with self.connect() as con:
            con.execute("DELETE FROM layers WHERE run_id=?", (run_id,))
            con.executemany("INSERT INTO layers VALUES (?, ?, ?, ?, ?)",
                            [(run_id, n, role, str(p), json.dumps(list(shape))) for n, (p, shape, role) in layers.items()])

    def truncate_after(self, run_id: str, step: int) -> None:
        """Drop metrics/diagnostics of steps > ``step`` (they are recomputed after a resume)."""
        with self.connect() as con:
            con.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, step))
            con.execute("DELETE FROM diagnostics WHERE run_id=? AND step>?", (run_id, step))

    def run_metrics(self, run_id: str, key: str | None = None) -> list[tuple[int, str, float]]:
        query, args = "SELECT step, key, value FROM metrics WHERE run_id=?", [run_id]
        if key is not None:
            query, args = query + " AND key=?", args + [key]
        with self.connect() as con:
            return [tuple(r) for r in con.execute(query + " ORDER BY step, key", args)]

    def run_layers(self, run_id: str) -> list[dict[str, Any]]:
        with self.connect() as con:
            rows = con.execute("SELECT layer, role, pattern, shape FROM layers WHERE run_id=? ORDER BY layer", (run_id,))
            return [{"layer": r["layer"], "role": r["role"], "pattern": r["pattern"], "shape": json.loads(r["shape"])}
                    for r in rows]

    def run_diagnostics(self, run_id: str, *, layer: str | None = None, key: str | None = None) -> list[tuple[int, str, str, float]]:
        query, args = "SELECT step, layer, key, value FROM diagnostics WHERE run_id=?", [run_id]
        for col, val in (("layer", layer), ("key", key)):
            if val is not None:
                query, args = query + f" AND {col}=?", args + [val]
        with self.connect() as con:
            return [tuple(r) for r in con.execute(query + " ORDER BY step, layer, key", args)]


def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["config"] = json.loads(out["config"])
    out["train_flops_json"] = json.loads(out["train_flops_json"]) if out["train_flops_json"] else None
    return out
