"""The forward weight and the gradient each recipe delivers, against hand-derived values.

One layer y = W_eff x + b with W = [0.5, -2, 0.1, 3], x = [1, 2, 3, 4], loss = y, so
dL/dW_eff = x = [1, 2, 3, 4]. The 2:4 mask keeps |-2| and |3| (positions 1, 3).
"""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from pgf_sim.core import NM
from pgf_sim.train.masks import complies
from pgf_sim.train.recipes import BEHAVIOURS
from pgf_sim.sparsity.schedules import RECIPES, RecipeConfig
from pgf_sim.train.sparsify import sparsify

W = [0.5, -2.0, 0.1, 3.0]
X = [1.0, 2.0, 3.0, 4.0]


def _one_layer(cfg: RecipeConfig, total: int, step: int):
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 1)))
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([W]))
        model.fc1.bias.fill_(0.25)
    ctl = sparsify(model, cfg, total)
    ctl.set_step(step)
    y = model(torch.tensor([X]))
    y.sum().backward()
    grad = ctl.dense_weights()["fc1"].grad[0].tolist()
    return y.item(), grad, model.fc1.bias.grad.item()


def test_dense():
    y, g, gb = _one_layer(RecipeConfig(name="dense", pattern=NM(2, 4)), 10, 3)
    assert y == pytest.approx(0.5 - 4 + 0.3 + 12 + 0.25) and g == pytest.approx(X) and gb == 1.0


def test_ste_forward_masks_and_gradient_passes_straight_through():
    y, g, gb = _one_layer(RecipeConfig(name="ste", pattern=NM(2, 4)), 10, 3)
    assert y == pytest.approx(-2 * 2 + 3 * 4 + 0.25)  # bias kept
    assert g == pytest.approx(X) and gb == 1.0  # pruned weights 0 and 2 get the full gradient too


def test_sr_ste_adds_lambda_times_pruned_weights():
    lam = 0.1
    y, g, _ = _one_layer(RecipeConfig(name="sr-ste", pattern=NM(2, 4), srste_lambda=lam), 10, 3)
    assert y == pytest.approx(8.25)
    assert g == pytest.approx([1 + lam * 0.5, 2.0, 3 + lam * 0.1, 4.0])


def test_sr_ste_finetune_phase_is_plain_ste():
    cfg = RecipeConfig(name="sr-ste", pattern=NM(2, 4), srste_lambda=0.1, finetune_fraction=0.5)
    _, g, _ = _one_layer(cfg, 10, 7)
    assert g == pytest.approx(X)


# mdgf with linear alpha = 0.25: beta = 1 - 0.25*2 = 0.5 two steps into the sparse phase.
MDGF = dict(name="mdgf", pattern=NM(2, 4), decay="linear", alpha=0.25, dense_fraction=0.5, finetune_fraction=0.0)
Y_HALF = 0.5 * 0.5 * 1 - 2 * 2 + 0.5 * 0.1 * 3 + 3 * 4 + 0.25  # W*(m + 0.5(1-m)) . x + b


def test_mdgf_grad_ste_gives_full_gradient_to_all_weights():
    y, g, _ = _one_layer(RecipeConfig(**MDGF, grad="ste"), 20, 12)
    assert y == pytest.approx(Y_HALF) and g == pytest.approx(X)


def test_mdgf_grad_scaled_scales_pruned_gradient_by_beta():
    y, g, _ = _one_layer(RecipeConfig(**MDGF, grad="scaled"), 20, 12)
    assert y == pytest.approx(Y_HALF) and g == pytest.approx([0.5, 2.0, 1.5, 4.0])


def test_mdgf_scaled_after_beta_reached_zero_and_in_finetune():
    cfg = RecipeConfig(**{**MDGF, "finetune_fraction": 0.25}, grad="scaled")  # sparse steps 10..14
    y, g, _ = _one_layer(cfg, 20, 14)  # t = 4: beta = 0, still the sparse phase: grad * m
    assert y == pytest.approx(8.25) and g == pytest.approx([0.0, 2.0, 0.0, 4.0])
    _, g, _ = _one_layer(cfg, 20, 16)  # fine-tune phase: plain STE
    assert g == pytest.approx(X)


def test_mdgf_dense_phase_is_dense():
    y, g, _ = _one_layer(RecipeConfig(**MDGF, grad="scaled"), 20, 3)
    assert y == pytest.approx(0.5 - 4 + 0.3 + 12 + 0.25) and g == pytest.approx(X)


def test_sdgf_uses_the_frame_pattern_with_straight_through_gradient():
    cfg = RecipeConfig(name="sdgf", pattern=NM(1, 4), sdgf_frames_fraction=1.0)  # frames 3:4, 2:4, 1:4
    y, g, _ = _one_layer(cfg, 9, 0)  # 3:4 keeps positions 0, 1, 3
    assert y == pytest.approx(0.5 - 4 + 12 + 0.25) and g == pytest.approx(X)
    y, _, _ = _one_layer(cfg, 9, 4)  # 2:4
    assert y == pytest.approx(8.25)
    y, g, _ = _one_layer(cfg, 9, 8)  # 1:4 keeps position 3
    assert y == pytest.approx(12.25) and g == pytest.approx(X)


def test_mdgf_plus_sdgf_decays_on_the_frame_mask():
    cfg = RecipeConfig(name="mdgf+sdgf", pattern=NM(1, 4), decay="linear", alpha=0.25, grad="scaled",
                       sdgf_frames_fraction=1.0, finetune_fraction=0.0)
    y, g, _ = _one_layer(cfg, 6, 2)  # frame 1 (2:4 keeps 1, 3), beta = 0.5
    assert y == pytest.approx(Y_HALF) and g == pytest.approx([0.5, 2.0, 1.5, 4.0])


def test_every_recipe_has_a_behaviour():
    assert BEHAVIOURS.names() == RECIPES.names()


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_registered_recipe_trains_a_tiny_model(name):
    torch.manual_seed(0)
    x = torch.randn(128, 16)
    y = x[:, :4].argmax(dim=1)
    model = _Tiny()
    steps = 40
    ctl = sparsify(model, RecipeConfig(name=name, pattern=NM(1, 4)), steps)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(steps):
        ctl.set_step(step)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    ctl.finalize(early=True)  # one-shot pruning of an untrained model is what this test wants
    expected = NM(1, 1) if name == "dense" else NM(1, 4)
    assert complies(model.fc1.weight, expected) and complies(model.fc2.weight, expected)
    assert model.fc1.bias is not None and not complies(model.head.weight, NM(1, 4))  # head stays dense
