"""Machine-readable command line: `results`, every `--format json|csv` (parsed back), `--version`,
descriptions, SI units in the text output, hardware given by path, plain progress without a tty."""
import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import pgf_sim
from pgf_sim.cli import build_parser, main
from pgf_sim.store import ResultStore

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "name": "tiny_fmt",
    "experiment": {"name": "tinyf", "model": {"name": "vit", "options": {"dim": 32, "depth": 1, "heads": 2}},
                   "schedule": {"steps": 40, "batch_size": 32, "lr": 0.004}, "checkpoint_every": 20,
                   "eval_every": 20},
    "grid": {"recipes": ["dense", "sr-ste"], "patterns": ["2:4"], "seeds": [0]},
    "hardware": ["a100_80gb", str(REPO / "hw_configs" / "flex_nm_systolic.yaml")],
    "workers": 1,
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fmt")
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    db, workdir = tmp / "r.sqlite", tmp / "runs"
    assert main(["sweep", str(path), "--db", str(db), "--workdir", str(workdir), "--threads", "1"]) == 0
    return tmp, db, workdir


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _csv(capsys, argv):
    assert main(argv) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_version_and_every_subcommand_has_a_description(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pgf-sim {pgf_sim.__version__}"

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    assert sub.description, f"`pgf-sim {' '.join(path + [name])}` has no description"
                    yield " ".join(path + [name])
                    yield from walk(sub, path + [name])

    names = list(walk(build_parser(), []))
    assert {"results", "pick", "report", "hw list", "validate", "simulate"} <= set(names)
    help_text = build_parser()._subparsers._group_actions[0].choices["pick"].format_help()
    assert "%%" not in help_text and "90%" in help_text


@pytest.mark.slow
def test_results_lists_runs_and_shows_one(swept, capsys):
    tmp, db, workdir = swept
    runs = ResultStore(db).list_runs()
    rows = _json(capsys, ["results", "--db", str(db), "--format", "json"])["runs"]
    assert sorted(r["run_id"] for r in rows) == sorted(r.run_id for r in runs)
    assert all(r["sweep"] == "tiny_fmt" and r["status"] == "finished" and 0 <= r["final_accuracy"] <= 1 for r in rows)
    assert all(r["final_quality"] == r["final_accuracy"] and r["direction"] == "higher_is_better" for r in rows)
    assert {r["recipe"] for r in rows} == {"dense", "sr-ste"}
    as_csv = _csv(capsys, ["results", "--db", str(db), "--format", "csv"])
    assert [r["run_id"] for r in as_csv] == [r["run_id"] for r in rows]
    assert float(as_csv[0]["final_accuracy"]) == pytest.approx(rows[0]["final_accuracy"])
    assert main(["results", "--db", str(db)]) == 0
    table = capsys.readouterr().out
    assert "2 finished" in table and all(r["run_id"] in table for r in rows)
    assert re.search(r"\d+(\.\d+)? [kMG]FLOP", table)  # training FLOPs SI-scaled

    sr = next(r for r in rows if r["recipe"] == "sr-ste")
    doc = _json(capsys, ["results", sr["run_id"], "--db", str(db), "--format", "json"])
    assert doc["run_id"] == sr["run_id"] and doc["sweeps"] == ["tiny_fmt"]
    assert {s["hardware"] for s in doc["simulations"]} == {"a100_80gb", "flex_nm_systolic"}
    assert all(s["latency_s"] > 0 and s["energy_j"] > 0 for s in doc["simulations"])
    # the memory footprint fits every target here: weights are a small part of it, capacity is the target's
    assert all(s["weight_bytes"] < s["footprint_bytes"] < s["dram_capacity_bytes"] for s in doc["simulations"])
    fc = [layer for layer in doc["layers"] if layer["role"] in ("fc1", "fc2")]
    assert fc and all(layer["pattern"] == "2:4" for layer in fc)
    assert doc["final_metrics"]["val_accuracy"] == pytest.approx(sr["final_accuracy"])
    assert main(["results", sr["run_id"], "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "flex_nm_systolic" in text and re.search(r"\d [mµn]?s\b", text)
    assert main(["results", "nope", "--db", str(db)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["results", "--db", str(db), "--sweep", "other"]) == 2
    assert "sweeps there: tiny_fmt" in capsys.readouterr().err


@pytest.mark.slow
def test_pick_json_csv_and_hardware_by_path(swept, capsys):
    tmp, db, workdir = swept
    yaml_path = str(REPO / "hw_configs" / "flex_nm_systolic.yaml")
    doc = _json(capsys, ["pick", "--db", str(db), "--hw", yaml_path, "--hw", "a100_80gb", "--min-accuracy", "0",
                         "--format", "json"])
    assert [p["hardware"] for p in doc["picks"]] == ["flex_nm_systolic", "a100_80gb"] and doc["errors"] == []
    accs = {r.recipe: r.final_accuracy for r in ResultStore(db).list_runs()}
    for p in doc["picks"]:
        assert p["objective"] == "latency_s" and p["constraint_metric_limit"] == 0  # --min-accuracy is the metric limit
        assert p["accuracy_mean"] == pytest.approx(accs[p["recipe"]]) and p["n_seeds"] == 1
        assert p["quality_mean"] == p["accuracy_mean"] and p["quality_std"] == p["accuracy_std"]  # the alias
        assert p["metric"] == "accuracy" and p["direction"] == "higher_is_better"
        assert p["runner_up_label"] in ("dense", "sr-ste 2:4") and p["runner_up_label"] != p["label"]
        assert p["latency_s"] <= p["runner_up_latency_s"] * 1.01  # the pick is the fastest (ties: within 1%)
        assert p["distinguishable_from_runner_up"] is None  # one seed each: cannot tell, never "yes"
    rows = _csv(capsys, ["pick", "--db", str(db), "--hw", "a100_80gb", "--min-accuracy", "0", "--format", "csv"])
    assert len(rows) == 1 and float(rows[0]["latency_s"]) == pytest.approx(doc["picks"][1]["latency_s"])
    # text output: SI units, never a raw microsecond count
    assert main(["pick", "--db", str(db), "--hw", yaml_path, "--min-accuracy", "0"]) == 0
    assert capsys.readouterr().out.startswith("On flex_nm_systolic: train ")


@pytest.mark.slow
def test_dse_and_mixed_json(swept, capsys):
    tmp, db, workdir = swept
    doc = _json(capsys, ["dse", "--hw", "flex_nm_systolic", "--model", "vit_ti", "--pattern", "2:4",
                         "--set", "memory.dram_bw_bytes_per_s=1e11,1e12", "--format", "json"])
    assert doc["base"] == "flex_nm_systolic" and len(doc["rows"]) == 2
    slow, fast = doc["rows"]
    assert fast["latency_s"] <= slow["latency_s"] and fast["speedup_vs_first"] >= 1.0
    rows = _csv(capsys, ["dse", "--hw", "flex_nm_systolic", "--model", "vit_ti", "--pattern", "2:4", "--format", "csv",
                         "--set", "memory.dram_bw_bytes_per_s=1e11,1e12"])
    assert [float(r["latency_s"]) for r in rows] == pytest.approx([slow["latency_s"], fast["latency_s"]], rel=1e-9)
    doc = _json(capsys, ["mixed", "--db", str(db), "--workdir", str(workdir),
                         "--hw", str(REPO / "hw_configs" / "flex_nm_systolic.yaml"),
                         "--recipe", "sr-ste", "--patterns", "2:4,1:8", "--budget", "0.05", "--finetune-steps", "0",
                         "--no-train", "--format", "json"])
    assert doc["hardware"] == "flex_nm_systolic" and doc["metric"] == "latency_s"
    assert {layer["pattern"] for layer in doc["layers"]} <= {"2:4", "1:8"}
    assert sum(layer["extra_errors"] for layer in doc["layers"]) == doc["mixed"]["predicted_extra_errors"]
    assert doc["mixed"]["total_latency_s"] > 0 and doc["trained_mixed"] is None


def test_simulate_json_is_parseable_and_consistent(capsys):
    doc = _json(capsys, ["simulate", "--gemm", "256,512,512", "--hw", "a100_80gb", "--pattern", "2:4", "--format", "json"])
    (summary,) = doc["summary"]
    assert summary["hardware"] == "a100_80gb" and summary["dense_flops"] == 2 * 256 * 512 * 512


def test_text_outputs_use_si_prefixes():
    from pgf_sim.codesign.decide.pareto import Candidate, ResultTable
    from pgf_sim.codesign.query.views import format_fronts, format_pattern_costs
    from pgf_sim.core import NM

    c = Candidate("npu", "mdgf", NM(2, 4), 0.9, 0.01, 2, 1e9, 2.127563401, 3.2e-3, 1.4e5, 1e12)
    text = format_fronts(ResultTable([c])) + "\n" + format_pattern_costs(ResultTable([c]))
    assert "2.13 s" in text and "3.20 mJ" in text and "140 kB" in text
    assert "2127563" not in text and " us" not in text


@pytest.mark.slow
def test_train_prints_plain_progress_lines_without_a_terminal(tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"name": "plain", "model": {"name": "vit", "options": {"dim": 16, "depth": 1, "heads": 2}},
                                   "data": {"name": "digits"}, "schedule": {"steps": 20, "batch_size": 16}}))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "pgf_sim", "train", str(cfg), "--db", str(tmp_path / "r.sqlite"),
                           "--workdir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    steps = [int(m.group(1)) for m in re.finditer(r"step (\d+)/20 loss \d", proc.stdout)]
    assert steps == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]  # every total // 10 steps, plain lines
    assert "\r" not in proc.stdout + proc.stderr  # no progress bar redraws


def test_results_call_an_interrupted_run_interrupted_until_it_resumes(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    store = ResultStore(db)
    cfg = {"model": {"name": "char_gpt"}, "data": {"name": "shakespeare"}, "recipe": {"name": "sr-ste", "pattern": "1:16"}}
    for run_id in ("a", "b"):
        store.start_run(run_id, name="charlm", config=cfg, recipe="sr-ste", pattern="1:16", seed=0)
    store.mark_interrupted("a", "interrupted at step 40 of 100; the last checkpoint is step 25, and the same "
                                "command resumes from it")
    assert main(["results", "--db", str(db), "--format", "json"]) == 0
    status = {r["run_id"]: r["status"] for r in json.loads(capsys.readouterr().out)["runs"]}
    assert status == {"a": "interrupted", "b": "running"}
    assert main(["results", "--db", str(db), "--status", "interrupted", "--format", "json"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["a"]
    assert main(["results", "--db", str(db), "--status", "running", "--format", "json"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["b"]
    assert main(["results", "--db", str(db)]) == 0
    assert "(0 finished, 1 running, 1 interrupted, 0 failed;" in capsys.readouterr().out
    assert main(["results", "a", "--db", str(db)]) == 0
    shown = capsys.readouterr().out
    assert "run a (interrupted)" in shown and "  interrupted at step 40 of 100" in shown and "failed" not in shown
    store.start_run("a", name="charlm", config=cfg, recipe="sr-ste", pattern="1:16", seed=0)  # the resume
    assert main(["results", "--db", str(db), "--status", "interrupted", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == []
