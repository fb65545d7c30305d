"""Every public entry point that takes an N:M pattern accepts the text form ("1:16", "dense") and
parses it where it is given: a bad pattern fails at once naming the field, never later inside
training with ``'str' object has no attribute 'm'``."""
import re
from collections import OrderedDict
from dataclasses import replace

import pytest
import torch
from torch import nn

from pgf_sim.core import NM, ConfigError
from pgf_sim.sparsity.schedules import RecipeConfig


def test_recipe_config_parses_patterns_at_construction():
    cfg = RecipeConfig(name="mdgf", pattern="1:16", qkv_pattern="2:8", layer_patterns={"fc1": "dense"})
    assert cfg.pattern == NM(1, 16) and cfg.qkv_pattern == NM(2, 8) and cfg.layer_patterns == {"fc1": NM(1, 1)}
    assert cfg == RecipeConfig(name="mdgf", pattern=NM(1, 16), qkv_pattern=NM(2, 8), layer_patterns={"fc1": NM(1, 1)})
    assert replace(cfg, pattern="2:4").pattern == NM(2, 4)
    for field, kwargs in (("recipe.pattern", {"pattern": "1-16"}), ("recipe.qkv_pattern", {"qkv_pattern": "5:4"}),
                          ("layer_patterns['fc1']", {"layer_patterns": {"fc1": "x"}})):
        with pytest.raises(ConfigError, match="^" + re.escape(field) + ": "):
            RecipeConfig(**kwargs)


def test_a_string_pattern_trains_and_finalizes_like_the_value():
    from pgf_sim.train.masks import complies
    from pgf_sim.train.sparsify import sparsify

    results = []
    for pattern in ("1:8", NM(1, 8)):
        torch.manual_seed(0)
        model = nn.Sequential(OrderedDict(fc1=nn.Linear(16, 16), fc2=nn.Linear(16, 2)))
        ctl = sparsify(model, RecipeConfig(name="sdgf", pattern=pattern), 4)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(4):
            opt.zero_grad()
            model(torch.randn(4, 16)).sum().backward()
            opt.step()
        ctl.finalize()
        assert complies(model.fc1.weight, NM(1, 8))
        results.append(model.fc1.weight.detach().clone())
    assert torch.equal(*results)


def test_mask_functions_take_text_patterns():
    from pgf_sim.train.masks import check_divisible, complies, nm_mask, nm_masks, reference_mask

    w = torch.randn(4, 16)
    assert torch.equal(nm_mask(w, "2:8"), nm_mask(w, NM(2, 8)))
    assert torch.equal(nm_masks([w, w], "2:8", names=["a", "b"], reduction_dims=[1, 1])[1], nm_mask(w, NM(2, 8)))
    assert torch.equal(reference_mask(w, "2:8"), nm_mask(w, NM(2, 8)))
    assert complies(w * nm_mask(w, "1:4"), "1:4") and complies(w, "dense")
    check_divisible((4, 16), "1:16")
    with pytest.raises(ConfigError, match="cannot parse N:M pattern '2/4'"):
        nm_mask(w, "2/4")


def test_simulator_values_take_text_patterns():
    from pgf_sim.codesign.run.sweep import GridSpec
    from pgf_sim.sim.cost import evaluate_grid
    from pgf_sim.sim.hardware import load_hardware
    from pgf_sim.sim.ops import Op
    from pgf_sim.sim.simulate import training_ops
    from pgf_sim.sim.workloads import gemm_workload

    assert Op("g", "gemm", m=8, n=8, k=16, pattern="2:4") == Op("g", "gemm", m=8, n=8, k=16, pattern=NM(2, 4))
    hw = load_hardware("a100_40gb")
    table = gemm_workload(64, 64, 256).table()
    a = evaluate_grid(table, [hw], patterns=["2:4", "1:8"])
    b = evaluate_grid(table, [hw], patterns=[NM(2, 4), NM(1, 8)])
    assert (a.latency_s == b.latency_s).all()
    ops = training_ops(gemm_workload(64, 64, 256), {"gemm": "2:4"}, {"gemm": "2:4"})
    assert {op.pattern for op in ops} == {NM(2, 4)}
    assert replace(hw.sparse, native_patterns=("2:4",)).native_patterns == (NM(2, 4),)
    assert GridSpec(recipes=("ste",), patterns=("2:4", "1:8")).patterns == (NM(2, 4), NM(1, 8))
    with pytest.raises(ConfigError, match="grid.patterns has duplicates"):
        GridSpec(recipes=("ste",), patterns=("2:4", NM(2, 4)))
