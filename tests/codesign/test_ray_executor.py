"""The Ray executor on a real local Ray cluster (2 CPUs: two tasks at once): a sweep whose
worker is killed mid-run (SIGKILL), then resumed: nothing lost, nothing duplicated, finished
runs not retrained, the killed run continued from its checkpoint."""
import os
import signal
import threading
import time
from pathlib import Path

import pytest


from pgf_sim.codesign.run.sweep import load_sweep, run_sweep
from pgf_sim.store import ResultStore, sim_key

ray = pytest.importorskip("ray")

STEPS = 250  # long enough that both workers are mid-run together even when one starts seconds late
SWEEP = f"""
name: ray_kill
experiment:
  name: raykill
  model: {{name: vit, options: {{patch_size: 4, dim: 32, depth: 1, heads: 2}}}}
  schedule: {{steps: {STEPS}, batch_size: 32}}
  checkpoint_every: 10
grid: {{recipes: [dense, sr-ste], patterns: ["2:4"], seeds: [0, 1]}}
hardware: [a100_80gb, flex_nm_systolic]
"""


def _ppid(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _our_point_workers() -> list[int]:
    """Ray worker processes executing a sweep point that descend from this test process
    (Ray's raylet is our child), never another user's Ray."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::execute_point"):
                continue
            p = pid
            while p > 1 and p != me:
                p = _ppid(p)
        except (OSError, ValueError, IndexError):
            continue
        if p == me:
            out.append(pid)
    return out


def _midway(store: ResultStore) -> set[str]:
    """Runs with a committed checkpoint well before their end (so the kill lands mid-run)."""
    out = set()
    for run in store.list_runs(status="running"):
        steps = store.run_metrics(run.run_id, "train_loss")
        if steps and 10 <= steps[-1][0] <= STEPS - 60:
            out.add(run.run_id)
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds Ray's worker processes through /proc")
@pytest.mark.slow  # ~60-90 s on a busy 2-core machine: Ray start, 2 workers importing torch, 5 trainings
def test_ray_sweep_survives_a_killed_worker(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    db, workdir = tmp_path / "r.sqlite", tmp_path / "runs"
    sweep = load_sweep(path)
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        first: dict = {}
        thread = threading.Thread(target=lambda: first.update(out=run_sweep(
            sweep, db=db, workdir=workdir, executor="ray", threads=1, echo=lambda *_: None)))
        thread.start()
        killed = None
        deadline = time.time() + 300
        while time.time() < deadline and thread.is_alive():
            workers = _our_point_workers()
            if db.exists() and len(workers) == 2 and len(_midway(ResultStore(db))) == 2:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
                break
            time.sleep(0.1)
        thread.join(timeout=300)
        assert killed is not None, "never saw two runs mid-way on two Ray workers"
        out = first["out"]
        # the killed task is one named failure (no traceback); the three others completed
        assert len(out.failed) == 1 and len(out.completed) == 3, out
        (lost_run, msg), = out.failed.items()
        assert "Ray worker" in msg and "rerun the sweep to resume" in msg and "Traceback" not in msg
        store = ResultStore(db)
        finished_before = {r.run_id: r for r in store.list_runs(status="finished")}
        assert lost_run not in finished_before and len(finished_before) == 3
        sims_before = {(r.run_id, r.hw): r.simulated_at
                       for r in store.sim_totals(sim_key(1, "fp16"))}

        statuses: list[str] = []
        again = run_sweep(sweep, db=db, workdir=workdir, executor="ray", threads=1,
                          echo=lambda line: statuses.append(line))
        assert again.ok and again.completed == (lost_run,) and len(again.already_done) == 3
        assert any("resumed" in line for line in statuses), statuses  # continued from its checkpoint
    finally:
        ray.shutdown()

    runs = {r.run_id: r for r in store.list_runs()}
    assert len(runs) == 4 and all(r.status == "finished" and r.final_step == STEPS for r in runs.values())
    for run_id, r in finished_before.items():  # not retrained
        assert runs[run_id].finished_at == r.finished_at
    for run_id in runs:  # every step's metric exactly once: nothing lost, nothing repeated
        assert [s for s, _, _ in store.run_metrics(run_id, "train_loss")] == list(range(1, STEPS + 1)), run_id
    sims = store.sim_totals(sim_key(1, "fp16"))
    assert sorted((r.run_id, r.hw) for r in sims) == sorted(
        (run_id, hw) for run_id in runs for hw in ("a100_80gb", "flex_nm_systolic"))
    for r in sims:  # simulations stored before the kill were kept as they were
        if (r.run_id, r.hw) in sims_before:
            assert r.simulated_at == sims_before[(r.run_id, r.hw)]
