"""Mixed per-layer N:M assignment: the solvers against brute force, a hand-made case, and its
verification by training through the real trainer."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pgf_sim.codesign.explore.mixed import best_uniform, layer_costs, solve_brute_force, solve_exact, solve_greedy
from pgf_sim.core import ConfigError


def test_hand_made_case():
    # 3 layers x (2:4, 1:8, 1:16). Costs (ms) fall with sparsity; layer 0 is fragile.
    cost = np.array([[4.0, 2.0, 1.0],
                     [4.0, 2.0, 1.0],
                     [8.0, 4.0, 2.0]])
    pen = np.array([[0, 9, 30],
                     [0, 1, 2],
                     [0, 2, 5]])
    # budget 7: the sparsest choice for layers 1 and 2 (2 + 5 = 7 errors) and 2:4 for layer 0
    # costs 4 + 1 + 2 = 7 ms; any use of layer 0's 1:8 (9 errors) breaks the budget.
    a = solve_exact(cost, pen, 7)
    assert a.choice == (0, 2, 2) and a.cost == 7.0 and a.penalty == 7
    # uniform: 1:8 everywhere needs 9 + 1 + 2 = 12 > 7 errors, so only 2:4 (16 ms) fits
    u = best_uniform(cost, pen, 7)
    assert u.choice == (0, 0, 0) and u.cost == 16.0
    # budget 0: nothing may cost an error
    assert solve_exact(cost, pen, 0).choice == (0, 0, 0)


def test_infeasible_budget_is_an_error():
    with pytest.raises(ConfigError, match="no assignment fits"):
        solve_exact(np.ones((2, 2)), np.array([[1, 2], [1, 2]]), 1)
    with pytest.raises(ConfigError, match="whole numbers"):
        solve_exact(np.ones((1, 2)), np.array([[0.5, 1.0]]), 1)


tables = st.integers(1, 5).flatmap(lambda L: st.integers(1, 4).flatmap(lambda P: st.tuples(
    st.lists(st.lists(st.integers(0, 50), min_size=P, max_size=P), min_size=L, max_size=L),
    st.lists(st.lists(st.integers(0, 6), min_size=P, max_size=P), min_size=L, max_size=L),
    st.integers(0, 20),
)))


@settings(max_examples=300, deadline=None)
@given(tables)
def test_exact_and_greedy_vs_brute_force(t):
    cost, pen, budget = np.array(t[0], dtype=float), np.array(t[1]), t[2]
    try:
        ref = solve_brute_force(cost, pen, budget)
    except ConfigError:
        with pytest.raises(ConfigError):
            solve_exact(cost, pen, budget)
        with pytest.raises(ConfigError):
            solve_greedy(cost, pen, budget)
        return
    ex = solve_exact(cost, pen, budget)
    assert ex.penalty <= budget
    assert ex.cost == pytest.approx(ref.cost)
    # the reported totals are those of the reported choice
    rows = np.arange(cost.shape[0])
    assert ex.cost == pytest.approx(cost[rows, list(ex.choice)].sum())
    assert ex.penalty == pen[rows, list(ex.choice)].sum()
    gr = solve_greedy(cost, pen, budget)
    assert gr.penalty <= budget and gr.cost >= ref.cost - 1e-9
    uni = best_uniform(cost, pen, budget)
    if uni is not None:  # mixed never loses to the best uniform assignment
        assert ex.cost <= uni.cost + 1e-9


def test_sensitivity_counts_the_errors_a_re_mask_causes():
    """One Linear(8 -> 2), hand-made: class 0 relies on the 2nd-largest weight of a 4-group,
    which 2:4 keeps and 1:4 prunes."""
    import torch

    from pgf_sim.codesign.explore.mixed import measure_sensitivity
    from pgf_sim.core import NM

    model = torch.nn.Sequential(torch.nn.Linear(8, 2, bias=False))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, :2] = torch.tensor([1.0, 0.9])  # row 0: group [1, .9, 0, 0]
        model[0].weight[1, 1] = 0.5                          # row 1: group [0, .5, 0, 0]
    x = torch.zeros(5, 8)
    x[:3, 1] = 1.0   # 3 examples read feature 1: 0.9 vs 0.5 -> class 0; under 1:4 0 vs 0.5 -> class 1
    x[3:, 0] = 1.0   # 2 examples read feature 0: class 0 under both patterns
    y = torch.zeros(5, dtype=torch.long)
    w_before = model[0].weight.detach().clone()
    s = measure_sensitivity(model, x, y, ("0",), (NM(2, 4), NM(1, 4), NM(1, 3)))
    assert s.base_errors == 0 and s.n_calib == 5
    assert s.errors.tolist() == [[0, 3, 6]]  # 1:3 cannot hold 8 inputs: n + 1, beyond any budget
    assert s.penalty.tolist() == [[0, 3, 6]]
    assert torch.equal(model[0].weight, w_before)  # the trained weights are restored


def test_layer_costs_add_up_to_the_simulated_total():
    """The per-layer costs at the captured patterns + the constant = simulate()'s total."""
    import torch

    from pgf_sim.codesign.explore.mixed import LayerPatterns, apply_patterns, layer_costs
    from pgf_sim.core import NM
    from pgf_sim.sim.capture import capture
    from pgf_sim.sim.hardware import load_hardware
    from pgf_sim.sim.simulate import simulate
    from pgf_sim.train.data import data_spec
    from pgf_sim.train.experiment import experiment_from_dict
    from pgf_sim.train.models import build_model
    from pgf_sim.train.trainer import example_input

    cfg = experiment_from_dict({"name": "t", "schedule": {"steps": 1},
                                "model": {"name": "vit", "options": {"dim": 32, "depth": 1, "heads": 2}}})
    torch.manual_seed(0)
    model = build_model(cfg.model, data_spec(cfg.data))
    layers = ("blocks.0.mlp.fc1", "blocks.0.mlp.fc2")
    apply_patterns(model, LayerPatterns.of({layers[0]: NM(2, 4), layers[1]: NM(1, 8)}))
    workload = capture(model, (example_input(cfg, 16),))
    pats = (NM(2, 4), NM(1, 8), NM(1, 16))
    for hw_name in ("flex_nm_systolic", "a100_80gb"):
        hw = load_hardware(hw_name)
        sim = simulate(workload, hw).totals
        for metric in ("latency_s", "energy_j"):  # the simulator's and the store's names agree
            cost, const = layer_costs(workload, layers, pats, hw, metric)
            assert cost.shape == (2, 3)
            assert const + cost[0, 0] + cost[1, 1] == pytest.approx(sim[metric], rel=1e-9)
            # a sparser pattern never costs more on the same layer (monotone in density here)
            assert np.all(np.diff(cost, axis=1) <= 1e-15)


