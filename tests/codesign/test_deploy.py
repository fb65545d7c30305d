"""The deployment-scale proxy cost: per-role patterns of a trained run costed on a built-in
architecture, stored beside the trained model's own cost, and shown (labelled) by pick and report."""
import pytest

from pgf_sim.cli import main
from pgf_sim.codesign.run.deploy import DeploySpec, role_patterns, simulate_deploy
from pgf_sim.codesign.run.sweep import spec_from_config
from pgf_sim.core import NM, ConfigError
from pgf_sim.sim.hardware import load_hardware
from pgf_sim.sim.simulate import simulate
from pgf_sim.sim.workloads import build_workload
from pgf_sim.store import TOTAL_METRICS, PointRow, ResultStore, SimLayerRow, sim_key

KEY = sim_key(1, "fp16")
HW = [("a100_80gb", "a100_80gb"), ("flex_nm_systolic", "flex_nm_systolic")]
TARGETS = [(label, load_hardware(name)) for label, name in HW]
SPEC = DeploySpec("vit_b", 2, None, "fp16")


def _captured(mlp: str, qkv: str = "dense", proj: str = "dense", fc2: str | None = None):
    """Weight layers of a 2-block ViT as a capture stores them (only the fields the proxy reads
    are meaningful; costs are arbitrary)."""
    rows = []
    for b in range(2):
        for name, role, pat in (("attn.qkv", "qkv", qkv), ("attn.proj", "proj", proj), ("mlp.fc1", "fc1", mlp),
                                ("mlp.fc2", "fc2", fc2 or mlp)):
            rows.append({"layer": f"blocks.{b}.{name}", "kind": "gemm", "role": role, "pattern": pat,
                         "exec_pattern": pat, "dense_flops": 1.0, "exec_flops": 1.0, "weight_bytes": 1.0,
                         "dram_bytes": 1.0, "latency_s": 1e-6, "energy_j": 1e-9, "bound": "overhead"})
    rows.append({**rows[0], "layer": "blocks.0.attn.softmax", "kind": "elementwise", "role": "softmax", "pattern": "1:8"})
    return rows


def _rows(layers):
    """The captured layers as the store returns them (patterns parsed to NM)."""
    return [SimLayerRow("r", "hw", KEY, i, **{**row, "pattern": NM.parse(row["pattern"]),
                                               "exec_pattern": NM.parse(row["exec_pattern"])})
            for i, row in enumerate(layers)]


def test_role_patterns_uniform_groups_and_clear_errors():
    assert role_patterns(_rows(_captured("1:8"))) == (NM(1, 8), None)
    assert role_patterns(_rows(_captured("2:4", qkv="1:8"))) == (NM(2, 4), NM(1, 8))
    assert role_patterns(_rows(_captured("dense"))) == (NM.parse("dense"), None)
    with pytest.raises(ConfigError, match=r"run r1: layers of roles fc1/fc2.*different N:M patterns.*1:8.*2:4"):
        role_patterns(_rows(_captured("1:8", fc2="2:4")), run_id="r1")
    with pytest.raises(ConfigError, match=r"keeps all but the MLP and q/k/v layers dense.*2:4: blocks.0.attn.proj"):
        role_patterns(_rows(_captured("1:8", proj="2:4")))


def _store(tmp_path, *, deploy: bool):
    """A hand-made finished sweep: dense and mdgf 1:8 (2 seeds each), trained costs of the tiny model."""
    store = ResultStore(tmp_path / "r.sqlite")
    sim = {"batch": 1, "dtype": "fp16", **({"deploy_model": "vit_b", "deploy_batch": 2} if deploy else {})}
    store.record_sweep("s", KEY, HW, {"name": "s", "simulate": sim})
    pts = [("d-0", "dense", "dense", 0, 0.90), ("d-1", "dense", "dense", 1, 0.92),
           ("m-0", "mdgf", "1:8", 0, 0.89), ("m-1", "mdgf", "1:8", 1, 0.91)]
    store.record_points("s", [PointRow(r, rc, NM.parse(p), sd, "", {}) for r, rc, p, sd, _ in pts])
    for run_id, recipe, pattern, seed, acc in pts:
        store.start_run(run_id, name="x", config={}, recipe=recipe, pattern=pattern, seed=seed)
        store.finish_run(run_id, final_step=10, final_accuracy=acc)
        layers = _captured(pattern)
        totals = {k: sum(r[k] for r in layers) for k in TOTAL_METRICS}
        for label, _ in HW:  # the tiny model: same cost for every pattern (launch-bound)
            store.write_simulation(run_id, label, KEY, batch=1, dtype="fp16", totals=totals, layers=layers)
    return store, pts


