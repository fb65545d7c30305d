"""The reviewers' baselines (one-shot, gmp, step): forward weight, gradient, schedule and optimizer
against hand-derived values on the one-layer example of test_recipes.py.

One layer y = W_eff x + b with W = [0.5, -2, 0.1, 3], x = [1, 2, 3, 4], loss = y, so
dL/dW_eff = x. The 2:4 magnitude mask keeps |-2| and |3| (positions 1, 3).
"""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from pgf_sim.core import NM, ConfigError
from pgf_sim.sparsity.flops import training_flops
from pgf_sim.sparsity.schedules import RecipeConfig, gmp_n, pattern_at, patterns_used, phases, segments
from pgf_sim.train.optim import FrozenVarianceAdamW
from pgf_sim.train.sparsify import sparsify

W = [0.5, -2.0, 0.1, 3.0]
X = [1.0, 2.0, 3.0, 4.0]


def _layer():
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 1)))
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([W]))
        model.fc1.bias.fill_(0.25)
    return model


def _one_step(cfg: RecipeConfig, total: int, step: int):
    model = _layer()
    ctl = sparsify(model, cfg, total)
    ctl.set_step(step)
    y = model(torch.tensor([X]))
    y.sum().backward()
    w = ctl.dense_weights()["fc1"]
    return y.item(), w.grad[0].tolist(), w.detach()[0].tolist()


# ------------------------------------------------------------------------------------- one-shot
def test_one_shot_is_dense_then_fixed_mask_without_straight_through():
    cfg = RecipeConfig(name="one-shot", pattern=NM(2, 4))  # default: half dense, half fine-tune
    p = phases(cfg, 10)
    assert (p.dense_end, p.sparse_end) == (5, 10)
    y, g, w = _one_step(cfg, 10, 4)  # dense phase: W, full gradient
    assert y == pytest.approx(0.5 - 4 + 0.3 + 12 + 0.25) and g == pytest.approx(X) and w == pytest.approx(W)
    y, g, w = _one_step(cfg, 10, 5)  # the prune: keep -2 and 3
    assert y == pytest.approx(-4 + 12 + 0.25)
    assert g == pytest.approx([0.0, 2.0, 0.0, 4.0])  # pruned weights get no gradient (not STE)
    assert w == [0.0, -2.0, 0.0, 3.0]  # and are zero in W itself


def _train(cfg: RecipeConfig, total: int, seed: int = 0):
    """Real AdamW steps on a 2-layer model; per step: fc1's mask and W after the forward, and W as
    the previous optimizer step left it (before the forward)."""
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(16, 8), act=nn.ReLU(), head=nn.Linear(8, 3)))
    x, y = torch.randn(64, 16), torch.randint(0, 3, (64,))
    ctl = sparsify(model, cfg, total)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
    seen = []
    for _ in range(total):
        before = ctl.dense_weights()["fc1"].detach().clone()
        loss = nn.functional.cross_entropy(model(x), y)
        seen.append((ctl.masks()["fc1"].clone(), ctl.dense_weights()["fc1"].detach().clone(), before))
        opt.zero_grad()
        loss.backward()
        opt.step()  # advances the clock
    return ctl, seen


def test_one_shot_mask_is_chosen_once_by_magnitude_and_pruned_weights_stay_zero():
    total = 20
    cfg = RecipeConfig(name="one-shot", pattern=NM(2, 4), roles=("*",), layers=("fc1",))
    _, seen = _train(cfg, total)
    d = phases(cfg, total).dense_end
    w_at_prune = seen[d][2]  # W after the last dense step's update is what gets pruned...
    mask0 = seen[d][0]
    # ... by magnitude: the 2 largest |W| of every group of 4 consecutive inputs (hand: argsort)
    top = w_at_prune.abs().reshape(-1, 4).argsort(dim=1, descending=True)[:, :2]
    expected = torch.zeros(8 * 4, 4, dtype=torch.bool).scatter_(1, top, True).reshape(8, 16)
    assert torch.equal(mask0, expected)
    for mask, w, _ in seen[d:]:
        assert torch.equal(mask, mask0)  # fixed: AdamW moved kept weights, the mask never changed
        assert torch.count_nonzero(w[~mask0]) == 0  # AdamW momentum and decay did not revive pruned W