def _tiny_experiment(steps: int = 6):
    from pgf_sim.train.experiment import experiment_from_dict

    return experiment_from_dict({
        "name": "tiny_mixed", "model": {"name": "vit", "options": {"dim": 32, "depth": 1, "heads": 2}},
        "recipe": {"name": "sdgf", "pattern": "2:4"},
        "schedule": {"steps": steps, "batch_size": 32, "lr": 2e-3, "warmup_fraction": 0.0}, "checkpoint_every": 3})


def test_layer_names_become_exact_globs():
    from fnmatch import fnmatchcase

    from pgf_sim.codesign.explore.mixed import LayerPatterns
    from pgf_sim.codesign.explore.mixed_verify import mixed_experiment
    from pgf_sim.core import NM

    cfg = mixed_experiment(_tiny_experiment(), LayerPatterns.of({"a[0].fc1": NM(1, 8), "b*.fc2": NM(2, 4)}), seed=3)
    assert cfg.seed == 3 and cfg.name == "tiny_mixed-mixed" and cfg.recipe.name == "sdgf"
    globs = list(cfg.recipe.layer_patterns)
    assert fnmatchcase("a[0].fc1", globs[0]) and not fnmatchcase("a0.fc1", globs[0])
    assert fnmatchcase("b*.fc2", globs[1]) and not fnmatchcase("bx.fc2", globs[1])


