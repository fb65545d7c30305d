"""The result database (SQLite), and the only module that talks to it.

Tables:

- ``runs``, ``metrics``, ``layers``, ``diagnostics``: the training side's runs, per-step metrics,
  per-layer patterns/shapes and diagnostics;
- ``sweeps``: one row per sweep: its simulation settings, hardware targets and config;
- ``sweep_points``: which run belongs to which sweep, with its grid coordinates;
- ``sim_totals``: one row per (run_id, hw, sim_key): inference FLOPs (dense and executed),
  latency, energy, weight and DRAM bytes, memory footprint and the target's capacity, of a
  trained model on one hardware target. ``sim_key``
  names the simulation settings (batch, dtype; the deployment-scale proxy has its own key), so
  one run can be simulated under several settings without one overwriting the other;
- ``sim_layers``: the per-layer rows behind each totals row.

Reads return frozen rows (``RunRow``, ``SweepRow``, ...) whose patterns are ``NM`` values,
parsed here; patterns are written as ``"N:M"`` text, and every dense pattern as ``"dense"``.

Several processes write at once (parallel sweep workers, DDP's rank 0 beside a report): the
file is in WAL mode (readers never block the writer), every connection waits up to
``busy_timeout_s`` for the write lock instead of failing, and every write is one short
``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, never upgraded halfway).
Simulation writes are idempotent: a stored (run_id, hw, sim_key) is left as it is (the
simulator is deterministic) and the totals row is written in the same transaction as its layer
rows, so a totals row present means its layers are complete.

Durability contract with the trainer: metrics are buffered in memory and written at each
checkpoint, *before* the checkpoint file. A run killed in between leaves metrics past its last
checkpoint; ``truncate_after(run_id, step)`` on resume drops them, so nothing is duplicated and
at most the steps since the last checkpoint are lost.

Every SQLite failure (a corrupt or truncated file, a read-only folder, a path that is a
directory, a full disk) becomes a one-line ``StoreError`` naming the file; opening a database
that must already exist (``ResultStore(path, create=False)``) never creates one.

The schema version is ``PRAGMA user_version`` (``SCHEMA_VERSION``), checked on open before
anything is written: a newer one is refused (upgrade pgf-sim), an older one is migrated (columns
added since, ``OPTIONAL_TOTALS``, are appended and read as ``None`` in the rows stored before),
and a database that is not a pgf-sim store (another application's tables) is refused untouched.
``read_only=True`` (the reading commands: results, pick, report, study) opens the file with
SQLite's ``mode=ro``: nothing is created, migrated or switched to WAL, and a file on a
read-only medium or without write permission can still be read.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .core.errors import ConfigError, PgfSimError
from .core.pattern import NM

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    config TEXT NOT NULL,            -- the full ExperimentConfig as JSON
    recipe TEXT NOT NULL,
    pattern TEXT NOT NULL,           -- target N:M, e.g. '2:4' or 'dense'
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    started_at REAL NOT NULL,        -- unix time, s
    finished_at REAL,
    final_step INTEGER,
    final_accuracy REAL,             -- test accuracy in [0, 1] of the final (masked) model
    train_flops REAL,                -- total training FLOPs over the schedule (fwd + dgrad + wgrad)
    train_flops_json TEXT,           -- their split, JSON
    message TEXT                     -- why a run failed, or where an interrupted one stopped
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
CREATE TABLE IF NOT EXISTS sweeps (
    sweep TEXT PRIMARY KEY,
    sim_key TEXT NOT NULL,
    hardware_json TEXT NOT NULL,     -- [[label, name or path], ...] in the sweep's order
    config_json TEXT NOT NULL,       -- the sweep config as written (after overrides)
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_points (
    sweep TEXT NOT NULL, run_id TEXT NOT NULL, recipe TEXT NOT NULL, pattern TEXT NOT NULL,
    seed INTEGER NOT NULL, model TEXT NOT NULL, params_json TEXT NOT NULL, added_at REAL NOT NULL,
    PRIMARY KEY (sweep, run_id)
);
CREATE TABLE IF NOT EXISTS sim_totals (
    run_id TEXT NOT NULL, hw TEXT NOT NULL, sim_key TEXT NOT NULL, batch INTEGER NOT NULL, dtype TEXT NOT NULL,
    dense_flops REAL NOT NULL, exec_flops REAL NOT NULL, latency_s REAL NOT NULL, energy_j REAL NOT NULL,
    weight_bytes REAL NOT NULL, dram_bytes REAL NOT NULL, train_flops REAL, n_layers INTEGER NOT NULL,
    simulated_at REAL NOT NULL,
    footprint_bytes REAL,            -- inference memory: stored weights + peak activations + KV cache
    dram_capacity_bytes REAL,        -- the target's memory capacity the footprint is checked against
    PRIMARY KEY (run_id, hw, sim_key)
);
CREATE TABLE IF NOT EXISTS sim_layers (
    run_id TEXT NOT NULL, hw TEXT NOT NULL, sim_key TEXT NOT NULL, idx INTEGER NOT NULL,
    layer TEXT NOT NULL, kind TEXT NOT NULL, role TEXT NOT NULL, pattern TEXT NOT NULL,
    exec_pattern TEXT NOT NULL, dense_flops REAL NOT NULL, exec_flops REAL NOT NULL,
    weight_bytes REAL NOT NULL, dram_bytes REAL NOT NULL, latency_s REAL NOT NULL, energy_j REAL NOT NULL,
    bound TEXT NOT NULL,
    PRIMARY KEY (run_id, hw, sim_key, idx)
);
"""

