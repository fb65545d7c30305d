"""The co-design commands end to end on a tiny sweep: run -> results, pick, report, dse, mixed."""
import re
import subprocess
import sys

import pytest
import yaml

from pgf_sim.cli import main
from pgf_sim.codesign.cli.cli import _accuracy, _quantity, default_sweep_path
from pgf_sim.core import NM
from pgf_sim.store import ResultStore, sim_key

TINY = {
    "name": "tiny_cli",
    "experiment": {"name": "tiny", "model": {"name": "vit", "options": {"dim": 32, "depth": 1, "heads": 2}},
                   "schedule": {"steps": 60, "batch_size": 32, "lr": 0.004}, "checkpoint_every": 30,
                   "diagnostics": {"every": 20, "window": 4}},
    "grid": {"recipes": ["dense", "sr-ste"], "patterns": ["2:4"], "seeds": [0]},
    "hardware": ["a100_80gb", "flex_nm_systolic"],
    "workers": 1,
}


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    db, workdir, report = tmp / "r.sqlite", tmp / "runs", tmp / "report.html"
    rc = main(["run", str(path), "--db", str(db), "--workdir", str(workdir), "--report", str(report), "--threads", "1"])
    return tmp, path, db, workdir, report, rc


@pytest.mark.slow  # shares one real tiny sweep (process pool + training), ~20 s idle
def test_run_trains_simulates_picks_and_reports(ran, capsys):
    tmp, path, db, workdir, report, rc = ran
    assert rc == 0
    store = ResultStore(db)
    runs = store.list_runs(status="finished")
    assert sorted(r.recipe for r in runs) == ["dense", "sr-ste"]
    sims = ResultStore(db).sim_totals(sim_key(1, "fp16"))
    assert sorted((r.hw, r.run_id) for r in sims) == sorted((h, r.run_id) for h in TINY["hardware"] for r in runs)
    for row in sims:  # per-layer rows add up to the totals (the simulator sums ops in sequence)
        layers = ResultStore(db).sim_layers(row.run_id, row.hw, row.sim_key)
        assert len(layers) == row.n_layers > 0
        assert sum(r.latency_s for r in layers) == pytest.approx(row.latency_s)
        assert sum(r.exec_flops for r in layers) == pytest.approx(row.exec_flops)
    # the sr-ste model's fc1/fc2 were captured at 2:4 from its real masks, the dense model's are dense
    sr = next(r for r in runs if r.recipe == "sr-ste")
    fc = [r for r in ResultStore(db).sim_layers(sr.run_id, "flex_nm_systolic", "batch=1,dtype=fp16") if r.role in ("fc1", "fc2")]
    assert fc and all(r.pattern == NM(2, 4) for r in fc)
    html = report.read_text()
    assert "Plotly.newPlot" in html and "tiny_cli" in html and "sr-ste 2:4" in html
    # rerunning is a no-op (resumable)
    assert main(["sweep", str(path), "--db", str(db), "--workdir", str(workdir)]) == 0
    assert "2 done, 0 failed before, 0 to run" in capsys.readouterr().out


