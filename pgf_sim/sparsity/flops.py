"""Training FLOPs of a recipe over its whole schedule, per GEMM phase (no torch).

docs/method.md, "Training FLOPs". A weight GEMM of ``T`` rows (tokens), ``O``
outputs and reduction ``K`` costs ``2*T*O*K`` dense FLOPs per pass (multiply + add). One training
step runs three such GEMMs per layer:

- forward ``y = x W_eff^T`` and input gradient ``dL/dx = dL/dy W_eff``: both read W_eff, so on
  hardware that skips zeros they cost ``density * 2*T*O*K``, density = N/M of the step's pattern.
  While MDGF's beta > 0 the forward weight W*(m + beta(1-m)) has no zeros: density 1.
- weight gradient ``dL/dW = dL/dy^T x``: dense (every weight is updated) for STE, SR-STE,
  SDGF (straight through) and MDGF with ``grad: ste``. Only when the gradient of pruned
  weights is identically zero, MDGF ``grad: scaled`` after beta reached 0 in the sparse phase,
  is it ``density * 2*T*O*K`` (only kept weights need a gradient). The same holds for the
  fixed-mask baselines (one-shot, gmp) outside their dense phase: pruned weights are zero and
  never updated, so the weight gradient is counted for kept weights only (torch computes the
  dense GEMM and masks it; hardware that skips zeros need not). STEP counts as SR-STE.

Attention's own matmuls (``Q K^T`` and ``A V``, activation x activation) are never weight-sparse:
every recipe pays them in full (``ActivationMatmul``). A matmul ``(b, m, k) x (b, k, n)`` costs
``2*b*m*k*n`` FLOPs forward; its backward computes the gradient of both operands, two matmuls of
the same size, so training costs 3 x forward, for every recipe and every step. A causal
attention computes only the lower triangle of the ``T x T`` score matrix: it is counted as half
the square (``causal=True`` halves the count; FlashAttention's benchmarks use the same
convention; the exact number of unmasked pairs is ``T(T+1)/2``, 0.8% more at T = 64). Counts are
algorithmic: a kernel that recomputes the forward in the backward (FlashAttention) executes more.
They are reported as one more entry, ``"attention"``, beside the three weight-GEMM passes.

The schedule is walked as constant segments (``schedules.segments``), O(frames) work per layer
whatever the number of steps. Counts are zero-skipping ideal FLOPs; what a given accelerator
actually executes is the simulator's business (``pgf_sim.sim.cost``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple

from ..core.pattern import NM
from .schedules import RecipeConfig, Segment, layer_target, segments

PHASES = ("forward", "input_grad", "weight_grad")


class LayerShape(NamedTuple):
    """Weight shape ``(out, in, *kernel)`` (reduction = prod(shape[1:])) and role; ``tokens``
    overrides the step's token count for this layer (e.g. a patch-embedding conv's patches)."""

    shape: tuple[int, ...]
    role: str
    tokens: int | None = None


class ActivationMatmul(NamedTuple):
    """One activation x activation matmul of a training step: ``(batch, m, k) x (batch, k, n)``
    summed over the step's examples and heads (``batch`` = examples x heads). Attention gives
    two: ``Q K^T`` (m = queries, k = head dim, n = keys) and ``A V`` (m = queries, k = keys,
    n = value dim). ``causal``: only the lower triangle of the score matrix is computed, counted
    as half (module docstring)."""

    name: str
    batch: int
    m: int
    k: int
    n: int
    causal: bool = False

    @property
    def forward_flops(self) -> float:
        """FLOPs of the forward pass of one step: 2*batch*m*k*n, halved when causal."""
        return 2.0 * self.batch * self.m * self.k * self.n * (0.5 if self.causal else 1.0)


@dataclass(frozen=True)
class LayerFlops:
    name: str
    target: NM | None  # None: the recipe keeps this layer dense
    forward: float
    input_grad: float
    weight_grad: float
    dense_per_pass: float  # 2*T*O*K, FLOPs of one dense GEMM pass for one step

    @property
    def total(self) -> float:
        return self.forward + self.input_grad + self.weight_grad


@dataclass(frozen=True)
class FlopsReport:
    layers: tuple[LayerFlops, ...]
    total_steps: int
    # attention's activation matmuls (forward + both operand gradients) over the counted steps;
    # None: the caller passed none (a model without attention, or weight GEMMs only)
    attention: float | None = None
    attention_per_step: float = 0.0  # their 3 passes in one step (the dense reference's share)

    def totals(self) -> dict[str, float]:
        """{"forward", "input_grad", "weight_grad"} summed over layers and the whole schedule,
        and ``"attention"`` when activation matmuls were counted."""
        out = {p: float(sum(getattr(l, p) for l in self.layers)) for p in PHASES}
        if self.attention is not None:
            out["attention"] = float(self.attention)
        return out

    @property
    def total(self) -> float:
        return sum(self.totals().values())

    @property
    def dense_total(self) -> float:
        """The same layers trained dense for the same steps: 3 passes of 2*T*O*K per step (plus
        the attention matmuls, which every recipe pays in full)."""
        return float((sum(3 * l.dense_per_pass for l in self.layers) + self.attention_per_step) * self.total_steps)

    @property
    def ratio_to_dense(self) -> float:
        return self.total / self.dense_total if self.dense_total else 1.0


def step_densities(cfg: RecipeConfig, seg: Segment) -> tuple[float, float, float]:
    """(forward, input_grad, weight_grad) density of a selected layer over one schedule segment."""
    d = seg.pattern.density
    fwd = 1.0 if seg.beta_positive else d
    zero_pruned_grad = ((cfg.spec.decays and cfg.grad == "scaled" and seg.phase == "sparse"
                         and not seg.beta_positive)
                        or (cfg.spec.fixed_mask and seg.phase != "dense"))
    return fwd, fwd, d if zero_pruned_grad else 1.0


def _layer_items(layers: Mapping[str, object] | Iterable[tuple[str, object]]) -> Iterable[tuple[str, LayerShape]]:
    items = layers.items() if isinstance(layers, Mapping) else layers
    for name, spec in items:
        yield name, spec if isinstance(spec, LayerShape) else LayerShape(*spec)


def training_flops_report(cfg: RecipeConfig, layers, *, tokens: int, total_steps: int,
                          until: int | None = None,
                          attention: Iterable[ActivationMatmul] | None = None) -> FlopsReport:
    """Per-layer FLOPs of training ``layers`` (name -> ``LayerShape`` or ``(shape, role[, tokens])``)
    with ``tokens`` rows per step for ``total_steps`` steps under ``cfg``; ``until``: only the
    first ``until`` steps of that schedule (the cumulative count the training curves use);
    ``attention``: the step's activation x activation matmuls (dense for every recipe, 3 passes)."""
    until = total_steps if until is None else min(max(until, 0), total_steps)
    out = []
    for name, spec in _layer_items(layers):
        rows = spec.tokens if spec.tokens is not None else tokens
        per_pass = 2.0 * rows * spec.shape[0] * math.prod(spec.shape[1:])
        target = layer_target(cfg, name, spec.role)
        if target is None:
            out.append(LayerFlops(name, None, per_pass * until, per_pass * until, per_pass * until, per_pass))
            continue
        sums = [0.0, 0.0, 0.0]
        for seg in segments(cfg, total_steps, target):
            steps = max(0, min(seg.stop, until) - seg.start)
            for i, density in enumerate(step_densities(cfg, seg)):
                sums[i] += density * per_pass * steps
        out.append(LayerFlops(name, target, *sums, per_pass))
    if attention is None:
        return FlopsReport(tuple(out), total_steps)
    per_step = 3.0 * math.fsum(a.forward_flops for a in attention)  # forward + 2 operand gradients
    return FlopsReport(tuple(out), total_steps, per_step * until, per_step)


def training_flops(cfg: RecipeConfig, layers, *, tokens: int, total_steps: int,
                   until: int | None = None,
                   attention: Iterable[ActivationMatmul] | None = None) -> dict[str, float]:
    """{"forward", "input_grad", "weight_grad"} (+ ``"attention"`` when ``attention`` is given):
    training FLOPs over the whole schedule (or its first ``until`` steps)."""
    return training_flops_report(cfg, layers, tokens=tokens, total_steps=total_steps, until=until,
                                 attention=attention).totals()
