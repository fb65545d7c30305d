"""AdamW whose second-moment estimate can be frozen: the optimizer of the ``step`` recipe.

STEP (Lu et al., ICML 2023, "Learning N:M Structured Sparsity Masks from Scratch with
Precondition") observes that Adam's variance estimate v is corrupted once N:M masks start
flipping, and splits training in two: a dense *precondition* phase that runs plain Adam, then a
*mask-learning* phase in which v stays fixed at its value from the end of the precondition phase
and only the first moment keeps updating.

Update (decoupled weight decay, as ``torch.optim.AdamW`` without amsgrad), step t = 1, 2, ...:

    p <- p * (1 - lr * wd)
    m <- b1 * m + (1 - b1) * g
    v <- b2 * v + (1 - b2) * g^2          only while t <= freeze_after
    p <- p - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t_v)) + eps)

with t_v = min(t, freeze_after): the frozen v keeps the bias correction of the step it was frozen
at. ``freeze_after=None`` is AdamW. Simplifications against the paper (docs/method.md,
"Baselines"): the switch point is a fixed step (the recipe's dense phase), not their AutoSwitch
variance-change test; v is frozen for every parameter the optimizer updates.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from ..core.errors import ConfigError


class FrozenVarianceAdamW(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, freeze_after: int | None = None) -> None:
        if freeze_after is not None and freeze_after < 1:
            raise ConfigError(f"freeze_after must be >= 1 optimizer steps (or None), got {freeze_after}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      freeze_after=freeze_after))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, eps, wd, freeze = group["lr"], group["eps"], group["weight_decay"], group["freeze_after"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                p.mul_(1.0 - lr * wd)
                state["exp_avg"].lerp_(g, 1.0 - b1)
                if freeze is None or t <= freeze:
                    state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1.0 - b2)
                t_v = t if freeze is None else min(t, freeze)
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1.0 - b2 ** t_v)).add_(eps)
                p.addcdiv_(state["exp_avg"], denom, value=-lr / (1.0 - b1 ** t))
        return loss
