"""Sweep/simulation tables in the shared SQLite store: idempotent, safe with concurrent writers."""
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pgf_sim.codesign.run import results
from pgf_sim.core import NM
from pgf_sim.store import PointRow, ResultStore, sim_key

KEY = sim_key(1, "fp16")


def _point(run_id, recipe="mdgf", pattern="1:8", seed=0):
    return PointRow(run_id, recipe, NM.parse(pattern), seed, "", {})


def _layers(n, scale=1.0):
    return [{"layer": f"blocks.{i}.mlp.fc1", "kind": "gemm", "role": "fc1", "pattern": "2:4", "exec_pattern": "2:4",
             "dense_flops": 100.0 * scale, "exec_flops": 50.0 * scale, "weight_bytes": 10.0, "dram_bytes": 20.0,
             "latency_s": 1e-6 * (i + 1), "energy_j": 1e-9, "bound": "memory"} for i in range(n)]


def _totals(layers):
    return {k: sum(r[k] for r in layers) for k in ("dense_flops", "exec_flops", "latency_s", "energy_j",
                                                     "weight_bytes", "dram_bytes")}


def test_write_is_idempotent_and_atomic(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    layers = _layers(3)
    assert store.write_simulation("run-a", "a100_80gb", KEY, batch=1, dtype="fp16",
                                    totals=_totals(layers), layers=layers, train_flops=1e9)
    first = store.sim_totals(KEY)
    # a second write of the same key changes nothing, not even the timestamp
    assert not store.write_simulation("run-a", "a100_80gb", KEY, batch=1, dtype="fp16",
                                        totals=_totals(_layers(5, 2.0)), layers=_layers(5, 2.0))
    assert store.sim_totals(KEY) == first
    assert len(store.sim_layers("run-a", "a100_80gb", KEY)) == 3
    # replace=True is the explicit re-simulation
    assert store.write_simulation("run-a", "a100_80gb", KEY, batch=1, dtype="fp16",
                                    totals=_totals(_layers(5, 2.0)), layers=_layers(5, 2.0), replace=True)
    (row,) = store.sim_totals(KEY)
    assert row.n_layers == 5 and row.dense_flops == 1000.0
    assert row.latency_s == pytest.approx(sum(1e-6 * (i + 1) for i in range(5)))
    # a bad layer row fails the whole transaction: no totals without their layers
    bad = _layers(2)
    del bad[1]["energy_j"]
    with pytest.raises(KeyError):
        store.write_simulation("run-b", "a100_80gb", KEY, batch=1, dtype="fp16", totals=_totals(_layers(2)),
                                 layers=bad)
    assert store.simulated(KEY) == {("run-a", "a100_80gb")}


def test_points_registered_once(tmp_path):
    db = ResultStore(tmp_path / "r.sqlite")
    pts = [_point(f"r{i}", seed=i) for i in range(3)]
    assert db.record_points("s", pts) == 3
    assert db.record_points("s", pts + [_point("r9")]) == 1
    assert db.sweep_points("s") == pts + [_point("r9")]  # typed rows, the pattern an NM value
    assert db.sweep_points("other") == []


def test_recipe_label_names_swept_params():
    assert results.recipe_label("mdgf", {}) == "mdgf"
    assert results.recipe_label("mdgf", {"recipe.dense_fraction": 0.1, "schedule.lr": 0.001}) == \
        "mdgf(dense_fraction=0.1, lr=0.001)"


_WRITER = textwrap.dedent("""
    import sys
    from pgf_sim.core import NM
    from pgf_sim.store import PointRow, ResultStore, sim_key
    db, who = ResultStore(sys.argv[1]), sys.argv[2]
    key = sim_key(1, "fp16")
    for i in range(60):
        run = f"run-{i % 20}"            # both writers hit the same 20 runs x 3 targets
        hw = ("a100_80gb", "h100_sxm", "flexible_nm")[i % 3]
        layers = [{"layer": f"l{j}", "kind": "gemm", "role": "fc1", "pattern": "1:8", "exec_pattern": "2:4",
                   "dense_flops": 1.0, "exec_flops": 0.5, "weight_bytes": 1.0, "dram_bytes": 1.0,
                   "latency_s": 1.0, "energy_j": 1.0, "bound": "compute"} for j in range(4)]
        totals = {k: 4.0 for k in ("dense_flops", "exec_flops", "latency_s", "energy_j", "weight_bytes", "dram_bytes")}
        db.write_simulation(run, hw, key, batch=1, dtype="fp16", totals=totals, layers=layers)
        db.record_points("sweep", [PointRow(run, who, NM(1, 8), 0, "", {})])
""")


def test_two_processes_write_concurrently(tmp_path):
    db = tmp_path / "r.sqlite"
    ResultStore(db)  # the training side's tables too, as in a real sweep
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), who]) for who in ("w1", "w2")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # 20 runs x 3 targets (i % 20, i % 3 over 60 writes: every pair once), each exactly once,
    # each with all of its 4 layer rows
    assert con.execute("SELECT COUNT(*) FROM sim_totals").fetchone()[0] == 60
    assert con.execute("SELECT COUNT(*) FROM sim_layers").fetchone()[0] == 240
    per_key = con.execute("SELECT COUNT(*) FROM sim_layers GROUP BY run_id, hw, sim_key").fetchall()
    assert {n for (n,) in per_key} == {4}
    assert con.execute("SELECT COUNT(*) FROM sweep_points").fetchone()[0] == 20


