"""Runtimes through the co-design loop: a sweep priced in several runtimes stores one cost view
per runtime (trained model and deployment proxy), and pick / report / dse / results name the
runtime of every cost they show."""
import json

import pytest
import yaml

from pgf_sim.cli import main
from pgf_sim.codesign.query.views import cost_model, cost_models
from pgf_sim.codesign.run.deploy import DeploySpec, deploy_key
from pgf_sim.codesign.run.sweep import SimulateSpec
from pgf_sim.core import ConfigError
from pgf_sim.store import ResultStore, sim_key

TINY = {
    "name": "tiny_runtimes",
    "experiment": {"name": "tiny", "model": {"name": "vit", "options": {"dim": 32, "depth": 1, "heads": 2}},
                   "schedule": {"steps": 30, "batch_size": 32, "lr": 0.004}, "checkpoint_every": 30},
    "grid": {"recipes": ["dense", "sr-ste"], "patterns": ["2:4"], "seeds": [0]},
    "hardware": ["h200", "flex_nm_systolic"],
    "workers": 1,
    "simulate": {"batch": 1, "dtype": "fp16", "runtime": ["graph", "eager"], "deploy_model": "gpt2",
                 "deploy_phase": "decode", "deploy_batch": 1, "deploy_seq_len": 512},
}


def test_keys_keep_the_eager_names_stored_before_runtimes_existed():
    assert sim_key(8, "fp16") == sim_key(8, "fp16", "eager") == "batch=8,dtype=fp16"
    assert sim_key(8, "fp16", "fused") == "batch=8,dtype=fp16,runtime=fused"
    assert deploy_key("gpt2", 8, 256, "fp16") == "deploy=gpt2,batch=8,seq_len=256,dtype=fp16"
    assert (DeploySpec("gpt2", 1, 512, "fp16", "decode", "graph").key
            == "deploy=gpt2,batch=1,seq_len=512,dtype=fp16,phase=decode,runtime=graph")
    assert "decode at batch 1, context 512, fp16, graph runtime" in DeploySpec("gpt2", 1, 512, "fp16", "decode", "graph").describe()


def test_simulate_spec_runtimes_and_phase_are_checked():
    spec = SimulateSpec(runtime=["fused", "eager"], deploy_model="gpt2", deploy_phase="decode")
    assert spec.runtimes == ("fused", "eager")
    assert [k for _, k in spec.keys()] == ["batch=1,dtype=fp16,runtime=fused", "batch=1,dtype=fp16"]
    assert [d.runtime for d in spec.deploy_specs()] == ["fused", "eager"]
    assert SimulateSpec().runtimes == ("eager",) and SimulateSpec().deploy_specs() == ()
    for bad in ("compiled", ["eager", "eager"], []):
        with pytest.raises(ConfigError, match="simulate.runtime: invalid value .*eager, graph, fused"):
            SimulateSpec(runtime=bad)
    with pytest.raises(ConfigError, match="simulate.deploy_phase: invalid value 'train'; valid values: forward, prefill, decode"):
        SimulateSpec(deploy_model="gpt2", deploy_phase="train")
    with pytest.raises(ConfigError, match="need simulate.deploy_model"):
        SimulateSpec(deploy_phase="decode")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rt")
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    db, workdir = tmp / "r.sqlite", tmp / "runs"
    rc = main(["sweep", str(path), "--db", str(db), "--workdir", str(workdir), "--threads", "1"])
    return tmp, path, db, workdir, rc


