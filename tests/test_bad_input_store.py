"""Bad result databases through the real command line: one line naming the file, exit code 2,
no traceback, and nothing created or changed.

Each case: the database the command is pointed at (missing, corrupt, truncated, a directory,
in a folder where no file can be created), the command, and the words the message must hold.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgf_sim.cli import main
from pgf_sim.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = str(ROOT / "training" / "digits_vit.yaml")
SWEEP = str(ROOT / "training" / "sweep_default.yaml")


def _missing(tmp: Path) -> Path:
    return tmp / "missing.sqlite"


def _corrupt(tmp: Path) -> Path:
    path = tmp / "corrupt.sqlite"
    path.write_bytes(b"not a database, just text that happens to be here\n" * 100)
    return path


def _truncated(tmp: Path) -> Path:
    """A real result database cut to half its size (e.g. a copy interrupted by a full disk)."""
    full = tmp / "full.sqlite"
    store = ResultStore(full)
    store.start_run("r", name="x", config={}, recipe="mdgf", pattern="2:4", seed=0)
    for step in range(300):
        store.add_metrics("r", [(step, "train_loss", 1.0 / (step + 1))])
    data = full.read_bytes()
    assert len(data) > 8192  # several pages, so that half of it is a real truncation
    path = tmp / "truncated.sqlite"
    path.write_bytes(data[: len(data) // 2])
    return path


def _directory(tmp: Path) -> Path:
    path = tmp / "a_folder"
    path.mkdir()
    return path


def _unwritable_folder(tmp: Path) -> Path:
    """A database to create in a folder where no file can be created: a read-only folder, or
    (as root, who ignores permission bits) a folder of the read-only /proc file system."""
    if os.geteuid() == 0:
        return Path("/proc/self/new.sqlite")
    folder = tmp / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "new.sqlite"


CASES = [
    # id, database, command (DB is replaced by the database path), expected words
    ("pick-missing", _missing, ["pick", "--db", "DB", "--hw", "a100_80gb"], ["does not exist", "pgf-sim sweep"]),
    ("report-missing", _missing, ["report", "--db", "DB"], ["does not exist"]),
    ("mixed-missing", _missing, ["mixed", "--db", "DB", "--hw", "flex_nm_systolic"], ["does not exist"]),
    ("pick-corrupt", _corrupt, ["pick", "--db", "DB", "--hw", "a100_80gb"], ["not a readable SQLite database"]),
    ("report-truncated", _truncated, ["report", "--db", "DB"], ["corrupt or truncated"]),
    ("train-truncated", _truncated, ["train", EXPERIMENT, "--db", "DB"], ["corrupt or truncated"]),
    ("pick-directory", _directory, ["pick", "--db", "DB", "--hw", "a100_80gb"], ["is a directory"]),
    ("sweep-directory", _directory, ["sweep", SWEEP, "--db", "DB"], ["is a directory"]),
    ("train-directory", _directory, ["train", EXPERIMENT, "--db", "DB"], ["is a directory"]),
    ("train-unwritable-folder", _unwritable_folder, ["train", EXPERIMENT, "--db", "DB"], ["cannot be opened"]),
]


def _snapshot(path: Path) -> dict[str, bytes | None]:
    """The database and its WAL side files as they are on disk (None: absent)."""
    out = {}
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        out[p.name] = p.read_bytes() if p.is_file() else ("<dir>" if p.is_dir() else None)
    return out


@pytest.mark.parametrize("make_db, argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_database_is_one_named_line_and_nothing_changes(make_db, argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a report or run directory would land here, never in the repository
    db = make_db(tmp_path)
    before = _snapshot(db)
    rc = main([str(db) if a == "DB" else a for a in argv])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("pgf-sim: error: ") and str(db) in lines[0]
    for word in words:
        assert word in lines[0]
    assert _snapshot(db) == before  # no file created, none changed
    assert not (tmp_path / "pgf_report.html").exists() and not (tmp_path / "runs").exists()


# ------------------------------------------------------------- a full disk under the database
def _db_with_an_earlier_run(disk: Path) -> tuple[Path, list]:
    db = disk / "r.sqlite"
    store = ResultStore(db)
    store.start_run("earlier", name="x", config={"a": 1}, recipe="mdgf", pattern="2:4", seed=0)
    store.add_metrics("earlier", [(s, "train_loss", 1.0 / s) for s in range(1, 101)])
    return db, store.run_metrics("earlier")


def test_train_on_a_full_disk_is_one_named_line_and_nothing_is_lost(tiny_disk, fill_disk, tmp_path, capsys,
                                                                    monkeypatch):
    """``pgf-sim train --db`` on a file system with no free byte: SQLite cannot even grow its
    WAL index (an I/O error, not SQLITE_FULL); the command says "disk full", names the file,
    exits 2, and the database keeps every earlier row and gains none."""
    monkeypatch.chdir(tmp_path)
    db, earlier = _db_with_an_earlier_run(tiny_disk)
    fill_disk(tiny_disk)
    rc = main(["train", EXPERIMENT, "--db", str(db), "--workdir", str(tmp_path / "runs"), "--run-id", "later",
               "--no-progress"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("pgf-sim: error: ") and str(db) in lines[0] and "disk full" in lines[0]
    (tiny_disk / "pad").unlink()
    store = ResultStore(db)
    assert store.run_metrics("earlier") == earlier and store.get_run("later") is None
    assert [r.run_id for r in store.list_runs()] == ["earlier"]
    assert not (tmp_path / "runs" / "later").exists()  # refused before training anything


def test_disk_full_mid_transaction_rolls_it_back(tiny_disk, fill_disk):
    """The disk fills while a write transaction grows the WAL (SQLITE_FULL): one StoreError line
    naming the file and "disk full"; the transaction rolls back (none of its rows stored) and
    the earlier rows stay; once there is space the store writes again."""
    from pgf_sim.store import StoreError

    db, earlier = _db_with_an_earlier_run(tiny_disk)
    fill_disk(tiny_disk)
    pad = tiny_disk / "pad"
    os.truncate(pad, pad.stat().st_size - 128 * 1024)  # room to open the database, not for the write
    store = ResultStore(db)
    store.start_run("later", name="x", config={"a": 2}, recipe="mdgf", pattern="1:8", seed=0)  # small: fits
    rows = [(s, "train_loss", 1.0 / s) for s in range(1, 20_001)]  # ~1 MB of WAL: does not fit
    with pytest.raises(StoreError) as info:
        store.add_metrics("later", rows)
    msg = str(info.value)
    assert "\n" not in msg and str(db) in msg and "disk full" in msg and "rolled back" in msg
    assert store.run_metrics("later") == [] and store.run_metrics("earlier") == earlier
    pad.unlink()
    store.add_metrics("later", rows[:100])  # the store is usable again once there is space
    assert store.run_metrics("later") == [(s, k, v) for s, k, v in rows[:100]]
