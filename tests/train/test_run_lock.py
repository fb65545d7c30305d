"""Every path that trains a run holds its run lock, so two processes never train one run id at
once: the Python API ``trainer.train()`` and ``pgf-sim mixed``'s verification training (the
``train`` command and sweep workers are covered in ``tests/test_bad_input.py``). The lock is
held by this test process; the trainer runs in a second process and must wait for it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgf_sim.core.runlock import run_lock
from pgf_sim.store import ResultStore

REPO = Path(__file__).resolve().parents[2]
_TINY = {"name": "tiny_lock", "model": {"name": "vit", "options": {"patch_size": 4, "dim": 32, "depth": 1, "heads": 2}},
         "data": {"name": "digits"}, "recipe": {"name": "sr-ste", "pattern": "2:4"},
         "schedule": {"steps": 6, "batch_size": 32, "lr": 2e-3, "warmup_fraction": 0.0}, "checkpoint_every": 3}

# the second process: the Python API, no CLI
_API = """
import json, sys
from pgf_sim.store import ResultStore
from pgf_sim.train.experiment import experiment_from_dict
from pgf_sim.train.trainer import train
cfg = experiment_from_dict(json.loads(sys.argv[1]))
s = train(cfg, store=ResultStore(sys.argv[2]), run_id=sys.argv[3], workdir=sys.argv[4], progress=False)
print("final", s.run_id, s.final_step)
"""

_MIXED = """
import json, sys
from pgf_sim.codesign.explore.mixed import LayerPatterns
from pgf_sim.codesign.explore.mixed_verify import train_assignment
from pgf_sim.store import ResultStore
from pgf_sim.train.experiment import experiment_from_dict
cfg = experiment_from_dict(json.loads(sys.argv[1]))
t = train_assignment(cfg, LayerPatterns.of(json.loads(sys.argv[3])), seeds=(0,), store=ResultStore(sys.argv[2]),
                     workdir=sys.argv[4], hw="flex_nm_systolic", metric="latency_s", batch=2)
print("final", t.run_ids[0])
"""


def _start(code: str, args: list[str], err: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=err.open("w"), text=True, env=env)


def _wait_for(err: Path, words: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while words not in err.read_text():
        assert proc.poll() is None, f"the second process ended without waiting: {err.read_text()}"
        assert time.monotonic() < end, f"no {words!r} after {timeout} s: {err.read_text()}"
        time.sleep(0.2)


def _blocked_then_trains(code: str, args: list[str], workdir: Path, run_id: str, db: Path, tmp_path: Path) -> str:
    err = tmp_path / "err.txt"
    with run_lock(workdir, run_id, wait=False) as held:
        assert held
        proc = _start(code, args, err)
        try:
            _wait_for(err, f"run {run_id} is being trained by another process", proc)
            time.sleep(1.0)  # waiting, it must not train: no run directory, no row in the store
            assert proc.poll() is None and not (workdir / run_id).exists()
            assert ResultStore(db).get_run(run_id) is None
        except BaseException:
            proc.kill()
            raise
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.read_text()
    run = ResultStore(db).get_run(run_id)
    assert run.status == "finished" and run.final_step == 6
    steps = [s for s, _, _ in ResultStore(db).run_metrics(run_id, "train_loss")]
    assert steps == list(range(1, 7))  # trained once, after the holder let go
    return out


def test_python_api_train_waits_for_the_run_lock(tmp_path):
    db, workdir = tmp_path / "r.sqlite", tmp_path / "runs"
    out = _blocked_then_trains(_API, [json.dumps(_TINY), str(db), "api-run", str(workdir)], workdir, "api-run",
                               db, tmp_path)
    assert out.strip() == "final api-run 6"


@pytest.mark.slow  # trains and simulates in a second process (~15 s)
def test_mixed_verification_training_waits_for_the_run_lock(tmp_path):
    from pgf_sim.codesign.explore.mixed import LayerPatterns
    from pgf_sim.codesign.explore.mixed_verify import mixed_experiment
    from pgf_sim.core import NM
    from pgf_sim.train.experiment import experiment_from_dict

    assignment = {"blocks.0.mlp.fc1": "1:8", "blocks.0.mlp.fc2": "2:4"}
    cfg = mixed_experiment(experiment_from_dict(_TINY), LayerPatterns.of({k: NM.parse(v) for k, v in assignment.items()}),
                           seed=0)
    run_id = cfg.default_run_id()
    db, workdir = tmp_path / "m.sqlite", tmp_path / "runs"
    out = _blocked_then_trains(_MIXED, [json.dumps(_TINY), str(db), json.dumps(assignment), str(workdir)],
                               workdir, run_id, db, tmp_path)
    assert out.strip() == f"final {run_id}"


def test_a_holder_in_the_same_thread_re_enters(tmp_path, tiny_cfg, one_thread):
    """A sweep worker holds the lock across train() and the simulation: train() re-enters it."""
    from pgf_sim.train.trainer import train

    db = ResultStore(tmp_path / "r.sqlite")
    with run_lock(tmp_path / "runs", "held", wait=False) as held:
        assert held
        summary = train(tiny_cfg(recipe="sr-ste"), store=db, run_id="held", workdir=tmp_path / "runs", progress=False)
        assert summary.final_step == 6
    # released at the end: another process could take it now
    probe = subprocess.run([sys.executable, "-c", "import sys\nfrom pgf_sim.core.runlock import run_lock\n"
                            "with run_lock(sys.argv[1], 'held', wait=False) as h: print(h)", str(tmp_path / "runs")],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert probe.stdout.strip() == "True", probe.stderr