@pytest.mark.slow  # one real tiny sweep (2 runs of 30 steps)
def test_a_sweep_stores_one_view_per_runtime(swept, capsys):
    tmp, path, db, workdir, rc = swept
    assert rc == 0
    store = ResultStore(db)
    runs = [r.run_id for r in store.list_runs(status="finished")]
    assert len(runs) == 2
    views = cost_models(db, None)
    assert [(v.name, v.runtime) for v in views] == [("trained", "graph"), ("deploy", "graph"),
                                                   ("trained", "eager"), ("deploy", "eager")]
    for v in views:  # every run costed on every target in every view
        assert {(r.run_id, r.hw) for r in store.sim_totals(v.key)} == {(r, h) for r in runs for h in TINY["hardware"]}
        assert v.runtime in v.label
    # the eager and graph costs of the same trained model differ only by the host cost: eager >= graph
    graph = {(r.run_id, r.hw): r.latency_s for r in store.sim_totals(sim_key(1, "fp16", "graph"))}
    eager = {(r.run_id, r.hw): r.latency_s for r in store.sim_totals(sim_key(1, "fp16"))}
    assert all(eager[k] >= graph[k] * (1 - 1e-12) for k in graph)
    assert any(eager[k] > graph[k] * 1.5 for k in graph if k[1] == "h200")  # a tiny model is host-bound eager
    # the proxy (GPT-2 decode, batch 1, context 512) on the H200: 2:4 is slower than dense in both runtimes,
    # as the measured cuSPARSELt kernels are at small M
    for rt in ("graph", "eager"):
        key = DeploySpec("gpt2", 1, 512, "fp16", "decode", rt).key
        by = {r.run_id: r.latency_s for r in store.sim_totals(key, hw="h200")}
        dense = next(r.run_id for r in store.list_runs() if r.recipe == "dense")
        sparse = next(r.run_id for r in store.list_runs() if r.recipe == "sr-ste")
        assert by[sparse] > by[dense], rt
    # rerunning finds every view stored: nothing to run
    assert main(["sweep", str(path), "--db", str(db), "--workdir", str(workdir)]) == 0
    assert "2 done, 0 failed before, 0 to run" in capsys.readouterr().out


