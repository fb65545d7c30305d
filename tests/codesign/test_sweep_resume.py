"""Kill a real sweep process mid-run (SIGKILL), rerun it: no result lost or duplicated, finished
runs not retrained, unfinished ones resumed from their checkpoint."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from pgf_sim.store import ResultStore, sim_key

STEPS = 160
SWEEP = {
    "name": "resume",
    "experiment": {"name": "resume", "model": {"name": "vit", "options": {"dim": 32, "depth": 1, "heads": 2}},
                   "schedule": {"steps": STEPS, "batch_size": 32}, "checkpoint_every": 10},
    "grid": {"recipes": ["dense", "sr-ste"], "patterns": ["2:4"], "seeds": [0, 1]},
    "hardware": ["a100_80gb", "flex_nm_systolic"],
    "workers": 2,
}


def _sweep_cmd(path, db, workdir):
    return [sys.executable, "-m", "pgf_sim", "sweep", str(path), "--db", str(db), "--workdir", str(workdir)]


def _state(db):
    """(finished run ids, ids of unfinished runs well inside their schedule: at least one
    checkpoint committed and far enough from the end not to finish before the kill lands),
    tolerating a young DB."""
    try:
        con = sqlite3.connect(db, timeout=30)
        finished = {r for (r,) in con.execute("SELECT run_id FROM runs WHERE status='finished'")}
        midway = {r for r, step in con.execute("SELECT run_id, MAX(step) FROM metrics WHERE key='train_loss' "
                                               "GROUP BY run_id") if 10 <= step <= STEPS - 60}
        con.close()
        return finished, midway - finished
    except sqlite3.OperationalError:  # tables not created yet
        return set(), set()


@pytest.mark.slow  # ~30 s idle, ~70 s on a busy 2-core machine: two real sweeps with process pools
def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    db, workdir = tmp_path / "r.sqlite", tmp_path / "runs"
    proc = subprocess.Popen(_sweep_cmd(path, db, workdir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline:
        finished, in_progress = _state(db) if db.exists() else (set(), set())
        if finished and in_progress:
            break
        assert proc.poll() is None, f"the sweep ended before it could be killed:\n{proc.stdout.read().decode()}"
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("no run finished while another was in progress within 240 s")
    # Kill only the driver: its worker processes must notice and stop by themselves, or the
    # rerun would wait on their run locks until they finished on their own.
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = ResultStore(db)
    before = {r.run_id: r for r in store.list_runs(status="finished")}
    assert before, "nothing had finished before the kill"
    sims_before = {(r.run_id, r.hw): r.simulated_at for r in store.sim_totals(sim_key(1, "fp16"))}
    time.sleep(1.5)  # the workers' parent watch polls every 0.5 s

    rerun = subprocess.run(_sweep_cmd(path, db, workdir), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resumed" in rerun.stdout, rerun.stdout  # the in-progress run continued from its checkpoint

    runs = {r.run_id: r for r in store.list_runs()}
    points = store.sweep_points("resume")
    assert len(points) == 4 and {p.run_id for p in points} == set(runs)
    assert all(r.status == "finished" and r.final_step == STEPS for r in runs.values())
    for run_id, r in before.items():  # finished runs were not retrained
        assert runs[run_id].finished_at == r.finished_at
        assert runs[run_id].final_accuracy == r.final_accuracy
    for run_id in runs:  # every step's metric exactly once: nothing lost, nothing repeated
        steps = [s for s, _, _ in store.run_metrics(run_id, "train_loss")]
        assert steps == list(range(1, STEPS + 1)), run_id
    sims = store.sim_totals(sim_key(1, "fp16"))
    assert sorted((r.run_id, r.hw) for r in sims) == sorted((r, h) for r in runs for h in SWEEP["hardware"])
    for r in sims:  # simulations stored before the kill were kept as they were
        if (r.run_id, r.hw) in sims_before:
            assert r.simulated_at == sims_before[(r.run_id, r.hw)]
    # a third run has nothing left to do
    again = subprocess.run(_sweep_cmd(path, db, workdir), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "4 done, 0 failed before, 0 to run" in again.stdout, again.stdout


@pytest.mark.slow  # one real training process, ~10-30 s
def test_sigterm_marks_the_run_interrupted_and_the_same_command_resumes_it(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(yaml.safe_dump({**SWEEP["experiment"], "schedule": {"steps": 400, "batch_size": 32}}))
    db, workdir = tmp_path / "r.sqlite", tmp_path / "runs"
    cmd = [sys.executable, "-m", "pgf_sim", "train", str(cfg), "--db", str(db), "--workdir", str(workdir),
           "--no-progress", "--run-id", "term"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for a committed checkpoint past step 0
        try:
            con = sqlite3.connect(db, timeout=30)
            step = con.execute("SELECT MAX(step) FROM metrics WHERE run_id='term'").fetchone()[0]
            con.close()
        except sqlite3.OperationalError:
            step = None
        if step and step >= 20:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "interrupted; saved progress is kept" in err
    run = ResultStore(db).get_run("term")
    assert run.status == "running" and run.message.startswith("interrupted at step ")
    assert "the same command resumes from it" in run.message
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    run = ResultStore(db).get_run("term")
    assert run.status == "finished" and run.message is None and run.final_step == 400
