"""What each recipe does to one weight: the effective forward weight and the gradient W receives.

docs/method.md, "Recipes" (W dense trainable weight, m binary N:M mask, beta from schedules.py):

| recipe      | forward          | gradient reaching W                                           |
|-------------|------------------|---------------------------------------------------------------|
| dense       | W                | dL/dW                                                         |
| ste, sdgf   | W*m              | g = dL/dW_eff (straight through)                              |
| sr-ste      | W*m              | g + lambda*(1-m)*W                                            |
| mdgf(+sdgf) | W*(m+beta(1-m))  | grad=ste: g to every weight; grad=scaled: g*(m + beta(1-m))   |
| one-shot,gmp| W*m (W*(1-m)=0)  | g*m: pruned weights get nothing (the controller keeps them 0) |
| step        | W*m              | as sr-ste; the optimizer's second moment is frozen (optim.py) |

In the fine-tune phase every sparse recipe is plain STE with a binary mask (beta = 0). SDGF's
m is the mask of the current frame's pattern (chosen by the controller, not here).

Default MDGF gradient mode: ``ste``, the authors' code. It is what produced the paper's numbers,
and it gives MDGF the same gradient as the STE/SR-STE baselines, so a comparison isolates the
one thing MDGF changes (the forward weight). ``scaled`` is offered for the paper's wording
("restricting gradient flow to pruned weights") and can be swept. Measured (training/digits_vit.yaml,
40 epochs, default exponential decay, seeds 0-2, test accuracy mean +- std): 1:16 ste 0.945 +- 0.015,
scaled 0.961 +- 0.003; 1:32 ste 0.948 +- 0.002, scaled 0.945 +- 0.012 (SR-STE 1:16: 0.942 +- 0.010).
Neither mode wins across patterns on this small task, so the default stays the reference's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..core.registry import Registry
from ..sparsity.schedules import RECIPES, RecipeConfig


class _StraightThrough(torch.autograd.Function):
    """Forward W*(m + beta(1-m)); backward passes g to every weight, plus lam*(1-m)*W (SR-STE)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, mask: torch.Tensor, beta: float, lam: float) -> torch.Tensor:
        ctx.lam = lam
        if lam:
            ctx.save_for_backward(weight, mask)
        if beta == 0.0:
            return weight * mask  # bool mask promotes to weight's dtype
        return torch.where(mask, weight, weight * beta)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.lam:
            weight, mask = ctx.saved_tensors
            # SR-STE (Zhou et al. 2021, eq. 4 / aojunzz/NM-sparsity sparse_ops.py): decay pruned weights
            grad = grad + ctx.lam * weight.masked_fill(mask, 0.0)
        return grad, None, None, None


def straight_through(weight: torch.Tensor, mask: torch.Tensor, beta: float = 0.0, lam: float = 0.0) -> torch.Tensor:
    return _StraightThrough.apply(weight, mask, float(beta), float(lam))


def scaled(weight: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Plain autograd of W*(m + beta(1-m)): pruned weights get g*beta (0 once beta is 0)."""
    if beta == 0.0:
        return weight * mask
    return torch.where(mask, weight, weight * beta)


@dataclass(frozen=True)
class StepState:
    """What the controller knows about one layer at the current step."""

    mask: torch.Tensor  # bool, weight's shape, mask of the current pattern
    beta: float
    phase: str  # "dense" | "sparse" | "finetune"


# recipe name -> fn(weight, state, cfg) -> effective weight. Called only outside the dense phase.
Behaviour = Callable[[torch.Tensor, StepState, RecipeConfig], torch.Tensor]
BEHAVIOURS: Registry[Behaviour] = Registry("recipe behaviour")


@BEHAVIOURS.register("dense")
def _dense(weight: torch.Tensor, state: StepState, cfg: RecipeConfig) -> torch.Tensor:
    return weight


@BEHAVIOURS.register("ste")
@BEHAVIOURS.register("sdgf")
def _binary_ste(weight: torch.Tensor, state: StepState, cfg: RecipeConfig) -> torch.Tensor:
    return straight_through(weight, state.mask)


@BEHAVIOURS.register("sr-ste")
def _sr_ste(weight: torch.Tensor, state: StepState, cfg: RecipeConfig) -> torch.Tensor:
    # The fine-tune phase is plain STE (docs/method.md, "Phases").
    lam = cfg.srste_lambda if state.phase == "sparse" else 0.0
    return straight_through(weight, state.mask, 0.0, lam)


@BEHAVIOURS.register("one-shot")
@BEHAVIOURS.register("gmp")
def _fixed_mask(weight: torch.Tensor, state: StepState, cfg: RecipeConfig) -> torch.Tensor:
    # Plain autograd of W*m: no straight-through gradient. The controller zeroes pruned W after
    # every optimizer step (AdamW momentum would otherwise move them) and never regrows them.
    return scaled(weight, state.mask, 0.0)


@BEHAVIOURS.register("step")
def _step(weight: torch.Tensor, state: StepState, cfg: RecipeConfig) -> torch.Tensor:
    # STEP's mask-learning phase is SR-STE; what STEP changes is the optimizer (optim.py).
    return _sr_ste(weight, state, cfg)


@BEHAVIOURS.register("mdgf")
@BEHAVIOURS.register("mdgf+sdgf")
def _mdgf(weight: torch.Tensor, state: StepState, cfg: RecipeConfig) -> torch.Tensor:
    if state.phase == "finetune" or cfg.grad == "ste":
        return straight_through(weight, state.mask, state.beta)
    return scaled(weight, state.mask, state.beta)


def _check_registry_complete() -> None:
    missing = set(RECIPES.names()) ^ set(BEHAVIOURS.names())
    if missing:  # a recipe without behaviour (or the reverse) is a programming error, caught at import
        raise RuntimeError(f"recipes and behaviours disagree on: {sorted(missing)}")


_check_registry_complete()