SCHEMA_VERSION = 1  # PRAGMA user_version; 0: a store written before the version was recorded
_OUR_TABLES = frozenset({"runs", "metrics", "layers", "diagnostics", "sweeps", "sweep_points", "sim_totals",
                         "sim_layers"})

TOTAL_METRICS = ("dense_flops", "exec_flops", "latency_s", "energy_j", "weight_bytes", "dram_bytes")
#: totals that may be absent (NULL): written by simulations since the footprint became a cost axis
OPTIONAL_TOTALS = ("footprint_bytes", "dram_capacity_bytes")
_TOTALS_COLUMNS = ("run_id", "hw", "sim_key", "batch", "dtype", *TOTAL_METRICS, "train_flops", "n_layers",
                   "simulated_at", *OPTIONAL_TOTALS)
LAYER_FIELDS = ("layer", "kind", "role", "pattern", "exec_pattern", "dense_flops", "exec_flops",
                "weight_bytes", "dram_bytes", "latency_s", "energy_j", "bound")
_TEXT_FIELDS = frozenset({"layer", "kind", "role", "bound"})
_PATTERN_FIELDS = frozenset({"pattern", "exec_pattern"})


def _required_columns() -> dict[str, set[str]]:
    """table -> the columns every pgf-sim store has (all but those a migration appends)."""
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(_SCHEMA)
        return {t: {r[1] for r in con.execute(f"PRAGMA table_info({t})")} - set(OPTIONAL_TOTALS) for t in _OUR_TABLES}
    finally:
        con.close()


class StoreError(PgfSimError):
    """The result database cannot be opened, read or written: names the file and why."""


def pattern_text(pattern: NM | str) -> str:
    """How a pattern is written to the database: ``"N:M"``, every dense pattern ``"dense"``."""
    p = NM.parse(pattern)
    return "dense" if p.is_dense else str(p)


def sim_key(batch: int, dtype: str, runtime: str = "eager") -> str:
    """The name of one set of simulation settings, part of the ``sim_totals`` key. The eager
    runtime's key has no runtime part (every key stored before runtimes existed was eager)."""
    return f"batch={batch},dtype={dtype}" + ("" if runtime == "eager" else f",runtime={runtime}")


# ------------------------------------------------------------------------------------ rows
@dataclass(frozen=True)
class RunRow:
    run_id: str
    name: str
    config: dict[str, Any]         # the full ExperimentConfig as a mapping
    recipe: str
    pattern: NM                    # the recipe's target pattern
    seed: int
    status: str                    # running | finished | failed
    started_at: float              # unix time, s
    finished_at: float | None
    final_step: int | None
    final_accuracy: float | None   # test accuracy in [0, 1] of the final (masked) model
    train_flops: float | None      # total training FLOPs over the schedule
    train_flops_split: dict[str, float] | None  # forward / input_grad / weight_grad (+ attention)
    message: str | None            # why a run failed