def test_assignment_trained_by_the_trainer_has_its_structure_and_cost(tmp_path):
    """Train a 1-block ViT with fc1 at 1:8 and fc2 at 2:4 through the real trainer; the trained
    model's captured patterns are the assignment, its simulated latency is the per-layer costs
    of that assignment (measured on another, untrained model) plus the constant, and a second
    call reuses the finished run instead of training again."""
    import torch

    from pgf_sim.codesign.explore.mixed import LayerPatterns, apply_patterns
    from pgf_sim.codesign.explore.mixed_verify import train_assignment
    from pgf_sim.core import NM
    from pgf_sim.sim.capture import capture
    from pgf_sim.sim.hardware import load_hardware
    from pgf_sim.store import ResultStore
    from pgf_sim.train.data import data_spec
    from pgf_sim.train.models import build_model
    from pgf_sim.train.trainer import example_input

    torch.set_num_threads(1)
    cfg = _tiny_experiment()
    layers = ("blocks.0.mlp.fc1", "blocks.0.mlp.fc2")
    assignment = LayerPatterns.of({layers[0]: NM(1, 8), layers[1]: NM(2, 4)})
    store = ResultStore(tmp_path / "r.sqlite")
    kw = dict(seeds=(0,), store=store, workdir=tmp_path / "runs", hw="flex_nm_systolic", metric="latency_s", batch=4)
    t = train_assignment(cfg, assignment, **kw)
    run = store.get_run(t.run_ids[0])
    assert run.status == "finished" and run.final_step == 6
    assert t.accuracies == (pytest.approx(run.final_accuracy),) and 0.0 <= t.accuracy <= 1.0
    assert t.patterns == assignment

    other = build_model(cfg.model, data_spec(cfg.data))
    apply_patterns(other, LayerPatterns.of({layers[0]: NM(2, 4), layers[1]: NM(2, 4)}))
    pats = (NM(2, 4), NM(1, 8))
    cost, const = layer_costs(capture(other, (example_input(cfg, 4),)), layers, pats,
                              load_hardware("flex_nm_systolic"), "latency_s")
    assert t.cost == pytest.approx(const + cost[0, 1] + cost[1, 0], rel=1e-9)

    ckpt = tmp_path / "runs" / t.run_ids[0]
    before = {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()}
    again = train_assignment(cfg, assignment, **kw)
    assert again.run_ids == t.run_ids and again.accuracies == t.accuracies
    assert {p.name: p.stat().st_mtime_ns for p in ckpt.iterdir()} == before  # reused, not retrained


@pytest.mark.slow  # a real 2-run sweep, the mixed choice, its fine-tune and its training (~30 s)
def test_run_mixed_verifies_by_training(tmp_path):
    import torch
    import yaml

    from pgf_sim.cli import main
    from pgf_sim.codesign.explore.mixed_verify import run_mixed
    from pgf_sim.store import ResultStore

    torch.set_num_threads(1)
    sweep = {"name": "tiny_mixed",
             "experiment": {"name": "tiny", "model": {"name": "vit", "options": {"dim": 32, "depth": 1, "heads": 2}},
                            "schedule": {"steps": 30, "batch_size": 32, "lr": 0.004}, "checkpoint_every": 15},
             "grid": {"recipes": ["sr-ste"], "patterns": ["2:4", "1:8"], "seeds": [0]},
             "hardware": ["flex_nm_systolic"], "workers": 1}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep))
    db, workdir = tmp_path / "r.sqlite", tmp_path / "runs"
    assert main(["sweep", str(path), "--db", str(db), "--workdir", str(workdir), "--threads", "1"]) == 0
    res = run_mixed(db=db, sweep=None, workdir=workdir, hw="flex_nm_systolic", recipe="sr-ste",
                    budget=0.5, finetune_steps=3, n_calib=64)
    t = res.trained_mixed
    chosen = res.mixed.layer_patterns(res.sensitivity.layers, res.sensitivity.patterns)
    assert t is not None and t.seeds == (0,) and t.patterns == chosen
    run = ResultStore(db).get_run(t.run_ids[0])
    assert run.status == "finished" and run.config["recipe"]["layer_patterns"]
    assert set(res.trained) == {"2:4", "1:8"} and "mixed fine-tuned" in res.accuracy
    out = res.format()
    assert "trained from scratch with recipe.layer_patterns" in out and t.run_ids[0] in out
    better = [p for p, (a, c, _) in res.trained.items() if a >= t.accuracy and c <= t.cost]
    assert ("at least as accurate and as cheap as the trained mixed one: " + (", ".join(better) or "none")) in out


