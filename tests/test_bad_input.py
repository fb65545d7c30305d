"""The bad-input catalogue: every input that once leaked a traceback, hung, ran attacker code,
lost data or was silently ignored is now a one-line error naming the thing, exit code 2.

Each row of ``CASES`` drives the real CLI (``pgf_sim.cli.main``) on real files: argv (with
``{d}`` the shared work folder), the expected exit code and words the message must contain.
Rows that need a process of their own (locks) or a full disk (a tiny tmpfs) follow the table.
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pgf_sim.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "model": {"name": "vit", "options": {"patch_size": 4, "dim": 32, "depth": 1, "heads": 2}},
    "data": {"name": "digits"},
    "recipe": {"name": "sr-ste", "pattern": "2:4"},
    "schedule": {"steps": 6, "batch_size": 32, "lr": 2e-3, "warmup_fraction": 0.0},
    "checkpoint_every": 3,
}
SWEEP = {
    "name": "bad",
    "experiment": {k: TINY[k] for k in ("name", "model", "schedule", "checkpoint_every")},
    "grid": {"recipes": ["dense", "sr-ste"], "patterns": ["2:4"], "seeds": [0]},
    "hardware": ["a100_80gb"],
    "workers": 1,
}
# The classic "billion laughs": 9 levels of 9 aliases, 652 bytes of YAML -> 9**9 strings.
ALIAS_BOMB = 'name: bomb\na: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


class Evil:
    """Unpickling calls os.system: the marker file proves the attacker's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``pgf-sim argv`` in-process: (exit code, stdout + stderr). An exception escaping
    ``main`` would be a traceback for the user, so it fails the test as it is."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out + err


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a finished tiny run and every bad file the catalogue feeds the CLI."""
    import torch

    d = tmp_path_factory.mktemp("bad")
    (d / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(d / "tiny.yaml"), "--run-id", "good", "--workdir", str(d / "runs"),
                     "--db", str(d / "r.sqlite"), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    good = d / "runs" / "good"
    marker = d / "PWNED"
    # malicious final models: a raw pickle and a torch zip archive, both calling os.system
    for name, write in (("evil_pickle", lambda p: p.write_bytes(pickle.dumps(Evil(marker)))),
                        ("evil_zip", lambda p: torch.save({"w": Evil(marker)}, p))):
        shutil.copytree(good, d / "runs" / name)
        write(d / "runs" / name / "final_model.pt")
    # a malicious checkpoint of an unfinished run (training would resume from it)
    (d / "runs" / "evil_ckpt").mkdir()
    (d / "runs" / "evil_ckpt" / "checkpoint.pt").write_bytes(pickle.dumps(Evil(marker)))
    # a truncated final model (a copy cut short, as a full disk used to leave it)
    shutil.copytree(good, d / "runs" / "truncated")
    data = (good / "final_model.pt").read_bytes()
    (d / "runs" / "truncated" / "final_model.pt").write_bytes(data[: len(data) // 3])
    (d / "not_export.safetensors").write_bytes(b"\x00" * 64)

    (d / "binary.yaml").write_bytes(b"\x00\x01\xff\xfe\x89PNG\r\n")
    (d / "bomb.yaml").write_text(ALIAS_BOMB)
    (d / "fp64.yaml").write_text(yaml.safe_dump({**SWEEP, "simulate": {"dtype": "fp64"}}))
    (d / "int4.yaml").write_text(yaml.safe_dump({**SWEEP, "simulate": {"dtype": "int4"}}))
    (d / "indivisible.yaml").write_text(yaml.safe_dump({**SWEEP, "grid": {**SWEEP["grid"], "patterns": ["1:64"]}}))
    (d / "sweep.yaml").write_text(yaml.safe_dump(SWEEP))
    hw = yaml.safe_load((REPO / "hw_configs" / "flex_nm_systolic.yaml").read_text())
    hw["sparse"]["native_patterns"] = ["2:4", "1:99999989"]
    (d / "hw_huge_m.yaml").write_text(yaml.safe_dump(hw))
    hw = yaml.safe_load((REPO / "hw_configs" / "flex_nm_systolic.yaml").read_text())
    hw["compute"]["tile_k"]["value"] = 32.5
    (d / "hw_frac_tile.yaml").write_text(yaml.safe_dump(hw))
    (d / "db_copy.sqlite").write_bytes((d / "r.sqlite").read_bytes())
    return d


TRAIN = ["train", "{d}/tiny.yaml", "--workdir", "{d}/runs2", "--db", "{d}/r2.sqlite", "--no-progress"]


def _train(override: str) -> list[str]:
    """``pgf-sim train tiny.yaml OVERRIDE --workdir ...`` (overrides come right after the file)."""
    return [*TRAIN[:2], override, *TRAIN[2:]]


SIM = ["simulate", "--hw", "a100_80gb"]
CASES = [
    # (id, argv, exit code, words in the message)
    ("malicious final_model.pt (pickle), export", ["export", "{d}/runs/evil_pickle"], 2,
     ["evil_pickle/final_model.pt", "refused", "never unpickled"]),
    ("malicious final_model.pt (torch zip), export", ["export", "{d}/runs/evil_zip"], 2,
     ["evil_zip/final_model.pt", "refused"]),
    ("malicious final_model.pt, simulate --model RUN_DIR", [*SIM, "--model", "{d}/runs/evil_zip"], 2,
     ["evil_zip/final_model.pt", "refused"]),
    ("malicious checkpoint, train resumes", [*TRAIN[:3], "{d}/runs", *TRAIN[4:], "--run-id", "evil_ckpt"], 2,
     ["evil_ckpt/checkpoint.pt", "refused"]),
    ("truncated final_model.pt", ["export", "{d}/runs/truncated"], 2,
     ["truncated/final_model.pt", "corrupt or truncated"]),
    ("export --check of a file that is not an export", ["export", "{d}/runs/good", "--check",
                                                         "{d}/not_export.safetensors"], 2,
     ["not_export.safetensors", "not a readable safetensors"]),
    ("export --out over a database", ["export", "{d}/runs/good", "--out", "{d}/db_copy.sqlite"], 2,
     ["db_copy.sqlite", "already exists", "--force"]),
    ("export --out over the run's own final model, even with --force",
     ["export", "{d}/runs/good", "--out", "{d}/runs/good/final_model.pt", "--force"], 2,
     ["final_model.pt", "never overwritten"]),
    ("export --out into a missing directory", ["export", "{d}/runs/good", "--out", "{d}/nodir/x.safetensors"], 2,
     ["nodir", "does not exist"]),
    ("huge M in --pattern", [*SIM, "--model", "vit_b", "--pattern", "1:99999989"], 2, ["1:99999989", "<= 1024"]),
    ("huge M in a hardware YAML", ["hw", "validate", "{d}/hw_huge_m.yaml"], 2, ["1:99999989", "<= 1024"]),
    ("fractional tile_k in a hardware YAML", ["hw", "validate", "{d}/hw_frac_tile.yaml"], 2,
     ["hw_frac_tile.yaml", "compute.tile_k", "whole number"]),
    ("YAML alias bomb (sweep)", ["sweep", "{d}/bomb.yaml", "--db", "{d}/s.sqlite", "--workdir", "{d}/sruns"], 2,
     ["bomb.yaml", "line 2", "aliases"]),
    ("binary YAML", ["train", "{d}/binary.yaml"], 2, ["binary.yaml", "not a text YAML file"]),
    ("override with invalid YAML", _train("recipe.name=[oops"), 2, ["override", "recipe.name=[oops", "not valid YAML"]),
    ("huge seed", _train("seed=99999999999999999999"), 2, ["seed", "4294967295"]),
    ("huge split seed", _train("data.options.split_seed=99999999999"), 2, ["split_seed", "4294967295"]),
    ("huge model dim", _train("model.options.dim=100000000"), 2, ["tiny.yaml", "parameters", "GiB"]),
    ("pattern that divides no layer", _train("recipe.pattern=1:64"), 2, ["tiny.yaml", "blocks.0.mlp.fc1", "M=64"]),
    ("--run-id ..", [*TRAIN, "--run-id", ".."], 2, ["'..'", "no leading '.'"]),
    ("--run-id with a path separator", [*TRAIN, "--run-id", "../escape"], 2, ["../escape", "'/'"]),
    ("sweep simulate.dtype fp64, before training", ["sweep", "{d}/fp64.yaml", "--db", "{d}/s.sqlite",
                                                     "--workdir", "{d}/sruns"], 2,
     ["fp64.yaml", "simulate.dtype", "'fp64'", "fp16"]),
    ("sweep simulate.dtype a target lacks, before training", ["sweep", "{d}/int4.yaml", "--db", "{d}/s.sqlite",
                                                              "--workdir", "{d}/sruns"], 2,
     ["int4.yaml", "simulate.dtype", "a100_80gb"]),
    ("sweep point whose pattern divides no layer, before training",
     ["sweep", "{d}/indivisible.yaml", "--db", "{d}/s.sqlite", "--workdir", "{d}/sruns"], 2,
     ["indivisible.yaml", "sr-ste 1:64", "M=64"]),
    ("sweep --workers 0", ["sweep", "{d}/sweep.yaml", "--workers", "0", "--db", "{d}/s.sqlite",
                           "--workdir", "{d}/sruns"], 2, ["--workers", ">= 1"]),
    ("--gemm overflow", [*SIM, "--gemm", "99999999999999999999,64,64"], 2, ["--gemm", "2147483647"]),
    ("--gemm beyond int32", [*SIM, "--gemm", "9223372036854775807,9223372036854775807,64"], 2, ["--gemm"]),
    ("huge --batch", [*SIM, "--model", "vit_b", "--batch", "99999999999999999999"], 2, ["--batch", "2147483647"]),
    ("huge dse --batch", ["dse", "--hw", "flex_nm_systolic", "--model", "vit_b", "--pattern", "1:8", "--batch",
                          "99999999999999999999"], 2, ["batch", "2147483647"]),
    ("--qkv-pattern with --gemm (was ignored)", [*SIM, "--gemm", "64,64,64", "--qkv-pattern", "2:4"], 2,
     ["--qkv-pattern", "--gemm"]),
    ("--recipe without --phase train (was ignored)", [*SIM, "--model", "vit_ti", "--recipe", "ste"], 2,
     ["--recipe", "--phase train"]),
    ("--steps with --gemm (was ignored)", [*SIM, "--gemm", "64,64,64", "--steps", "10"], 2,
     ["--steps", "--phase train"]),
    ("simulate --out into a missing directory", [*SIM, "--gemm", "64,64,64", "--out", "{d}/nodir/x.txt"], 2,
     ["nodir", "does not exist"]),
]


@pytest.mark.parametrize("argv, code, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_named_error(work, capsys, argv, code, words):
    rc, text = _cli([a.replace("{d}", str(work)) for a in argv], capsys)
    assert rc == code, text
    assert "Traceback" not in text
    assert "weights_only=False" not in text and "weights_only` set to `False" not in text
    lines = [line for line in text.splitlines() if line.startswith("pgf-sim: error:")]
    assert len(lines) == 1, text  # one line, after whatever the command printed before
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not (work / "PWNED").exists(), "a malicious pickle ran its code"


def test_refused_inputs_lost_nothing(work):
    """After the whole table: the database an export would have overwritten is intact, nothing
    was written outside the work folder, and no sweep trained anything."""
    con = sqlite3.connect(work / "db_copy.sqlite")
    assert con.execute("SELECT run_id, status FROM runs").fetchall() == [("good", "finished")]
    con.close()
    assert not (work / "escape").exists() and not (work / "runs2").exists()
    assert not (work / "sruns").exists() or not any((work / "sruns").iterdir())


def test_export_force_replaces_an_existing_file(work, capsys):
    out = work / "forced.safetensors"
    out.write_bytes(b"old")
    rc, text = _cli(["export", str(work / "runs" / "good"), "--out", str(out)], capsys)
    assert rc == 2 and out.read_bytes() == b"old"
    rc, text = _cli(["export", str(work / "runs" / "good"), "--out", str(out), "--force"], capsys)
    assert rc == 0 and "reloads bit-exactly" in text and out.stat().st_size > 1000


# ------------------------------------------------------------------------------- a full disk
def test_disk_full_keeps_the_old_report_and_output(tiny_disk, fill_disk, capsys):
    from pgf_sim.codesign.report.report import ReportData, write_report
    from pgf_sim.core.files import FileWriteError

    report = write_report(tiny_disk / "report.html", ReportData())
    old_report = report.read_bytes()
    out = tiny_disk / "sim.txt"
    assert _cli(["simulate", "--hw", "a100_80gb", "--gemm", "64,64,64", "--out", str(out)], capsys)[0] == 0
    old_out = out.read_bytes()
    fill_disk(tiny_disk)
    with pytest.raises(FileWriteError, match="disk full: cannot write .*report.html"):
        write_report(report, ReportData(notes=["x" * 300_000]))
    rc, text = _cli(["simulate", "--hw", "a100_80gb", "--model", "vit_b", "--out", str(out)], capsys)
    assert rc == 2 and "disk full" in text and str(out) in text and "Traceback" not in text
    assert report.read_bytes() == old_report and out.read_bytes() == old_out
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["pad", "report.html", "sim.txt"]  # no temp files left


def test_disk_full_mid_checkpoint_and_export(work, tiny_disk, fill_disk, capsys):
    import torch

    torch.set_num_threads(1)
    rc, text = _cli(["train", str(work / "tiny.yaml"), "--run-id", "full", "--workdir", str(tiny_disk),
                     "--db", str(work / "full.sqlite"), "--no-progress"], capsys)
    assert rc == 2 and "disk full" in text and "checkpoint.pt" in text and "Traceback" not in text
    assert "unexpected pos" not in text
    assert not list((tiny_disk / "full").glob(".*.tmp"))  # the half-written temp file is removed
    fill_disk(tiny_disk)
    rc, text = _cli(["export", str(work / "runs" / "good"), "--out", str(tiny_disk / "m.safetensors")], capsys)
    assert rc == 2 and "disk full" in text and "m.safetensors" in text
    assert not (tiny_disk / "m.safetensors").exists()


# ----------------------------------------------------------------- one process per run (locks)
def _train_cmd(work: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "pgf_sim", "train", str(work / "tiny.yaml"), f"schedule.steps={steps}",
            "checkpoint_every=10", "--run-id", "twice", "--workdir", str(work / "lockruns"),
            "--db", str(work / "lock.sqlite"), "--no-progress"]


@pytest.mark.slow  # two real training processes, ~30 s on a busy 2-core machine
def test_two_trains_of_one_run_train_it_once(work):
    """Started together: one trains, the other says it waits for it, then reports the same run."""
    steps = 300
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(_train_cmd(work, steps), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    waited = ["being trained by another process" in err and "waiting" in err for _, err in outs]
    assert sorted(waited) == [False, True], outs
    # "run twice: accuracy validation 4.86%, test 7.52% after 300 steps (...)": both report one result
    accuracy = {re.search(r", test (\S+) after", out).group(1) for out, _ in outs}
    assert len(accuracy) == 1 and all(f"after {steps} steps" in out for out, _ in outs)
    con = sqlite3.connect(work / "lock.sqlite")
    steps_logged = [s for (s,) in con.execute("SELECT step FROM metrics WHERE run_id='twice' AND key='train_loss' "
                                              "ORDER BY step")]
    con.close()
    assert steps_logged == list(range(1, steps + 1))  # trained once: every step exactly once


@pytest.mark.slow  # two real sweeps at once, ~25 s
def test_two_sweeps_on_one_store_both_succeed(work, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, "name": "twin", "experiment": {**SWEEP["experiment"],
                                    "schedule": {"steps": 60, "batch_size": 32}, "checkpoint_every": 10},
                                    "grid": {"recipes": ["dense", "sr-ste"], "patterns": ["2:4"], "seeds": [0, 1]}}))
    cmd = [sys.executable, "-m", "pgf_sim", "sweep", str(path), "--db", str(tmp_path / "s.sqlite"),
           "--workdir", str(tmp_path / "runs"), "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    con = sqlite3.connect(tmp_path / "s.sqlite")
    rows = con.execute("SELECT run_id, COUNT(*), COUNT(DISTINCT step), MAX(step) FROM metrics "
                       "WHERE key='train_loss' GROUP BY run_id").fetchall()
    con.close()
    assert len(rows) == 4 and all(n == 60 and distinct == 60 and last == 60 for _, n, distinct, last in rows)