@pytest.mark.slow
def test_pick_and_report_name_the_runtime(swept, capsys):
    tmp, path, db, workdir, rc = swept
    assert main(["pick", "--db", str(db), "--hw", "h200", "--min-accuracy", "0", "--cost-model", "deploy",
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["runtime"] == "graph" and doc["cost_model"] == "deploy"  # the sweep's first runtime is its default
    assert {p["runtime"] for p in doc["picks"]} == {"graph"}
    assert main(["pick", "--db", str(db), "--hw", "h200", "--min-accuracy", "0", "--runtime", "eager"]) == 0
    out = capsys.readouterr().out
    assert "eager runtime]" in out and "also priced in the graph runtime" in out
    assert main(["pick", "--db", str(db), "--hw", "h200", "--runtime", "fused"]) == 2
    err = capsys.readouterr().err
    assert "has no fused runtime cost (it has: eager, graph)" in err and "runtime: [" in err
    html_path = tmp / "rep.html"
    assert main(["report", "--db", str(db), "--out", str(html_path), "--workdir", str(workdir),
                 "--runtime", "eager"]) == 0
    html = html_path.read_text()
    assert "eager runtime" in html and "graph runtime" not in html.split("<h1>", 1)[1].split("Gradient noise")[0]


def test_dse_prices_in_the_runtime_asked(capsys):
    args = ["dse", "--hw", "h200", "--model", "llama_7b", "--pattern", "2:4", "--pattern", "dense",
            "--seq-len", "2048", "--set", "memory.dram_bw_bytes_per_s=4.8e12", "--format", "json"]
    assert main(args + ["--runtime", "graph"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {r["runtime"] for r in rows} == {"graph"}
    assert main(args) == 0
    eager = {r["workload"]: r["latency_s"] for r in json.loads(capsys.readouterr().out)["rows"]}
    graph = {r["workload"]: r["latency_s"] for r in rows}
    # prefill-size forward (2048 tokens): the eager 2:4 path's per-call host cost makes 2:4 slower
    # than dense on the H200, while with graphs 2:4 is faster (the measured cuSPARSELt behaviour at large M)
    assert graph["llama_7b 2:4"] < graph["llama_7b dense"]
    assert eager["llama_7b 2:4"] > eager["llama_7b dense"]


@pytest.mark.slow
def test_the_readme_answer_is_generated_from_the_database(swept):
    import importlib.util
    from pathlib import Path

    tmp, path, db, workdir, rc = swept
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "readme_answer.py"
    spec = importlib.util.spec_from_file_location("readme_answer", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = mod.answer(db)
    # one section per runtime of the proxy, the sweep's default first, each with every target and its picks
    graph, eager = text.index("graph runtime**"), text.index("eager runtime**")
    assert graph < eager and text.count("| `h200` |") == 2 and text.count("Picks (fastest") == 2
    assert "± 0.00" not in text  # one seed: no spread shown


@pytest.mark.slow
def test_pick_without_hw_answers_for_every_target_with_the_reports_budget(swept, capsys):
    tmp, path, db, workdir, rc = swept
    assert main(["pick", "--db", str(db), "--format", "json"]) in (0, 1)
    doc = json.loads(capsys.readouterr().out)
    answered = [p["hardware"] for p in doc["picks"]] + [e.split("'")[1] for e in doc["errors"] if "'" in e]
    assert sorted(set(answered)) == sorted(TINY["hardware"])
    # the default budget (1 accuracy point below dense) is applied and stated, as on the report
    for p in doc["picks"]:
        assert p["constraint_metric_limit"] is not None and p["metric"] == "accuracy"
        assert "within 1.00 points of" in p["explanation"]


@pytest.mark.slow
def test_per_layer_breakdowns_add_up_to_the_whole_latency(swept):
    from pgf_sim.codesign.query.views import CostViewData, PickLimits, _breakdowns, load_table, make_picks

    tmp, path, db, workdir, rc = swept
    store = ResultStore(db, read_only=True)
    for cost in cost_models(db, None):
        table = load_table(db, None, cost)
        picks, _ = make_picks(table, None, PickLimits(limit=0.0), cost=cost)
        found = _breakdowns(store, CostViewData(cost, table, picks, []))
        assert found
        for b in found:
            cand = next(c for c in table.where(hardware=b.hardware) if b.label.startswith(c.label + " ("))
            total = next(t for t in store.sim_totals(cost.key, [cand.run_ids[0]]) if t.hw == b.hardware)
            assert sum(b.latency_s) == pytest.approx(total.latency_s, rel=1e-9)
            assert sum(b.energy_j) == pytest.approx(total.energy_j, rel=1e-9)
            assert "[element-wise ops, all layers]" in b.layers


@pytest.mark.slow
def test_the_first_screen_states_the_budget_and_the_other_runtime(swept):
    tmp, path, db, workdir, rc = swept
    html_path = tmp / "all.html"
    assert main(["report", "--db", str(db), "--out", str(html_path), "--workdir", str(workdir)]) == 0
    answer = html_path.read_text().split("<section id='answer'>", 1)[1].split("</section>", 1)[0]
    assert "Quality budget: candidates need mean validation accuracy &gt;=" in answer and "Margin:" in answer
    assert "(1 seed: its noise is unknown)" in answer  # the tiny sweep has one seed
    assert "In the eager runtime the fastest pick" in answer  # the view priced in the sweep's other runtime
    assert "need not hold for a larger model" in answer


@pytest.mark.slow
def test_a_one_seed_sweep_never_shows_a_zero_spread(swept, capsys):
    from pgf_sim.codesign.query.views import load_table, print_fronts

    tmp, path, db, workdir, rc = swept
    print_fronts(load_table(db, None))
    assert main(["pick", "--db", str(db)]) in (0, 1)
    html_path = tmp / "one_seed.html"
    assert main(["report", "--db", str(db), "--out", str(html_path), "--workdir", str(workdir)]) == 0
    text = capsys.readouterr().out + html_path.read_text()
    assert "± 0.00" not in text and "distinguishable_from_runner_up\": true" not in text
    assert "(1 seed)" in text