def test_layer_patterns_is_a_read_only_hashable_mapping():
    from pgf_sim.codesign.explore.mixed import Assignment, LayerPatterns
    from pgf_sim.core import NM

    a = LayerPatterns.of({"blocks.1.fc2": "1:8", "blocks.0.fc1": NM(2, 4)})
    assert list(a) == ["blocks.1.fc2", "blocks.0.fc1"]  # the order given
    assert a["blocks.1.fc2"] == NM(1, 8) and "blocks.0.fc1" in a and len(a) == 2
    assert a == {"blocks.0.fc1": NM(2, 4), "blocks.1.fc2": NM(1, 8)}
    assert hash(a) == hash(LayerPatterns.of(dict(a))) and {a: 1}[LayerPatterns.of(dict(a))] == 1
    with pytest.raises(TypeError):
        a["blocks.0.fc1"] = NM(1, 16)  # read-only
    chosen = Assignment((1, 0), 1.0, 0).layer_patterns(("l0", "l1"), (NM(2, 4), NM(1, 8)))
    assert chosen == {"l0": NM(1, 8), "l1": NM(2, 4)}


def _hf_conv1d(n_in: int, n_out: int):
    """Hugging Face GPT-2's Conv1D layout: weight (in, out), y = x @ W + b (reduction along dim 0)."""
    import torch

    class Conv1D(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(n_in, n_out))
            self.bias = torch.nn.Parameter(torch.zeros(n_out))

        def forward(self, x):
            return x @ self.weight + self.bias

    return Conv1D()


def test_re_masking_follows_each_layers_reduction_dim():
    """Conv1D groups run down the input rows (dim 0); MultiheadAttention's packed in_proj_weight
    (3E, E) is named '<module>.in_proj_weight' and groups along its inputs (dim 1)."""
    import torch

    from pgf_sim.codesign.explore.mixed import apply_patterns
    from pgf_sim.core import NM

    torch.manual_seed(0)
    model = torch.nn.Module()
    model.c_fc = _hf_conv1d(8, 6)
    model.attn = torch.nn.MultiheadAttention(8, 2)
    w = model.c_fc.weight.detach().clone()
    qkv = model.attn.in_proj_weight.detach().clone()
    masks = apply_patterns(model, {"c_fc": NM(1, 4), "attn.in_proj_weight": "2:4"})
    # by hand: column j, rows 4g..4g+3 keep the one largest |w|
    expected = torch.zeros(8, 6, dtype=torch.bool)
    for j in range(6):
        for g in range(2):
            expected[4 * g + int(w[4 * g:4 * g + 4, j].abs().argmax()), j] = True
    assert torch.equal(masks["c_fc"], expected)
    assert torch.equal(model.c_fc.weight.detach(), w * expected)
    groups = qkv.abs().reshape(24, 2, 4)  # each row: two groups of 4 consecutive inputs
    kept = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.topk(2, dim=-1).indices, True)
    assert torch.equal(masks["attn.in_proj_weight"], kept.reshape(24, 8))
    with pytest.raises(Exception, match="not weight layers.*c_fc"):
        apply_patterns(model, {"attn": NM(2, 4)})


def test_sensitivity_checks_divisibility_along_the_reduction_dim():
    """Conv1D(8 -> 6): 8 inputs hold 1:4 groups although the 6 outputs do not divide by 4."""
    import torch

    from pgf_sim.codesign.explore.mixed import measure_sensitivity
    from pgf_sim.core import NM

    torch.manual_seed(0)
    model = torch.nn.Sequential(_hf_conv1d(8, 6))
    x = torch.randn(40, 8)
    y = model(x).argmax(-1).detach()
    w_before = model[0].weight.detach().clone()
    s = measure_sensitivity(model, x, y, ("0",), (NM(1, 4), NM(1, 3)))
    assert s.base_errors == 0
    assert 0 <= s.errors[0, 0] <= 40  # measured, not the "cannot hold it" marker n + 1
    assert s.errors[0, 1] == 41       # 8 inputs do not divide into groups of 3
    assert torch.equal(model[0].weight, w_before)
