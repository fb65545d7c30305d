"""Per-layer N:M targets (``RecipeConfig.layer_patterns``): selection, per-layer schedules,
training to each layer's own structure, FLOPs, and the errors a user can act on."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from pgf_sim.core import NM, ConfigError, ShapeError, from_dict, to_dict
from pgf_sim.sparsity.flops import training_flops_report
from pgf_sim.sparsity.schedules import RecipeConfig, all_targets, layer_target, pattern_at
from pgf_sim.train.sparsify import sparsify

from pgf_sim.train.experiment import experiment_from_dict



def _two_layer():
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(fc1=nn.Linear(16, 32), act=nn.ReLU(), fc2=nn.Linear(32, 4)))


def test_yaml_mapping_loads_in_order_round_trips_and_hashes():
    cfg = from_dict(RecipeConfig, {"name": "sdgf", "pattern": "1:8",
                                   "layer_patterns": {"blocks.0.*": "2:4", "*.fc2": "1:16", "*.fc1": "dense"}})
    assert cfg.layer_patterns == {"blocks.0.*": NM(2, 4), "*.fc2": NM(1, 16), "*.fc1": NM(1, 1)}
    assert to_dict(cfg)["layer_patterns"] == {"blocks.0.*": "2:4", "*.fc2": "1:16", "*.fc1": "1:1"}
    assert from_dict(RecipeConfig, to_dict(cfg)) == cfg
    assert hash(cfg) == hash(from_dict(RecipeConfig, to_dict(cfg)))
    # the first matching glob wins, over pattern; a dense entry leaves the layer dense
    assert layer_target(cfg, "blocks.0.mlp.fc2", "fc2") == NM(2, 4)
    assert layer_target(cfg, "blocks.1.mlp.fc2", "fc2") == NM(1, 16)
    assert layer_target(cfg, "blocks.1.mlp.fc1", "fc1") is None
    # a per-layer entry selects a layer whose role the roles list omits, and wins over qkv_pattern
    cfg2 = RecipeConfig(pattern=NM(1, 8), qkv_pattern=NM(2, 4), layer_patterns={"*.proj": "1:4", "*.qkv": "1:2"})
    assert layer_target(cfg2, "blocks.0.attn.proj", "proj") == NM(1, 4)
    assert layer_target(cfg2, "blocks.0.attn.qkv", "qkv") == NM(1, 2)
    assert layer_target(cfg2, "blocks.0.mlp.fc1", "fc1") == NM(1, 8)
    assert all_targets(cfg2) == (NM(1, 8), NM(2, 4), NM(1, 4), NM(1, 2))
    # exclude still wins over a per-layer entry
    assert layer_target(RecipeConfig(exclude=("*.proj",), layer_patterns={"*.proj": "1:4"}), "a.proj", "proj") is None


def test_sdgf_frames_per_layer_toward_each_target():
    """100 steps, no dense/fine-tune phase, frames in the first round(0.7*100) = 70 sparse steps.
    fc1 -> 2:4 has 2 frames (3:4, 2:4): frame = t*2//70, so 3:4 on steps 0..34.
    fc2 -> 1:8 has 4 frames (7:8, 4:8, 2:8, 1:8): frame = t*4//70, changes at 18, 35, 53."""
    cfg = RecipeConfig(name="sdgf", pattern=NM(1, 8), layer_patterns={"fc1": "2:4"})
    t1, t2 = layer_target(cfg, "fc1", "fc1"), layer_target(cfg, "fc2", "fc2")
    assert (t1, t2) == (NM(2, 4), NM(1, 8))
    fc1 = [pattern_at(cfg, s, 100, t1) for s in range(100)]
    fc2 = [pattern_at(cfg, s, 100, t2) for s in range(100)]
    assert fc1 == [NM(3, 4)] * 35 + [NM(2, 4)] * 65
    assert fc2 == [NM(7, 8)] * 18 + [NM(4, 8)] * 17 + [NM(2, 8)] * 18 + [NM(1, 8)] * 47


