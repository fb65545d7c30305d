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

    def totals(self) -> dict[str, float]:
        """{"forward", "input_grad", "weight_grad"} summed over layers and the whole schedule."""
        return {p: float(sum(getattr(l, p) for l in self.layers)) for p in PHASES}

    @property
    def total(self) -> float:
        return sum(self.totals().values())

    @property
    def dense_total(self) -> float:
        """The same layers trained dense for the same steps: 3 passes of 2*T*O*K per step."""
        return float(sum(3 * l.dense_per_pass for l in self.layers) * self.total_steps)

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
                          until: int | None = None) -> FlopsReport:
    """Per-layer FLOPs of training ``layers`` (name -> ``LayerShape`` or ``(shape, role[, tokens])``)
    with ``tokens`` rows per step for ``total_steps`` steps under ``cfg``; ``until``: only the
    first ``until`` steps of that schedule (the cumulative count the training curves use)."""
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
    return FlopsReport(tuple(out), total_steps)


def training_flops(cfg: RecipeConfig, layers, *, tokens: int, total_steps: int,
                   until: int | None = None) -> dict[str, float]:
    """{"forward", "input_grad", "weight_grad"}: training FLOPs over the whole schedule (or its
    first ``until`` steps)."""
    return training_flops_report(cfg, layers, tokens=tokens, total_steps=total_steps, until=until).totals()