def test_deploy_rows_equal_a_direct_simulation_of_the_same_patterns(tmp_path):
    store, pts = _store(tmp_path, deploy=True)
    spec = spec_from_config(store.sweep_info("s").config)
    assert spec == SPEC and spec.key != KEY
    for run_id, *_ in pts:
        assert simulate_deploy(store, run_id, TARGETS, spec, trained_key=KEY, train_flops=None) == [h for h, _ in HW]
        assert simulate_deploy(store, run_id, TARGETS, spec, trained_key=KEY, train_flops=None) == []  # idempotent
    for run_id, _, pattern, _, _ in pts:
        for label, name in HW:
            want = simulate(build_workload("vit_b", batch=2, pattern=NM.parse(pattern)), load_hardware(name)).totals
            [row] = store.sim_totals(spec.key, [run_id], hw=label)
            assert row.latency_s == pytest.approx(want["latency_s"]) and row.energy_j == pytest.approx(want["energy_j"])
            assert row.exec_flops == pytest.approx(want["exec_flops"]) and row.batch == 2
            assert row.n_layers == len(store.sim_layers(run_id, label, spec.key)) > 20
    # the proxy is what makes the pattern matter: on the flexible N:M array 1:8 is faster than dense
    [dense] = store.sim_totals(spec.key, ["d-0"], hw="flex_nm_systolic")
    [sparse] = store.sim_totals(spec.key, ["m-0"], hw="flex_nm_systolic")
    assert sparse.latency_s < dense.latency_s
    # the trained rows are untouched
    assert len(store.sim_totals(KEY)) == len(pts) * len(HW)


def test_pick_and_report_label_both_views(tmp_path, capsys):
    store, pts = _store(tmp_path, deploy=True)
    for run_id, *_ in pts:
        simulate_deploy(store, run_id, TARGETS, SPEC, trained_key=KEY, train_flops=None)
    db = str(tmp_path / "r.sqlite")
    assert main(["pick", "--db", db, "--hw", "flex_nm_systolic", "--min-accuracy", "0.85", "--cost-model", "deploy"]) == 0
    out = capsys.readouterr().out
    # proxy cost: 1:8 is faster than dense on the flexible array, so mdgf 1:8 wins despite lower accuracy
    assert out.startswith("On flex_nm_systolic: train mdgf 1:8") and "[cost model: DEPLOYMENT PROXY vit_b at batch 2" in out
    assert main(["pick", "--db", db, "--hw", "flex_nm_systolic", "--min-accuracy", "0.85", "--cost-model", "trained"]) == 0
    out = capsys.readouterr().out
    # own cost: every candidate ties, so the most accurate (dense) wins
    assert out.startswith("On flex_nm_systolic: train dense") and "[cost model: trained model (batch=1, fp16), eager runtime]" in out
    assert "--cost-model deploy" in out
    # without --cost-model, pick answers in the view the report's answer uses: the proxy, since the
    # trained model's own costs are flat across patterns
    assert main(["pick", "--db", db, "--hw", "flex_nm_systolic", "--min-accuracy", "0.85"]) == 0
    assert capsys.readouterr().out.startswith("On flex_nm_systolic: train mdgf 1:8")
    html_path = tmp_path / "rep.html"
    assert main(["report", "--db", db, "--out", str(html_path), "--workdir", str(tmp_path / "none")]) == 0
    html = html_path.read_text()
    assert "Cost model: trained model" in html and "Cost model: DEPLOYMENT PROXY vit_b at batch 2" in html
    assert "quality (the task metric) comes from the small trained model" in html and html.count("Plotly.newPlot") >= 5
    assert main(["report", "--db", db, "--out", str(html_path), "--cost-model", "trained",
                 "--workdir", str(tmp_path / "none")]) == 0
    assert "DEPLOYMENT PROXY" not in html_path.read_text().split("<h1>", 1)[1].split("Gradient noise")[0]


def test_an_old_db_without_deploy_rows_still_works(tmp_path, capsys):
    _store(tmp_path, deploy=False)
    db = str(tmp_path / "r.sqlite")
    assert main(["pick", "--db", db, "--hw", "a100_80gb", "--min-accuracy", "0.85"]) == 0
    assert "[cost model: trained model" in capsys.readouterr().out
    assert main(["pick", "--db", db, "--hw", "a100_80gb", "--cost-model", "deploy"]) == 2
    assert "has no deployment-proxy cost: add `deploy_model: vit_b`" in capsys.readouterr().err
    html_path = tmp_path / "rep.html"
    assert main(["report", "--db", db, "--out", str(html_path), "--workdir", str(tmp_path / "none")]) == 0
    html = html_path.read_text()
    assert "Cost model: trained model" in html and "DEPLOYMENT PROXY" not in html


def test_sweep_config_validates_the_proxy(tmp_path):
    from pgf_sim.codesign.run.sweep import SimulateSpec

    assert SimulateSpec(batch=64, deploy_model="vit_b").deploy_spec() == DeploySpec("vit_b", 64, None, "fp16")
    assert SimulateSpec(batch=64).deploy_spec() is None
    with pytest.raises(ConfigError, match="need simulate.deploy_model"):
        SimulateSpec(deploy_batch=8)
    with pytest.raises(ConfigError, match="deploy_batch must be >= 1"):
        SimulateSpec(deploy_model="vit_b", deploy_batch=0)