# ------------------------------------------------------------------------------------------ gmp
# 1:4 over 20 steps, window = 0.5 * 20 = 10 steps. Hand: d(t) = 1/4 + 3/4 (1 - t/10)^3,
# N(t) = min(3, ceil(4 d)): t=0..3: 4d = 4, 3.19, 2.54, 2.03 -> 3; t=4..8: 4d = 1.65, 1.38, 1.19,
# 1.08, 1.02 -> 2; t = 9 (the window's last step) on: 1.
GMP = dict(name="gmp", pattern=NM(1, 4), sdgf_frames_fraction=0.5)


def test_gmp_cubic_schedule_by_hand():
    cfg = RecipeConfig(**GMP)
    assert [gmp_n(cfg, t, 20) for t in range(20)] == [3] * 4 + [2] * 5 + [1] * 11
    assert [pattern_at(cfg, t, 20) for t in (0, 3, 4, 8, 9, 19)] == [NM(3, 4), NM(3, 4), NM(2, 4), NM(2, 4),
                                                                   NM(1, 4), NM(1, 4)]
    assert [(s.start, s.stop, s.pattern) for s in segments(cfg, 20)] == [
        (0, 4, NM(3, 4)), (4, 9, NM(2, 4)), (9, 20, NM(1, 4))]
    assert patterns_used(cfg) == (NM(3, 4), NM(2, 4), NM(1, 4))
    # with a dense phase the ramp starts at the first sparse step
    shifted = RecipeConfig(**GMP, dense_fraction=0.5)  # sparse steps 10..19, window 5
    assert [gmp_n(shifted, t, 20) for t in range(10, 20)] == [3, 3, 2, 2, 1, 1, 1, 1, 1, 1]


def test_gmp_forward_and_gradient_on_the_current_level():
    cfg = RecipeConfig(**{**GMP, "pattern": NM(1, 4)})
    y, g, w = _one_step(cfg, 20, 0)  # 3:4 keeps 0.5, -2, 3
    assert y == pytest.approx(0.5 - 4 + 12 + 0.25) and g == pytest.approx([1.0, 2.0, 0.0, 4.0])
    assert w == [0.5, -2.0, 0.0, 3.0]
    y, g, w = _one_step(cfg, 20, 12)  # 1:4 keeps 3
    assert y == pytest.approx(12.25) and g == pytest.approx([0.0, 0.0, 0.0, 4.0])


def test_gmp_masks_only_shrink_and_pruned_weights_stay_zero():
    total = 30
    cfg = RecipeConfig(name="gmp", pattern=NM(1, 8), roles=("*",), layers=("fc1",))
    ctl, seen = _train(cfg, total)
    kept = [int(m.sum()) for m, _, _ in seen]
    assert kept[0] == 8 * 16 * 7 // 8 and kept[-1] == 8 * 16 // 8  # 7:8 first, 1:8 at the end
    for (prev, _, _), (mask, w, _) in zip(seen, seen[1:]):
        assert not torch.any(mask & ~prev)  # a pruned weight never comes back
        assert torch.count_nonzero(w[~mask]) == 0
    assert torch.equal(ctl.finalize()["fc1"], seen[-1][0])  # finalize keeps the trained mask


def test_fixed_mask_survives_a_checkpoint_round_trip():
    cfg = RecipeConfig(name="one-shot", pattern=NM(2, 4), roles=("*",), layers=("fc1",))
    ctl, seen = _train(cfg, 12)
    state = ctl.state_dict()
    torch.manual_seed(5)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(16, 8), act=nn.ReLU(), head=nn.Linear(8, 3)))
    pruned = tuple(int(i) for i in (~seen[-1][0]).nonzero()[0])
    with torch.no_grad():
        model.fc1.weight.copy_(ctl.dense_weights()["fc1"])
        model.fc1.weight[pruned] = 99.0  # a pruned position written back large must not regrow
    fresh = sparsify(model, cfg, 12)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.masks()["fc1"], state["layers"]["fc1"]["mask"])
    assert fresh.dense_weights()["fc1"][pruned].item() == 0.0


