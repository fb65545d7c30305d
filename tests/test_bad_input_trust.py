"""The trust boundary through the real command line (docs/security.md): a run directory or a
result database that arrived from elsewhere never runs the code its config names, and a YAML
can name only a declared factory, never the standard library.

The hostile run directories are real runs of a tiny sweep whose ``config.json`` (and stored
config) was rewritten to ``model.factory: os:system`` with a command that touches a marker
file: the marker's absence proves nothing ran.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from pgf_sim.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

EXPERIMENT = {
    "name": "tiny",
    "model": {"name": "vit", "options": {"patch_size": 4, "dim": 32, "depth": 1, "heads": 2}},
    "data": {"name": "digits"},
    "recipe": {"name": "sr-ste", "pattern": "2:4"},
    "schedule": {"steps": 4, "batch_size": 32, "lr": 2e-3, "warmup_fraction": 0.0},
    "checkpoint_every": 2,
}
SWEEP = {"name": "hostile", "experiment": EXPERIMENT,
         "grid": {"recipes": ["dense", "sr-ste"], "patterns": ["2:4"], "seeds": [0]},
         "hardware": ["a100_80gb"], "workers": 1, "simulate": {"batch": 2}}


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out + err


def _hostile(marker: Path) -> dict:
    return {"name": "pwn", "factory": "os:system", "options": {"command": f"touch {marker}"}}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A finished tiny sweep whose run directories and stored configs all name os:system."""
    d = tmp_path_factory.mktemp("trust")
    (d / "sweep.yaml").write_text(yaml.safe_dump(SWEEP))
    db, runs = d / "r.sqlite", d / "runs"
    assert main(["sweep", str(d / "sweep.yaml"), "--db", str(db), "--workdir", str(runs), "--threads", "1"]) == 0
    marker = d / "PWNED"
    for cfg_path in runs.glob("*/config.json"):
        cfg = json.loads(cfg_path.read_text())
        cfg["model"] = _hostile(marker)
        cfg_path.write_text(json.dumps(cfg))
    con = sqlite3.connect(db)
    for run_id, text in con.execute("SELECT run_id, config FROM runs").fetchall():
        cfg = json.loads(text)
        cfg["model"] = _hostile(marker)
        con.execute("UPDATE runs SET config=? WHERE run_id=?", (json.dumps(cfg), run_id))
    con.commit()
    con.close()
    sparse = next(p.parent for p in runs.glob("*sr-ste*/config.json"))
    return d, db, runs, sparse, marker


def _commands(d: Path, db: Path, runs: Path, run: Path) -> list[tuple[str, list[str]]]:
    on_db = ["--db", str(db), "--workdir", str(runs)]
    return [
        ("export", ["export", str(run), "--out", str(d / "x.safetensors")]),
        ("generate", ["generate", str(run), "--chars", "5"]),
        ("simulate --model RUN", ["simulate", "--hw", "a100_80gb", "--model", str(run)]),
        ("dse --trained", ["dse", "--hw", "flex_nm_systolic", "--trained", *on_db]),
        ("mixed", ["mixed", "--hw", "a100_80gb", "--recipe", "sr-ste", "--no-train", *on_db]),
    ]


@pytest.mark.parametrize("trust", [False, True], ids=["untrusted", "with --trust"])
@pytest.mark.parametrize("index", range(5), ids=["export", "generate", "simulate-model", "dse-trained", "mixed"])
def test_a_hostile_run_directory_runs_nothing(hostile, capsys, index, trust):
    d, db, runs, run, marker = hostile
    name, argv = _commands(d, db, runs, run)[index]
    rc, text = _cli([*argv, *(["--trust"] if trust else [])], capsys)
    assert rc == 2 and "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("pgf-sim: error:")]
    assert len(errors) == 1, text
    # untrusted: refused before reading the factory, with the way to trust it; trusted: still
    # refused, by name, as the standard library is never a factory
    assert ("rerun with --trust" in errors[0]) if not trust else ("standard library" in errors[0]), errors[0]
    assert "os:system" in errors[0]
    assert not marker.exists(), f"{name} ran the command of a hostile config.json"
    assert not (d / "x.safetensors").exists()


@pytest.mark.parametrize("argv", [
    ["sweep", "SWEEP", "--resimulate", "--threads", "1"],
    ["results"], ["results", "RUN"], ["report", "--out", "D/report.html"], ["study", "--db", "DB"],
    ["pick", "--hw", "a100_80gb"],
], ids=["sweep-resimulate", "results", "results-run", "report", "study", "pick"])
def test_commands_on_a_hostile_database_run_nothing(hostile, capsys, argv):
    """These read configs from the database (and a sweep from its own YAML): no factory is resolved."""
    d, db, runs, run, marker = hostile
    argv = [a.replace("SWEEP", str(d / "sweep.yaml")).replace("RUN", run.name).replace("D/", f"{d}/")
            .replace("DB", str(db)) for a in argv]
    if "--db" not in argv:
        argv += ["--db", str(db)]
    if argv[0] == "sweep":
        argv += ["--workdir", str(runs)]
    rc, text = _cli(argv, capsys)
    assert "Traceback" not in text and rc in (0, 2), text
    assert not marker.exists()


HOSTILE_FACTORIES = ["os:system", "builtins:eval", "builtins:exec", "shutil:rmtree", "subprocess:getoutput",
                     "subprocess:Popen", "importlib:import_module", "pickle:loads", "runpy:run_path",
                     "os.path:join", "posix:system", "ctypes:CDLL", "code:interact", "pty:spawn",
                     "webbrowser:open", "antigravity:geohash", "multiprocessing:Process", "sys:exit",
                     "setuptools:setup", "pip:main", "__main__:main"]


@pytest.mark.parametrize("section", ["model", "data"])
@pytest.mark.parametrize("path", HOSTILE_FACTORIES)
def test_the_standard_library_is_never_a_factory(tmp_path, capsys, section, path):
    """Refused by name, before anything is imported or called: ``shutil:rmtree`` with a
    folder in its options deleted nothing."""
    victim = tmp_path / "victim"
    victim.mkdir()
    exp = {**EXPERIMENT, section: {"name": "x", "factory": path, "options": {"path": str(victim)}}}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(exp))
    rc, text = _cli(["train", str(tmp_path / "e.yaml"), "--db", str(tmp_path / "db.sqlite"),
                     "--workdir", str(tmp_path / "runs"), "--trust", "--trust-module", "pgf_sim"], capsys)
    assert rc == 2 and "Traceback" not in text
    line = [x for x in text.splitlines() if x.startswith("pgf-sim: error:")]
    assert len(line) == 1 and f"{section}.factory" in line[0] and path.split(":")[0] in line[0], text
    assert victim.is_dir() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("module", ["os", "subprocess", "builtins", "shutil"])
def test_the_standard_library_cannot_be_trusted(tmp_path, capsys, module):
    rc, text = _cli(["hw", "show", "a100_80gb", "--trust-module", module], capsys)
    assert rc == 2 and f"--trust-module: module {module!r} is part of the Python standard library" in text
