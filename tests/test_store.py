"""Result store: schema, queries, truncation on resume, WAL, several writer processes."""
import multiprocessing as mp
import sqlite3

from pgf_sim.core import NM
from pgf_sim.store import LayerRow, ResultStore


def _start(store, run_id="r1", **kw):
    store.start_run(run_id, name="exp", config={"a": 1}, recipe=kw.get("recipe", "mdgf"), pattern="2:4", seed=0)


def test_run_lifecycle(tmp_path):
    store = ResultStore(tmp_path / "db.sqlite")
    _start(store)
    run = store.get_run("r1")
    assert run.status == "running" and run.config == {"a": 1} and run.final_accuracy is None
    store.finish_run("r1", final_step=10, final_accuracy=0.9, train_flops={"forward": 2.0, "input_grad": 1.0, "weight_grad": 3.0})
    run = store.get_run("r1")
    assert run.status == "finished" and run.final_accuracy == 0.9 and run.train_flops == 6.0
    assert run.train_flops_split["weight_grad"] == 3.0
    _start(store, "r2", recipe="dense")
    store.fail_run("r2", "diverged")
    assert [r.run_id for r in store.list_runs()] == ["r1", "r2"]
    assert [r.run_id for r in store.list_runs(status="failed")] == ["r2"]
    assert store.get_run("r2").message == "diverged"
    assert store.get_run("nope") is None


def test_metrics_layers_diagnostics_and_truncate(tmp_path):
    store = ResultStore(tmp_path / "db.sqlite")
    _start(store)
    store.add_metrics("r1", [(s, "loss", 1.0 / s) for s in range(1, 11)])
    store.add_diagnostics("r1", [(4, "fc1", "grad_var", 0.5), (8, "fc1", "grad_var", 0.25)])
    store.set_layers("r1", {"blocks.0.mlp.fc1": ("2:4", (256, 64), "fc1")})
    store.truncate_after("r1", 6)
    assert [s for s, _, _ in store.run_metrics("r1")] == [1, 2, 3, 4, 5, 6]
    assert store.run_metrics("r1", "loss")[1] == (2, "loss", 0.5)
    assert store.run_diagnostics("r1") == [(4, "fc1", "grad_var", 0.5)]
    assert store.run_layers("r1") == [LayerRow("blocks.0.mlp.fc1", "fc1", NM(2, 4), (256, 64))]
    # re-logging a step after a resume replaces, never duplicates
    store.add_metrics("r1", [(6, "loss", 9.0)])
    assert store.run_metrics("r1", "loss")[-1] == (6, "loss", 9.0)


def test_wal_mode_and_custom_tables(tmp_path):
    store = ResultStore(tmp_path / "db.sqlite")
    with store.connect() as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        con.execute("CREATE TABLE IF NOT EXISTS sim (x INTEGER)")
        con.execute("INSERT INTO sim VALUES (1)")
    assert sqlite3.connect(tmp_path / "db.sqlite").execute("SELECT x FROM sim").fetchall() == [(1,)]


def _writer(path, run_id, n):
    store = ResultStore(path)
    _start(store, run_id)
    for s in range(n):  # many small transactions interleave with the other process's
        store.add_metrics(run_id, [(s, "loss", float(s)), (s, "lr", 0.1)])
    store.finish_run(run_id, final_step=n, final_accuracy=1.0)


def test_two_processes_write_concurrently(tmp_path):
    path = tmp_path / "db.sqlite"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, f"p{i}", 150)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = ResultStore(path)
    for i in range(2):
        assert len(store.run_metrics(f"p{i}")) == 300
        assert store.get_run(f"p{i}").status == "finished"


_OLD_SIM_TOTALS = """CREATE TABLE sim_totals (
    run_id TEXT NOT NULL, hw TEXT NOT NULL, sim_key TEXT NOT NULL, batch INTEGER NOT NULL, dtype TEXT NOT NULL,
    dense_flops REAL NOT NULL, exec_flops REAL NOT NULL, latency_s REAL NOT NULL, energy_j REAL NOT NULL,
    weight_bytes REAL NOT NULL, dram_bytes REAL NOT NULL, train_flops REAL, n_layers INTEGER NOT NULL,
    simulated_at REAL NOT NULL, PRIMARY KEY (run_id, hw, sim_key))"""


def test_old_database_gains_the_footprint_columns(tmp_path):
    # a database written before footprints were stored: sim_totals without the two columns
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute(_OLD_SIM_TOTALS)
    con.execute("INSERT INTO sim_totals VALUES ('r0','npu','k',1,'fp16',2,1,1e-3,1e-4,10,20,NULL,1,0)")
    con.commit()
    con.close()
    store = ResultStore(path)
    cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(sim_totals)")]
    assert cols[-2:] == ["footprint_bytes", "dram_capacity_bytes"]
    (old,) = store.sim_totals("k")
    assert old.latency_s == 1e-3 and old.footprint_bytes is None and old.dram_capacity_bytes is None
    totals = dict(dense_flops=2, exec_flops=1, latency_s=2e-3, energy_j=1e-4, weight_bytes=10, dram_bytes=20,
                  footprint_bytes=3e6, dram_capacity_bytes=8e9)
    assert store.write_simulation("r1", "npu", "k", batch=1, dtype="fp16", totals=totals, layers=[])
    new = {r.run_id: r for r in store.sim_totals("k")}["r1"]
    assert (new.latency_s, new.footprint_bytes, new.dram_capacity_bytes) == (2e-3, 3e6, 8e9)
    ResultStore(path)  # opening again migrates nothing twice
    assert [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(sim_totals)")] == cols