@pytest.mark.slow
def test_pick_prints_the_choice_and_fails_clearly_when_nothing_fits(ran, capsys):
    tmp, path, db, workdir, report, rc = ran
    table_acc = {r.recipe: r.final_accuracy for r in ResultStore(db).list_runs()}
    assert main(["pick", "--db", str(db), "--hw", "flex_nm_systolic", "--min-accuracy", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("On flex_nm_systolic: train ") and "Runner-up" in out
    # the most accurate candidate under a generous latency cap is the one with the higher accuracy
    assert main(["pick", "--db", str(db), "--hw", "a100_80gb", "--max-latency", "10s"]) == 0
    best = max(table_acc, key=table_acc.get)
    assert re.search(rf"train {best}[ .]", capsys.readouterr().out)  # "train dense." or "train mdgf 2:4."
    assert main(["pick", "--db", str(db), "--hw", "a100_80gb", "--min-accuracy", "100%"]) == 1 or \
        max(table_acc.values()) == 1.0
    assert main(["pick", "--db", str(db), "--hw", "nonexistent"]) == 2
    assert "hardware in the results: a100_80gb, flex_nm_systolic" in capsys.readouterr().err
    # the stored footprint is a pick limit: a 1-byte cap fits nothing and the error names it
    fp = {r.run_id: r.footprint_bytes for r in ResultStore(db).sim_totals(sim_key(1, "fp16"), hw="a100_80gb")}
    assert all(0 < f < 80e9 for f in fp.values())
    assert main(["pick", "--db", str(db), "--hw", "a100_80gb", "--max-footprint", "1B"]) == 1
    assert "footprint_bytes <= 1 B" in capsys.readouterr().out
    assert main(["pick", "--db", str(db), "--hw", "a100_80gb", "--max-footprint", "80GiB"]) == 0
    with pytest.raises(SystemExit):
        main(["pick", "--db", str(db), "--hw", "a100_80gb", "--max-footprint", "12XB"])
    assert "'12XB' is not a positive size in bytes" in capsys.readouterr().err


@pytest.mark.slow
def test_report_and_dse_from_the_store(ran, capsys):
    tmp, path, db, workdir, report, rc = ran
    out = tmp / "again.html"
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    assert out.is_file() and "Pareto" in out.read_text()
    assert main(["dse", "--db", str(db), "--workdir", str(workdir), "--hw", "flex_nm_systolic", "--trained",
                 "--set", "memory.dram_bw_bytes_per_s=1e11,1e12", "--native", "1:8"]) == 0
    text = capsys.readouterr().out
    assert "2 variants x 2 workloads" in text and "trained sr-ste 2:4" in text and "Native 1:8" in text


@pytest.mark.slow
def test_mixed_assignment_from_the_trained_run(ran, capsys):
    tmp, path, db, workdir, report, rc = ran
    assert main(["mixed", "--db", str(db), "--workdir", str(workdir), "--hw", "flex_nm_systolic", "--recipe", "sr-ste",
                 "--patterns", "2:4,1:8,1:16", "--budget", "0.05", "--finetune-steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "mixed N:M on flex_nm_systolic" in out and "blocks.0.mlp.fc1" in out and "mixed fine-tuned" in out


def test_unit_parsing():
    assert _quantity("2ms", "s") == pytest.approx(2e-3) and _quantity("0.5", "s") == 0.5
    assert _quantity("10mJ", "J") == pytest.approx(1e-2) and _quantity("3uJ", "J") == pytest.approx(3e-6)
    assert _accuracy("90%") == pytest.approx(0.9) and _accuracy("0.85") == 0.85
    import argparse

    for bad in ("fast", "2 parsecs"):
        with pytest.raises(argparse.ArgumentTypeError):
            _quantity(bad, "s")
    with pytest.raises(argparse.ArgumentTypeError):
        _accuracy("1.5")


def test_default_sweep_is_shipped_and_cli_imports_no_torch():
    assert default_sweep_path().is_file()
    code = ("import sys; import pgf_sim.codesign.cli.cli, pgf_sim.codesign.run.sweep, pgf_sim.codesign.run.results, "
            "pgf_sim.codesign.explore.mixed, pgf_sim.codesign.run.executors, pgf_sim.codesign.query.views; "
            "from pgf_sim.cli import build_parser; build_parser(); print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_ray_missing_or_present_is_clear(tmp_path):
    """--executor ray: runs on a local Ray instance when Ray is installed (slow test below),
    otherwise a clear error naming the extra to install."""
    try:
        import ray  # noqa: F401
    except ImportError:
        path = tmp_path / "tiny.yaml"
        path.write_text(yaml.safe_dump(TINY))
        with pytest.raises(Exception, match=r"pip install 'pgf_sim\[ray\]'"):
            from pgf_sim.codesign.run.sweep import load_sweep, run_sweep

            run_sweep(load_sweep(path), db=tmp_path / "r.sqlite", workdir=tmp_path / "runs", executor="ray")


@pytest.mark.slow
def test_ray_executor_runs_the_sweep(tmp_path):
    pytest.importorskip("ray")
    data = dict(TINY, name="tiny_ray", grid={"recipes": ["sr-ste"], "patterns": ["2:4", "1:8"], "seeds": [0]})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    db = tmp_path / "r.sqlite"
    proc = subprocess.run([sys.executable, "-m", "pgf_sim", "sweep", str(path), "--executor", "ray", "--db", str(db),
                           "--workdir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(ResultStore(db).list_runs(status="finished")) == 2
    assert len(ResultStore(db).sim_totals(sim_key(1, "fp16"))) == 4


@pytest.mark.slow
def test_adding_a_deploy_model_costs_finished_runs_without_retraining(ran, capsys):
    """An old result DB (a sweep without simulate.deploy_model): rerunning with one adds the
    deployment-proxy rows, equal to a direct simulation of the run's patterns, and trains nothing."""
    from pgf_sim.core import NM
    from pgf_sim.sim.hardware import load_hardware
    from pgf_sim.sim.simulate import simulate
    from pgf_sim.sim.workloads import build_workload

    tmp, path, db, workdir, report, rc = ran
    ids = {p.run_id for p in ResultStore(db).sweep_points(TINY["name"])}
    finished = lambda: {r.run_id: r.finished_at for r in ResultStore(db).list_runs(status="finished")  # noqa: E731
                        if r.run_id in ids}
    before = finished()
    assert len(before) == 2
    upgraded = tmp / "tiny_deploy.yaml"
    upgraded.write_text(yaml.safe_dump({**TINY, "simulate": {"batch": 1, "dtype": "fp16", "deploy_model": "vit_b",
                                                             "deploy_batch": 2}}))
    assert main(["sweep", str(upgraded), "--db", str(db), "--workdir", str(workdir), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "0 done, 0 failed before, 2 to run" in out and "trained" not in out.replace("was trained", "")
    assert finished() == before
    key = "deploy=vit_b,batch=2,seq_len=default,dtype=fp16"
    rows = ResultStore(db).sim_totals(key, ids)
    assert sorted((r.run_id, r.hw) for r in rows) == sorted((r, h) for r in before for h in TINY["hardware"])
    for row in rows:
        pattern = ResultStore(db).get_run(row.run_id).pattern  # fc1/fc2 only (the default roles)
        want = simulate(build_workload("vit_b", batch=2, pattern=pattern), load_hardware(row.hw)).totals
        assert row.latency_s == pytest.approx(want["latency_s"])
        assert row.footprint_bytes == pytest.approx(want["footprint_bytes"])
        assert row.dram_capacity_bytes == load_hardware(row.hw).memory.dram_capacity_bytes.value
    assert main(["pick", "--db", str(db), "--hw", "flex_nm_systolic", "--min-accuracy", "0", "--cost-model", "deploy"]) == 0
    assert "DEPLOYMENT PROXY vit_b at batch 2" in capsys.readouterr().out
    assert main(["sweep", str(upgraded), "--db", str(db), "--workdir", str(workdir)]) == 0
    assert "2 done, 0 failed before, 0 to run" in capsys.readouterr().out
