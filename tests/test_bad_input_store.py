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