@dataclass(frozen=True)
class LayerRow:
    layer: str
    role: str | None
    pattern: NM
    shape: tuple[int, ...]


@dataclass(frozen=True)
class SweepRow:
    sweep: str
    sim_key: str
    hardware_specs: tuple[tuple[str, str], ...]  # (label, name or path) in the sweep's order
    config: dict[str, Any]
    updated_at: float

    @property
    def hardware(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.hardware_specs)


@dataclass(frozen=True)
class PointRow:
    run_id: str
    recipe: str                    # the recipe label of the grid
    pattern: NM
    seed: int
    model: str                     # model label ("" when the grid has no model axis)
    params: dict[str, Any]         # swept parameters, dotted key -> value


@dataclass(frozen=True)
class SimTotalsRow:
    run_id: str
    hw: str
    sim_key: str
    batch: int
    dtype: str
    dense_flops: float
    exec_flops: float
    latency_s: float
    energy_j: float
    weight_bytes: float
    dram_bytes: float
    train_flops: float | None
    n_layers: int
    simulated_at: float
    footprint_bytes: float | None = None  # None: simulated before the footprint was stored
    dram_capacity_bytes: float | None = None


@dataclass(frozen=True)
class SimLayerRow:
    run_id: str
    hw: str
    sim_key: str
    idx: int
    layer: str
    kind: str
    role: str
    pattern: NM
    exec_pattern: NM
    dense_flops: float
    exec_flops: float
    weight_bytes: float
    dram_bytes: float
    latency_s: float
    energy_j: float
    bound: str


INTERRUPTED = "interrupted at step"  # how the message of a run stopped by Ctrl-C / SIGTERM begins


def run_status(run: "RunRow") -> str:
    """A run's status as users see it: the stored one, or ``interrupted`` for a run kept
    ``running`` whose trainer was stopped by Ctrl-C or SIGTERM (the schema has no such status;
    a resume clears the message and so the state)."""
    if run.status == "running" and (run.message or "").startswith(INTERRUPTED):
        return "interrupted"
    return run.status