def test_candidate_rows_join_runs_points_and_simulations(tmp_path):
    """Hand-made store: 2 finished seeds, 1 failed seed, 1 run still running."""
    from pgf_sim.codesign.decide.pareto import aggregate_seeds

    store = ResultStore(tmp_path / "r.sqlite")
    hw = [("a100_80gb", "a100_80gb"), ("mine", "/somewhere/mine.yaml")]
    store.record_sweep("s", KEY, hw, {"name": "s"})
    pts = [("m-0", "mdgf", "1:8", 0), ("m-1", "mdgf", "1:8", 1), ("s-0", "sr-ste", "1:8", 0), ("s-1", "sr-ste", "1:8", 1)]
    store.record_points("s", [_point(r, rc, p, sd) for r, rc, p, sd in pts])
    for run_id, recipe, pattern, seed in pts:
        store.start_run(run_id, name="x", config={}, recipe=recipe, pattern=pattern, seed=seed)
    store.finish_run("m-0", final_step=10, final_accuracy=0.90, train_flops={"fwd": 1e9})
    store.finish_run("m-1", final_step=10, final_accuracy=0.80, train_flops={"fwd": 1e9})
    store.fail_run("s-0", "loss is NaN")  # s-1 stays 'running'
    for run_id in ("m-0", "m-1"):
        for label, _ in hw:
            layers = _layers(2)
            store.write_simulation(run_id, label, KEY, batch=1, dtype="fp16", totals=_totals(layers), layers=layers)
    rows = results.candidate_rows(store, "s")
    assert sorted((r["run_id"], r["hardware"]) for r in rows) == sorted(
        (r, h) for r in ("m-0", "m-1", "s-0") for h in ("a100_80gb", "mine"))
    failed = [r for r in rows if r["run_id"] == "s-0"]
    assert all(r["accuracy"] is None and r["latency_s"] is None for r in failed)
    table = aggregate_seeds(rows)
    mdgf = table.where(hardware="a100_80gb", recipe="mdgf")[0]
    assert mdgf.n_seeds == 2 and mdgf.accuracy_mean == pytest.approx(0.85)
    assert mdgf.accuracy_std == pytest.approx(0.0707106781)  # sample std of (0.9, 0.8)
    assert mdgf.latency_s == pytest.approx(3e-6) and mdgf.train_flops == 1e9
    assert mdgf.inference_flops == pytest.approx(100.0)  # executed FLOPs: 2 layers x 50
    # the unstable recipe is NaN (off the front), not represented by a lucky seed
    assert np.isnan(table.where(hardware="a100_80gb", recipe="sr-ste")[0].accuracy_mean)
    assert store.sweep_info().hardware_specs == tuple(hw)
    with pytest.raises(Exception, match="no sweep 'nope'.*sweeps there: s"):
        results.candidate_rows(store, "nope")


def test_prune_points_keeps_only_the_current_grid(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    pts = [_point(f"r{i}", seed=i) for i in range(4)]
    store.record_points("s", pts)
    store.record_points("other", pts[:1])
    assert store.prune_points("s", ["r1", "r3", "new"]) == 2
    assert [p.run_id for p in store.sweep_points("s")] == ["r1", "r3"]
    assert [p.run_id for p in store.sweep_points("other")] == ["r0"]  # other sweeps untouched
    assert store.prune_points("s", ["r1", "r3"]) == 0