def test_fixed_mask_flops_count_no_weight_gradient_for_pruned_weights():
    # one layer 4 -> 1, 10 rows: 2*10*1*4 = 80 FLOPs per dense pass. one-shot 2:4 over 10 steps:
    # 5 dense steps (3 passes of 80) + 5 sparse steps (3 passes of 40) = 1200 + 600.
    layers = {"fc1": ((1, 4), "fc1")}
    f = training_flops(RecipeConfig(name="one-shot", pattern=NM(2, 4)), layers, tokens=10, total_steps=10)
    assert f == pytest.approx({"forward": 600, "input_grad": 600, "weight_grad": 600})
    # gmp 1:4 (schedule above): 4 steps at 3/4, 5 at 2/4, 11 at 1/4, every pass
    g = training_flops(RecipeConfig(**GMP), layers, tokens=10, total_steps=20)
    per = 80 * (4 * 0.75 + 5 * 0.5 + 11 * 0.25)
    assert g == pytest.approx({"forward": per, "input_grad": per, "weight_grad": per})
    # step counts as SR-STE after its dense phase: weight gradient dense throughout
    s = training_flops(RecipeConfig(name="step", pattern=NM(2, 4)), layers, tokens=10, total_steps=10)
    assert s == pytest.approx({"forward": 80 + 9 * 40, "input_grad": 80 + 9 * 40, "weight_grad": 800})


# ----------------------------------------------------------------------------------------- step
def test_step_gradient_is_sr_ste_after_its_dense_phase():
    cfg = RecipeConfig(name="step", pattern=NM(2, 4), srste_lambda=0.1)
    assert phases(cfg, 10).dense_end == 1  # 10% dense precondition
    y, g, _ = _one_step(cfg, 10, 0)
    assert g == pytest.approx(X)
    y, g, _ = _one_step(cfg, 10, 1)
    assert y == pytest.approx(8.25) and g == pytest.approx([1 + 0.1 * 0.5, 2.0, 3 + 0.1 * 0.1, 4.0])
    with pytest.raises(ConfigError, match="dense_fraction must be > 0"):
        RecipeConfig(name="step", dense_fraction=0.0)


def _scalar_run(opt_cls, grads, **kw):
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = opt_cls([p], **kw)
    out = []
    for g in grads:
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        out.append(p.item())
    return out


def test_frozen_variance_adamw_by_hand():
    # lr 0.1, no decay, eps 0, betas (0.9, 0.999). Step 1, g = 0.5: m = 0.05, v = 0.00025;
    # m_hat = 0.5, v_hat = 0.25 -> p = 1 - 0.1 * 0.5 / 0.5 = 0.9. Step 2, g = 2: m = 0.245,
    # m_hat = 0.245 / 0.19. Frozen: v_hat stays 0.25 -> p = 0.9 - 0.1 * 1.289474 / 0.5.
    # AdamW: v = 0.00424975, v_hat = v / (1 - 0.999^2) -> p = 0.9 - 0.1 * 1.289474 / sqrt(2.125938).
    kw = dict(lr=0.1, weight_decay=0.0, eps=0.0)
    frozen = _scalar_run(FrozenVarianceAdamW, [0.5, 2.0], freeze_after=1, **kw)
    assert frozen == pytest.approx([0.9, 0.9 - 0.1 * (0.245 / 0.19) / 0.5], rel=1e-12)
    plain = _scalar_run(FrozenVarianceAdamW, [0.5, 2.0], freeze_after=None, **kw)
    assert plain[1] == pytest.approx(0.9 - 0.1 * (0.245 / 0.19) / (0.00424975 / (1 - 0.999 ** 2)) ** 0.5, rel=1e-12)


def test_frozen_variance_adamw_before_the_freeze_is_torch_adamw():
    grads = [0.3, -1.2, 0.7, 2.0, -0.1]
    kw = dict(lr=0.05, weight_decay=0.1, eps=1e-8)
    ours = _scalar_run(FrozenVarianceAdamW, grads, freeze_after=len(grads), **kw)
    torch_adamw = _scalar_run(torch.optim.AdamW, grads, **kw)
    assert ours == pytest.approx(torch_adamw, rel=1e-12)
    with pytest.raises(ConfigError, match="freeze_after"):
        FrozenVarianceAdamW([nn.Parameter(torch.zeros(1))], freeze_after=0)


def test_trainer_uses_the_frozen_optimizer_for_step_only():
    from pathlib import Path

    from pgf_sim.core import load_yaml
    from pgf_sim.train.experiment import experiment_from_dict
    from pgf_sim.train.trainer import optimizer_for

    base = load_yaml(Path(__file__).parents[2] / "training" / "charlm_shakespeare.yaml")
    model = nn.Linear(4, 2)
    for name, cls, freeze in (("step", FrozenVarianceAdamW, 10), ("sr-ste", torch.optim.AdamW, None)):
        cfg = experiment_from_dict({**base, "recipe": {"name": name, "pattern": "1:16"}})
        opt, _ = optimizer_for(model, cfg, 100)
        assert type(opt) is cls
        if freeze is not None:
            assert {g["freeze_after"] for g in opt.param_groups} == {freeze}