@pytest.mark.parametrize("recipe", ["ste", "sr-ste", "mdgf", "sdgf", "mdgf+sdgf"])
def test_two_layer_model_trains_to_each_layers_own_structure(recipe, one_thread):
    model = _two_layer()
    cfg = RecipeConfig(name=recipe, pattern=NM(1, 8), layer_patterns={"fc1": "2:4", "fc2": "1:8"})
    steps = 30
    ctl = sparsify(model, cfg, steps)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    for step in range(steps):
        ctl.set_step(step)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert {n: i.pattern for n, i in ctl.layer_info().items()} == {"fc1": NM(2, 4), "fc2": NM(1, 8)}
    ctl.finalize(early=True)  # one-shot pruning of an untrained model is what this test wants
    nonzero_fc1 = (model.fc1.weight != 0).reshape(32, 4, 4).sum(-1)  # (out, groups) kept per group of 4
    nonzero_fc2 = (model.fc2.weight != 0).reshape(4, 4, 8).sum(-1)
    assert torch.equal(nonzero_fc1, torch.full_like(nonzero_fc1, 2))
    assert torch.equal(nonzero_fc2, torch.full_like(nonzero_fc2, 1))


def test_trainer_records_per_layer_patterns(tmp_path, one_thread, tiny_dict):
    from pgf_sim.store import ResultStore
    from pgf_sim.train.trainer import train

    data = tiny_dict(recipe="sdgf", pattern="1:8")
    data["recipe"]["layer_patterns"] = {"*fc1": "2:4"}
    cfg = experiment_from_dict(data)
    summary = train(cfg, store=ResultStore(tmp_path / "r.db"), workdir=tmp_path, progress=False)
    pats = {n: p for n, (p, _, _) in summary.layer_info.items()}
    fc1 = [n for n in pats if n.endswith("fc1")]
    fc2 = [n for n in pats if n.endswith("fc2")]
    assert fc1 and fc2 and all(pats[n] == NM(2, 4) for n in fc1) and all(pats[n] == NM(1, 8) for n in fc2)
    mods = dict(summary.model.named_modules())
    for names, pat in ((fc1, NM(2, 4)), (fc2, NM(1, 8))):
        for n in names:
            w = mods[n].weight
            kept = (w != 0).reshape(w.shape[0], -1, pat.m).sum(-1)
            assert int(kept.max()) <= pat.n and float(kept.float().mean()) > pat.n - 0.01


def test_flops_follow_each_layers_target():
    """STE, 10 steps, 8 tokens: forward and input gradient cost density * 2*T*O*K per step,
    the weight gradient the dense 2*T*O*K."""
    cfg = RecipeConfig(name="ste", pattern=NM(1, 8), layer_patterns={"fc1": "2:4"})
    layers = {"fc1": ((32, 16), "fc1"), "fc2": ((4, 32), "fc2")}
    rep = {l.name: l for l in training_flops_report(cfg, layers, tokens=8, total_steps=10).layers}
    per1, per2 = 2 * 8 * 32 * 16, 2 * 8 * 4 * 32
    assert (rep["fc1"].target, rep["fc2"].target) == (NM(2, 4), NM(1, 8))
    assert rep["fc1"].forward == rep["fc1"].input_grad == 0.5 * per1 * 10
    assert rep["fc2"].forward == rep["fc2"].input_grad == 0.125 * per2 * 10
    assert rep["fc1"].weight_grad == per1 * 10 and rep["fc2"].weight_grad == per2 * 10


def test_config_errors():
    with pytest.raises(ConfigError, match=r"layer_patterns\['fc1'\].*'2:5x'"):
        RecipeConfig(layer_patterns={"fc1": "2:5x"})
    with pytest.raises(ConfigError, match="non-empty"):
        RecipeConfig(layer_patterns={"": "2:4"})
    with pytest.raises(ConfigError, match=r"'fc3'.*match no weight layer.*fc1, fc2"):
        sparsify(_two_layer(), RecipeConfig(layer_patterns={"fc3": "2:4"}), 10)
    # shadowed by an earlier glob: it can never apply
    with pytest.raises(ConfigError, match=r"\['fc2'\] match no"):
        sparsify(_two_layer(), RecipeConfig(layer_patterns={"fc*": "2:4", "fc2": "1:8"}), 10)
    # geometric SDGF toward 1:4 needs in_features divisible by 8*4 = 32: fc1 has 16
    cfg = RecipeConfig(name="sdgf", pattern=NM(1, 2), sdgf_schedule="geometric", layer_patterns={"fc1": "1:4"})
    with pytest.raises(ShapeError, match=r"'fc1'.*M=32.*geometric frame of target 1:4.*layer_patterns\['fc1'\]"):
        sparsify(_two_layer(), cfg, 10)
