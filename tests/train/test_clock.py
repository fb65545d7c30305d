"""The controller's clock and masks through the public API: a user loop with only
``optimizer.step()`` follows the schedule, and masks follow the weights for every optimizer
implementation (plain for-loop, foreach and fused kernels; fused ones update weights without
bumping the tensor version counter, which a version-keyed mask cache never noticed)."""
import contextlib
import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

from pgf_sim.core import NM
from pgf_sim.train.masks import nm_mask
from pgf_sim.sparsity.schedules import RecipeConfig, beta_at
from pgf_sim.train.sparsify import sparsify

OPTIMIZERS = [(opt, impl) for opt in ("adamw", "sgd") for impl in ("plain", "foreach", "fused")]


def _optimizer(kind: str, impl: str, params) -> torch.optim.Optimizer:
    kw = {"plain": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[impl]
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=0.05, **kw)
    return torch.optim.SGD(params, lr=0.5, momentum=0.9, **kw)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(fc1=nn.Linear(16, 32), act=nn.ReLU(), fc2=nn.Linear(32, 4)))


def _setup(kind: str, impl: str, cfg: RecipeConfig, total: int):
    model = _model()
    ctl = sparsify(model, cfg, total)
    return model, ctl, _optimizer(kind, impl, model.parameters()), torch.randn(64, 16), torch.randint(0, 4, (64,))


def _user_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One step of a plain user loop: no set_step, nothing but the optimizer."""
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize("kind,impl", OPTIMIZERS)
def test_mask_follows_the_weights_every_step(kind, impl):
    model, ctl, opt, x, y = _setup(kind, impl, RecipeConfig(name="ste", pattern=NM(1, 4)), 20)
    changed = 0
    previous = {n: m.clone() for n, m in ctl.masks().items()}
    for _ in range(20):
        _user_step(model, opt, x, y)
        for name, w in ctl.dense_weights().items():
            expected = nm_mask(w.detach(), NM(1, 4))  # independent: the mask of the weights as they are now
            assert torch.equal(ctl.masks()[name], expected), f"{kind}/{impl}: stale mask of {name}"
            torch.testing.assert_close(ctl.effective_weights()[name], w.detach() * expected, rtol=0, atol=0)
            changed += not torch.equal(previous[name], expected)
            previous[name] = expected
    assert changed > 0  # the run really moved masks (else the check above proves nothing)
    assert ctl.step == 20


@pytest.mark.parametrize("kind,impl", OPTIMIZERS)
def test_finalize_prunes_with_the_mask_of_the_final_weights(kind, impl):
    model, ctl, opt, x, y = _setup(kind, impl, RecipeConfig(name="sr-ste", pattern=NM(2, 8)), 5)
    for _ in range(5):
        _user_step(model, opt, x, y)
    final = {n: w.detach().clone() for n, w in ctl.dense_weights().items()}
    masks = ctl.finalize()  # step 5 of 5: the schedule's end, no warning
    for name, w in final.items():
        assert torch.equal(masks[name], nm_mask(w, NM(2, 8)))
        assert torch.equal(model.get_submodule(name).weight, w.masked_fill(~masks[name], 0.0))


def test_a_loop_with_only_optimizer_step_gets_the_decayed_mdgf_schedule():
    total = 40
    cfg = RecipeConfig(name="mdgf", pattern=NM(1, 4), decay="linear")
    model = _model()
    ctl = sparsify(model, cfg, total)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    betas = []
    for _ in range(total):  # no set_step anywhere: the optimizer hook is the clock
        betas.append(ctl.beta)
        w, m = ctl.dense_weights()["fc1"].detach(), ctl.masks()["fc1"]
        # the forward weight of this step is W*(m + beta(1-m)) with the scheduled beta
        torch.testing.assert_close(ctl.effective_weights()["fc1"], torch.where(m, w, w * ctl.beta))
        _user_step(model, opt, x, y)
    # beta follows the schedule step by step: 1 at step 0, linear decay to 0 by 70% of the sparse
    # phase (36 sparse steps: 0.7 * 36 = 25.2), 0 in the 10% fine-tune
    assert betas == [beta_at(cfg, s, total) for s in range(total)]
    assert betas[0] == 1.0 and 0.0 < betas[10] < 1.0 and betas[30] == 0.0 and betas[-1] == 0.0
    assert ctl.step == total
    with _no_warning():
        ctl.finalize()


def test_explicit_set_step_agrees_with_the_hook_and_computes_masks_once_per_step(monkeypatch):
    import pgf_sim.train.sparsify as sp

    calls = []
    real = sp.nm_masks
    monkeypatch.setattr(sp, "nm_masks", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = _model()
    ctl = sparsify(model, RecipeConfig(name="ste", pattern=NM(2, 4), roles=("fc1",)), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
    for step in range(10):
        ctl.set_step(step)  # the trainer's explicit clock; the hook already moved there
        assert ctl.step == step
        for _ in range(2):  # two micro-batches: the weight is read twice, one mask computation
            nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    assert len(calls) == 10 and ctl.step == 10


def test_an_optimizer_without_sparsified_weights_does_not_move_the_clock():
    model = _model()
    ctl = sparsify(model, RecipeConfig(name="ste", pattern=NM(2, 4), roles=("fc1",)), 10)
    other = torch.optim.SGD(model.fc2.parameters(), lr=0.1)
    model(torch.randn(2, 16)).sum().backward()
    other.step()
    assert ctl.step == 0


def test_finalize_before_the_schedule_end_warns_and_early_true_silences_it():
    model = _model()
    ctl = sparsify(model, RecipeConfig(name="mdgf", pattern=NM(1, 4)), 100)
    with pytest.warns(UserWarning, match=r"finalize\(\) at step 0 of 100 .*beta=1.*one shot"):
        ctl.finalize()
    ctl2 = sparsify(_model(), RecipeConfig(name="mdgf", pattern=NM(1, 4)), 100)
    with _no_warning():
        ctl2.finalize(early=True)
    ctl3 = sparsify(_model(), RecipeConfig(name="dense"), 100)  # nothing to prune: nothing to warn about
    with _no_warning():
        ctl3.finalize()


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