class ResultStore:
    """The result database at ``path``. ``create=False``: the file must exist already (commands
    that only read results, such as ``pick`` and ``report``, never leave an empty file behind)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 60.0, create: bool = True,
                 read_only: bool = False) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.read_only = read_only
        self._immutable = False
        if self.path.is_dir():
            raise StoreError(f"result database {self.path}: is a directory, not a database file")
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"result database {self.path}: is not a regular file")
        if not self.path.exists():
            if not create or read_only:
                raise StoreError(f"result database {self.path} does not exist; run `pgf-sim sweep` or "
                                 f"`pgf-sim run` first, or point --db at an existing one")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"result database {self.path}: cannot create its folder ({exc.strerror})") from None
        self._check_identity()
        if not read_only:
            self._init_schema()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    # --- connections ------------------------------------------------------------------------
    def _error(self, exc: BaseException) -> StoreError:
        text = str(exc)
        low = text.lower()
        if "not a database" in low or "malformed" in low:
            why = "is not a readable SQLite database (corrupt or truncated); move it away or use another --db"
        elif "readonly" in low or "read-only" in low:
            why = "is read-only (no write permission on the file or its folder)"
        elif "disk is full" in low or getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or self._full_disk_io(exc):
            why = "disk full: the write was rolled back, nothing stored was lost"
        elif "unable to open" in low:
            why = "cannot be opened (missing folder or no permission)"
        else:
            why = text
        return StoreError(f"result database {self.path}: {why}")

    def _full_disk_io(self, exc: BaseException) -> bool:
        """An I/O error while the database's file system has under 1 MiB free: a full disk.
        (SQLite reports ENOSPC as SQLITE_FULL when writing pages, but as an I/O error, e.g.
        SQLITE_IOERR_SHMSIZE, when it cannot grow the WAL index file.)"""
        if not getattr(exc, "sqlite_errorname", "").startswith("SQLITE_IOERR"):
            return False
        try:
            fs = os.statvfs(self.path.parent)
        except OSError:
            return False
        return fs.f_bavail * fs.f_frsize < 1 << 20

    def _check_identity(self) -> None:
        """Refuse, before anything is written, a database of a newer schema or of another
        application; a file that is empty or new is ours to create."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self._connection(read_only=True, immutable=True) as con:  # no side file, no lock: untouched
            version = con.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = {t: {r["name"] for r in con.execute(f"PRAGMA table_info({t})")} for t in tables & _OUR_TABLES}
        if version > SCHEMA_VERSION:
            raise StoreError(f"result database {self.path}: schema version {version} is newer than this pgf-sim "
                             f"reads ({SCHEMA_VERSION}); upgrade pgf-sim, nothing was changed")
        foreign = sorted(tables - _OUR_TABLES - {"sqlite_sequence", "sqlite_stat1"})
        foreign += sorted(t for t, have in columns.items() if not _required_columns()[t] <= have)
        if foreign:
            shown = ", ".join(foreign[:5])
            raise StoreError(f"result database {self.path}: is not a pgf-sim result database (tables: {shown}); "
                             "nothing was changed, point --db at another file")

    @contextmanager
    def _connection(self, read_only: bool | None = None, immutable: bool = False) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: transactions are explicit (``_write`` issues BEGIN IMMEDIATE)
        read_only = self.read_only if read_only is None else read_only
        try:
            if read_only:
                # mode=ro never creates or writes; immutable=1 (the file's folder is read-only, so
                # SQLite cannot make the WAL index beside it) reads it as a fixed file
                flag = "immutable=1" if self._immutable or immutable else "mode=ro"
                con = sqlite3.connect(f"{self.path.resolve().as_uri()}?{flag}", uri=True,
                                      timeout=self.busy_timeout_s, isolation_level=None)
                if flag == "mode=ro":
                    try:
                        con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                    except sqlite3.OperationalError as exc:
                        if "unable to open" not in str(exc) and "readonly" not in str(exc).lower():
                            raise
                        con.close()
                        self._immutable = True
                        con = sqlite3.connect(f"{self.path.resolve().as_uri()}?immutable=1", uri=True,
                                              timeout=self.busy_timeout_s, isolation_level=None)
            else:
                con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            con.row_factory = sqlite3.Row
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            yield con
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction that takes the write lock at once."""
        if self.read_only:
            raise StoreError(f"result database {self.path}: opened read-only by this command")
        with self._connection() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A raw connection whose ``with`` block is one write transaction, for tests and one-off
        inspection; the package itself goes through the typed methods below."""
        with self._write() as con:
            yield con

    def _init_schema(self) -> None:
        # Switching to WAL needs an exclusive lock and SQLite does not wait on its busy handler
        # for it, so processes opening a new database together retry briefly. The mode is
        # persistent: once set, later opens only read it.
        for attempt in range(100):
            try:
                with self._connection() as con:
                    if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        con.execute("PRAGMA journal_mode=WAL")
                    con.executescript(_SCHEMA)
                self._migrate()
                with self._connection() as con:
                    if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                        con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                return
            except StoreError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.02 * (1 + attempt % 10))

    def _migrate(self) -> None:
        """Bring a database written by an older version up to this schema: columns added since
        are appended (NULL in old rows). Checked and altered in one write transaction, so two
        processes opening an old file together add each column once."""
        with self._connection() as con:
            have = {r["name"] for r in con.execute("PRAGMA table_info(sim_totals)")}
        if all(c in have for c in OPTIONAL_TOTALS):
            return
        try:
            with self._write() as con:
                have = {r["name"] for r in con.execute("PRAGMA table_info(sim_totals)")}
                for column in OPTIONAL_TOTALS:
                    if column not in have:
                        con.execute(f"ALTER TABLE sim_totals ADD COLUMN {column} REAL")
        except StoreError as exc:
            if "read-only" not in str(exc):
                raise
            # an old file we may only read: its rows read with the new columns as None

    # --- runs -----------------------------------------------------------------------------
    def start_run(self, run_id: str, *, name: str, config: dict[str, Any], recipe: str, pattern: NM | str,
                  seed: int) -> None:
        """Insert the run, or mark an existing one running again (resume)."""
        with self._write() as con:
            con.execute(
                "INSERT INTO runs (run_id, name, config, recipe, pattern, seed, status, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running', ?) "
                "ON CONFLICT(run_id) DO UPDATE SET status='running', finished_at=NULL, message=NULL",
                (run_id, name, json.dumps(config, sort_keys=True), recipe, pattern_text(pattern), seed, time.time()),
            )

    def finish_run(self, run_id: str, *, final_step: int, final_accuracy: float,
                   train_flops: dict[str, float] | None = None) -> None:
        total = sum(train_flops.values()) if train_flops else None
        with self._write() as con:
            con.execute(
                "UPDATE runs SET status='finished', finished_at=?, final_step=?, final_accuracy=?, "
                "train_flops=?, train_flops_json=? WHERE run_id=?",
                (time.time(), final_step, final_accuracy, total,
                 json.dumps(train_flops) if train_flops else None, run_id),
            )

    def mark_interrupted(self, run_id: str, message: str) -> None:
        """A run stopped by Ctrl-C or SIGTERM: it stays ``running`` (its checkpoint resumes it)
        with ``message`` saying where it stopped, starting with ``INTERRUPTED`` (``run_status``
        reads it back); a resume (``start_run``) clears the message."""
        with self._write() as con:
            con.execute("UPDATE runs SET message=? WHERE run_id=? AND status='running'", (message, run_id))

    def fail_run(self, run_id: str, message: str) -> None:
        with self._write() as con:
            con.execute("UPDATE runs SET status='failed', finished_at=?, message=? WHERE run_id=?",
                        (time.time(), message, run_id))

    def get_run(self, run_id: str) -> RunRow | None:
        with self._connection() as con:
            row = con.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return _run_row(row) if row else None

    def list_runs(self, *, name: str | None = None, status: str | None = None) -> list[RunRow]:
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if name is not None:
            query, args = query + " AND name=?", args + [name]
        if status is not None:
            query, args = query + " AND status=?", args + [status]
        with self._connection() as con:
            rows = con.execute(query + " ORDER BY started_at, run_id", args).fetchall()
        return [_run_row(r) for r in rows]

    # --- per-step data --------------------------------------------------------------------
    def add_metrics(self, run_id: str, rows: Iterable[tuple[int, str, float]]) -> None:
        """``rows`` of (step, key, value), written in one transaction."""
        with self._write() as con:
            con.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)",
                            [(run_id, int(s), k, float(v)) for s, k, v in rows])

    def add_diagnostics(self, run_id: str, rows: Iterable[tuple[int, str, str, float]]) -> None:
        """``rows`` of (step, layer, key, value)."""
        with self._write() as con:
            con.executemany("INSERT OR REPLACE INTO diagnostics VALUES (?, ?, ?, ?, ?)",
                            [(run_id, int(s), layer, k, float(v)) for s, layer, k, v in rows])

    def set_layers(self, run_id: str, layers: dict[str, tuple[NM | str, tuple[int, ...], str | None]]) -> None:
        """``layers[name] = (pattern, shape, role)``; replaces what the run had."""
        with self._write() as con:
            con.execute("DELETE FROM layers WHERE run_id=?", (run_id,))
            con.executemany("INSERT INTO layers VALUES (?, ?, ?, ?, ?)",
                            [(run_id, n, role, pattern_text(p), json.dumps(list(shape)))
                             for n, (p, shape, role) in layers.items()])

    def truncate_after(self, run_id: str, step: int) -> None:
        """Drop metrics/diagnostics of steps > ``step`` (they are recomputed after a resume)."""
        with self._write() as con:
            con.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, step))
            con.execute("DELETE FROM diagnostics WHERE run_id=? AND step>?", (run_id, step))

    def run_metrics(self, run_id: str, key: str | None = None) -> list[tuple[int, str, float]]:
        query, args = "SELECT step, key, value FROM metrics WHERE run_id=?", [run_id]
        if key is not None:
            query, args = query + " AND key=?", args + [key]
        with self._connection() as con:
            return [tuple(r) for r in con.execute(query + " ORDER BY step, key", args)]

    def run_layers(self, run_id: str) -> list[LayerRow]:
        with self._connection() as con:
            rows = con.execute("SELECT layer, role, pattern, shape FROM layers WHERE run_id=? ORDER BY layer",
                               (run_id,)).fetchall()
        return [LayerRow(r["layer"], r["role"], NM.parse(r["pattern"]), tuple(json.loads(r["shape"]))) for r in rows]

    def run_diagnostics(self, run_id: str, *, layer: str | None = None, key: str | None = None) -> list[tuple[int, str, str, float]]:
        query, args = "SELECT step, layer, key, value FROM diagnostics WHERE run_id=?", [run_id]
        for col, val in (("layer", layer), ("key", key)):
            if val is not None:
                query, args = query + f" AND {col}=?", args + [val]
        with self._connection() as con:
            return [tuple(r) for r in con.execute(query + " ORDER BY step, layer, key", args)]

    # --- sweeps ---------------------------------------------------------------------------
    def record_sweep(self, sweep: str, key: str, hardware: Sequence[tuple[str, str]], config: Mapping[str, Any]) -> None:
        """Register (or update) a sweep's settings; the latest run of a sweep wins. ``hardware``:
        (label, name or path) per target."""
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO sweeps VALUES (?,?,?,?,?)",
                        (sweep, key, json.dumps([list(h) for h in hardware]), json.dumps(config, sort_keys=True),
                         time.time()))

    def sweeps(self) -> list[SweepRow]:
        """Registered sweeps, most recently run first."""
        with self._connection() as con:
            rows = con.execute("SELECT * FROM sweeps ORDER BY updated_at DESC").fetchall()
        return [SweepRow(r["sweep"], r["sim_key"], tuple(tuple(h) for h in json.loads(r["hardware_json"])),
                         json.loads(r["config_json"]), r["updated_at"]) for r in rows]

    def sweep_info(self, sweep: str | None = None) -> SweepRow:
        """A registered sweep; ``None``: the most recently run one."""
        known = self.sweeps()
        if not known:
            raise ConfigError(f"result database {self.path} holds no sweep results yet; run `pgf-sim sweep` or "
                             f"`pgf-sim run` first")
        if sweep is None:
            return known[0]
        for row in known:
            if row.sweep == sweep:
                return row
        raise ConfigError(f"no sweep {sweep!r} in {self.path}; sweeps there: {', '.join(r.sweep for r in known)}")

    def record_points(self, sweep: str, points: Iterable[PointRow]) -> int:
        """Register grid points under ``sweep``. Idempotent: an already registered (sweep, run_id)
        is kept as it was. Returns how many points were new."""
        now = time.time()
        rows = [(sweep, p.run_id, p.recipe, pattern_text(p.pattern), int(p.seed), p.model,
                 json.dumps(p.params, sort_keys=True), now) for p in points]
        with self._write() as con:
            before = con.total_changes
            con.executemany("INSERT OR IGNORE INTO sweep_points VALUES (?,?,?,?,?,?,?,?)", rows)
            return con.total_changes - before

    def prune_points(self, sweep: str, keep: Iterable[str]) -> int:
        """Drop the points of ``sweep`` whose run is not in ``keep`` (the sweep's current grid), so
        runs of an edited grid or of an older resolved config (another run id) stop counting as
        seeds of its candidates; the runs and their simulations stay. Returns how many."""
        keep = set(keep)
        with self._write() as con:
            stale = [r for (r,) in con.execute("SELECT run_id FROM sweep_points WHERE sweep=?", (sweep,)) if r not in keep]
            con.executemany("DELETE FROM sweep_points WHERE sweep=? AND run_id=?", [(sweep, r) for r in stale])
        return len(stale)

    def sweep_points(self, sweep: str) -> list[PointRow]:
        with self._connection() as con:
            rows = con.execute("SELECT * FROM sweep_points WHERE sweep=? ORDER BY rowid", (sweep,)).fetchall()
        return [PointRow(r["run_id"], r["recipe"], NM.parse(r["pattern"]), r["seed"], r["model"],
                         json.loads(r["params_json"])) for r in rows]

    # --- simulations ----------------------------------------------------------------------
    def write_simulation(self, run_id: str, hw: str, key: str, *, batch: int, dtype: str,
                         totals: Mapping[str, float], layers: Sequence[Mapping[str, Any]],
                         train_flops: float | None = None, replace: bool = False) -> bool:
        """Store one simulation (totals + per-layer rows) in one transaction.

        Returns True if written, False if (run_id, hw, key) was already stored and ``replace`` is
        False. ``totals`` needs every name of ``TOTAL_METRICS`` (``OPTIONAL_TOTALS``
        are stored when given); each layer row every name of ``LAYER_FIELDS``.
        """
        missing = [k for k in TOTAL_METRICS if k not in totals]
        if missing:
            raise KeyError(f"simulation totals lack {missing}")
        layer_rows = [(run_id, hw, key, i, *(_layer_value(row, f) for f in LAYER_FIELDS)) for i, row in enumerate(layers)]
        with self._write() as con:
            if replace:
                con.execute("DELETE FROM sim_layers WHERE run_id=? AND hw=? AND sim_key=?", (run_id, hw, key))
                con.execute("DELETE FROM sim_totals WHERE run_id=? AND hw=? AND sim_key=?", (run_id, hw, key))
            # columns named: a migrated table has its newer columns in another order than a new one
            cur = con.execute(
                f"INSERT OR IGNORE INTO sim_totals ({','.join(_TOTALS_COLUMNS)}) "
                f"VALUES ({','.join('?' * len(_TOTALS_COLUMNS))})",
                (run_id, hw, key, int(batch), dtype, *(float(totals[k]) for k in TOTAL_METRICS),
                 None if train_flops is None else float(train_flops), len(layer_rows), time.time(),
                 *(None if totals.get(k) is None else float(totals[k]) for k in OPTIONAL_TOTALS)))
            if cur.rowcount == 0:
                return False
            con.executemany(f"INSERT INTO sim_layers VALUES ({','.join('?' * (4 + len(LAYER_FIELDS)))})", layer_rows)
            return True

    def simulated(self, key: str, run_ids: Iterable[str] | None = None) -> set[tuple[str, str]]:
        """The (run_id, hw) pairs with a stored simulation under settings ``key``."""
        with self._connection() as con:
            rows = con.execute("SELECT run_id, hw FROM sim_totals WHERE sim_key=?", (key,)).fetchall()
        wanted = None if run_ids is None else set(run_ids)
        return {(r, h) for r, h in rows if wanted is None or r in wanted}

    def sim_totals(self, key: str, run_ids: Iterable[str] | None = None, hw: str | None = None) -> list[SimTotalsRow]:
        sql, args = "SELECT * FROM sim_totals WHERE sim_key=?", [key]
        if hw is not None:
            sql, args = sql + " AND hw=?", args + [hw]
        with self._connection() as con:
            rows = [SimTotalsRow(**dict(r)) for r in con.execute(sql + " ORDER BY run_id, hw", args).fetchall()]
        if run_ids is not None:
            wanted = set(run_ids)
            rows = [r for r in rows if r.run_id in wanted]
        return rows

    def sim_layers(self, run_id: str, hw: str, key: str) -> list[SimLayerRow]:
        with self._connection() as con:
            rows = con.execute("SELECT * FROM sim_layers WHERE run_id=? AND hw=? AND sim_key=? ORDER BY idx",
                               (run_id, hw, key)).fetchall()
        return [SimLayerRow(**{k: NM.parse(v) if k in _PATTERN_FIELDS else v for k, v in dict(r).items()})
                for r in rows]


def _layer_value(row: Mapping[str, Any], name: str) -> Any:
    value = row[name]
    if name in _PATTERN_FIELDS:
        return pattern_text(value)
    return str(value) if name in _TEXT_FIELDS else float(value)


def _run_row(row: sqlite3.Row) -> RunRow:
    split = json.loads(row["train_flops_json"]) if row["train_flops_json"] else None
    return RunRow(row["run_id"], row["name"], json.loads(row["config"]), row["recipe"], NM.parse(row["pattern"]),
                  row["seed"], row["status"], row["started_at"], row["finished_at"], row["final_step"],
                  row["final_accuracy"], row["train_flops"], split, row["message"])
