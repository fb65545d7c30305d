"""The masked fine-tune of ``pgf-sim mixed`` runs through the trainer's one loop (``fit_steps``)."""
from __future__ import annotations

import copy

import pytest
import torch

from pgf_sim.codesign.explore.mixed import LayerPatterns, apply_patterns
from pgf_sim.codesign.explore.mixed_verify import finetune_masked
from pgf_sim.core import NM
from pgf_sim.train.data import load_data
from pgf_sim.train.models import build_model
from pgf_sim.train.trainer import TrainingDiverged, evaluate


@pytest.fixture
def masked_model(tiny_cfg, one_thread):
    cfg = tiny_cfg()
    data = load_data(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, data.spec)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][:3]
    masks = apply_patterns(model, LayerPatterns.of({n: NM(1, 4) for n in names}))
    return model, data, masks


def test_finetune_trains_with_the_masks_held(masked_model):
    model, data, masks = masked_model
    before = copy.deepcopy(model)
    loss0 = evaluate(model, data, torch.device("cpu"), False)["loss"]
    finetune_masked(model, data, masks, steps=60, lr=3e-3, batch_size=32, seed=0)
    for name, mask in masks.items():
        w = model.get_submodule(name).weight
        assert torch.count_nonzero(w[~mask]) == 0  # pruned weights stay zero after every step
        assert not torch.equal(w, before.get_submodule(name).weight)  # the kept ones trained
        assert int(mask.sum()) == w.numel() // 4  # 1:4 kept
    assert evaluate(model, data, torch.device("cpu"), False)["loss"] < loss0
    assert not model.training


def test_finetune_is_reproducible_and_zero_steps_is_a_no_op(masked_model):
    model, data, masks = masked_model
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    finetune_masked(a, data, masks, steps=4, lr=1e-3, batch_size=16, seed=5)
    finetune_masked(b, data, masks, steps=4, lr=1e-3, batch_size=16, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = copy.deepcopy(model)
    finetune_masked(c, data, masks, steps=0, lr=1e-3, batch_size=16, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(c.state_dict().values(), model.state_dict().values()))


def test_a_diverging_finetune_stops_with_a_named_error(masked_model):
    model, data, masks = masked_model
    # lr = inf: the first update makes the weights non-finite, the next loss is NaN
    with pytest.raises(TrainingDiverged, match=r"diverged at step 2 .*lower the learning rate"):
        finetune_masked(model, data, masks, steps=5, lr=float("inf"), batch_size=16, seed=0)
