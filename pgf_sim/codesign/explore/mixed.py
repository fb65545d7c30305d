"""Per-layer mixed N:M assignment: a pattern per layer that minimises cost on one hardware target
under an accuracy budget.

The measure (what "sensitivity" means here)
-------------------------------------------
Start from one trained run whose sparse layers hold pattern ``A`` (e.g. the 2:4 run of a
recipe). For every sparse layer ``l`` and every candidate pattern ``B`` at least as sparse as
``A``, re-mask *only* layer ``l`` to ``B`` (top-n |w| per group of the trained weights,
``pgf_sim.train.masks.nm_mask``) and count the misclassified examples of a calibration set
taken from the *training* split. ``penalty[l, B]`` = errors(l at B) - errors(all at A),
clipped at 0 (a re-mask that happens to fix an example is not counted as a gain: that would
let noise buy cost). Penalties are integers (errors), so the budget is exact: an accuracy drop
budget ``d`` allows ``floor(d * n_calib)`` extra errors. For a task judged by a lower-is-better
metric (bpc, loss, perplexity of a language model) the penalty is the metric's increase on the
calibration windows in integer steps of ``RESOLUTION`` (0.001 of its unit, rounded up), and a
budget ``d`` (in the metric's unit) allows ``floor(d / 0.001)`` steps. The model is additive: the predicted
drop of an assignment is the sum of its layers' penalties (interactions are checked by
measuring the chosen assignment, and the final accuracy is measured on the held-out test split,
which the choice never saw).

The cost of layer ``l`` at pattern ``B`` comes from the simulator: the captured workload of the
trained model with that layer's op set to ``B``, evaluated on the target by
``pgf_sim.sim.cost.evaluate`` (per-op latency or energy). Ops the assignment does not touch
(attention matmuls, element-wise ops, dense layers) add the same constant to every assignment.

Solvers
-------
Choosing one option per layer under a budget is a multiple-choice knapsack.
``solve_exact``: dynamic programme over the integer budget, O(L * P * B), exact.
``solve_greedy``: start at the zero-penalty options and repeatedly take the move with the best
cost saved per added error (free moves first) that still fits: fast, not always optimal.
Both are tested against brute force on small tables.

Verification (``mixed_verify.py``): the chosen assignment is re-masked one-shot, fine-tuned with
the masks held fixed, and trained from scratch with the real trainer (the start run's
experiment with ``recipe.layer_patterns`` = the assignment), beside the sweep's uniform runs.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ...core import NM, ConfigError


@dataclass(frozen=True)
class Assignment:
    """One option per layer: ``choice[l]`` indexes ``patterns``; totals over the chosen options."""

    choice: tuple[int, ...]
    cost: float
    penalty: int

    def patterns(self, patterns: tuple[NM, ...]) -> tuple[NM, ...]:
        return tuple(patterns[c] for c in self.choice)

    def layer_patterns(self, layers: tuple[str, ...], patterns: tuple[NM, ...]) -> "LayerPatterns":
        """The chosen pattern of each of ``layers`` (the rows of the cost table)."""
        return LayerPatterns.of(dict(zip(layers, self.patterns(patterns))))


@dataclass(frozen=True, eq=False)  # Mapping's equality: equal to any mapping with the same items
class LayerPatterns(Mapping):
    """A per-layer assignment, hashable and read-only: weight-layer name -> N:M pattern, in the
    order given. Read it like a dict (``assignment[name]``, ``.items()``)."""

    entries: tuple[tuple[str, NM], ...]

    def __hash__(self) -> int:
        return hash(self.entries)

    @classmethod
    def of(cls, mapping: "Mapping[str, NM | str]") -> "LayerPatterns":
        return cls(tuple((str(name), NM.parse(p)) for name, p in mapping.items()))

    def __getitem__(self, name: str) -> NM:
        for key, pattern in self.entries:
            if key == name:
                return pattern
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __str__(self) -> str:
        return ", ".join(f"{name}={p}" for name, p in self.entries)


def _check(cost: np.ndarray, penalty: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    cost = np.asarray(cost, dtype=np.float64)
    penalty = np.asarray(penalty)
    if cost.ndim != 2 or cost.shape != penalty.shape:
        raise ConfigError(f"cost {cost.shape} and penalty {penalty.shape} must both be (layers, patterns)")
    if not np.issubdtype(penalty.dtype, np.integer):
        if not np.all(penalty == np.round(penalty)):
            raise ConfigError("penalties must be whole numbers (extra errors on the calibration set)")
        penalty = penalty.astype(np.int64)
    if (penalty < 0).any():
        raise ConfigError("penalties must be >= 0")
    if budget < 0:
        raise ConfigError(f"budget must be >= 0, got {budget}")
    if not np.isfinite(cost).all():
        raise ConfigError("costs must be finite")
    return cost, penalty.astype(np.int64)


def _total(cost: np.ndarray, penalty: np.ndarray, choice) -> Assignment:
    rows = np.arange(cost.shape[0])
    idx = np.asarray(choice, dtype=np.int64)
    return Assignment(tuple(int(c) for c in idx), float(cost[rows, idx].sum()), int(penalty[rows, idx].sum()))


def solve_exact(cost: np.ndarray, penalty: np.ndarray, budget: int) -> Assignment:
    """Minimum total cost with total penalty <= ``budget`` (multiple-choice knapsack DP).

    cost, penalty: (L, P). Ties in cost go to the lower total penalty, then the lower option
    indices. Raises ``ConfigError`` if no assignment fits (every layer's cheapest-penalty
    options already exceed the budget).
    """
    cost, penalty = _check(cost, penalty, budget)
    n_layers, n_opts = cost.shape
    best = np.zeros(budget + 1)  # best[b]: min cost of the layers so far with penalty <= b
    back = np.zeros((n_layers, budget + 1), dtype=np.int64)
    for layer in range(n_layers):
        cand = np.full((n_opts, budget + 1), np.inf)  # (P, B+1)
        for p in range(n_opts):
            w = int(penalty[layer, p])
            if w <= budget:
                cand[p, w:] = best[: budget + 1 - w] + cost[layer, p]
        back[layer] = np.argmin(cand, axis=0)  # first minimum: lowest option index on ties
        best = cand[back[layer], np.arange(budget + 1)]
    if not np.isfinite(best[budget]):
        raise ConfigError(f"no assignment fits the budget of {budget} extra errors")
    # the smallest budget reaching the optimum cost gives the lowest-penalty optimum
    b = int(np.flatnonzero(best <= best[budget])[0])
    choice = np.zeros(n_layers, dtype=np.int64)
    for layer in range(n_layers - 1, -1, -1):
        choice[layer] = back[layer, b]
        b -= int(penalty[layer, choice[layer]])
    return _total(cost, penalty, choice)


def solve_greedy(cost: np.ndarray, penalty: np.ndarray, budget: int) -> Assignment:
    """Greedy by cost saved per added penalty (see module docstring); feasible, maybe suboptimal."""
    cost, penalty = _check(cost, penalty, budget)
    rows = np.arange(cost.shape[0])
    # start: per layer the lowest-penalty option, cheapest among those
    start = np.lexsort((cost, penalty), axis=1)[:, 0] if cost.size else np.zeros(0, dtype=np.int64)
    choice = np.array(start, dtype=np.int64)
    used = int(penalty[rows, choice].sum())
    if used > budget:
        raise ConfigError(f"no assignment fits the budget of {budget} extra errors")
    while True:
        saved = cost[rows, choice][:, None] - cost  # (L, P) cost saved by moving layer l to p
        added = penalty - penalty[rows, choice][:, None]
        ok = (saved > 0) & (used + added <= budget)
        if not ok.any():
            break
        # free moves (no added penalty) rank first, by cost saved; then saved per added error
        ratio = np.where(added <= 0, np.inf, saved / np.maximum(added, 1))
        score = np.where(ok, ratio, -np.inf)
        top = score.max()
        cand = np.argwhere(score == top)
        l, p = max(cand, key=lambda lp: (saved[lp[0], lp[1]], -lp[0], -lp[1]))
        used += int(added[l, p])
        choice[l] = p
    return _total(cost, penalty, choice)


def solve_brute_force(cost: np.ndarray, penalty: np.ndarray, budget: int) -> Assignment:
    """Every assignment (P**L of them): the reference for tests, small tables only."""
    cost, penalty = _check(cost, penalty, budget)
    if cost.shape[1] ** cost.shape[0] > 2_000_000:
        raise ConfigError(f"brute force over {cost.shape[1]}**{cost.shape[0]} assignments is too large")
    best: Assignment | None = None
    for choice in itertools.product(range(cost.shape[1]), repeat=cost.shape[0]):
        a = _total(cost, penalty, choice)
        if a.penalty <= budget and (best is None or (a.cost, a.penalty, a.choice) < (best.cost, best.penalty, best.choice)):
            best = a
    if best is None:
        raise ConfigError(f"no assignment fits the budget of {budget} extra errors")
    return best


def best_uniform(cost: np.ndarray, penalty: np.ndarray, budget: int) -> Assignment | None:
    """The cheapest assignment that gives every layer the same option, within the budget."""
    cost, penalty = _check(cost, penalty, budget)
    found = [_total(cost, penalty, [p] * cost.shape[0]) for p in range(cost.shape[1])]
    found = [a for a in found if a.penalty <= budget]
    return min(found, key=lambda a: (a.cost, a.penalty, a.choice)) if found else None


# ------------------------------------------------------------------ measuring
@dataclass(frozen=True)
class Sensitivity:
    """errors[l, p]: calibration errors with only layer l re-masked to patterns[p] (see module
    docstring); base_errors: with every layer at its trained pattern; n_calib examples."""

    layers: tuple[str, ...]
    patterns: tuple[NM, ...]
    errors: np.ndarray
    base_errors: int
    n_calib: int
    unit: float = 0.0  # metric change per penalty step (0: one error = 1 / n_calib of accuracy)
    base_value: float | None = None  # the metric at the start (lower-is-better metrics)

    @property
    def penalty(self) -> np.ndarray:
        return np.maximum(self.errors - self.base_errors, 0)

    @property
    def step(self) -> float:
        """How much of the task metric one penalty step is."""
        return self.unit or 1.0 / self.n_calib


RESOLUTION = 1e-3  # penalty step of a lower-is-better metric, in its unit (1 millibit per character)


def layer_weights(model, layers):
    """name -> (weight tensor, reduction dim) of each named weight layer of ``model``.

    Names and reduction dims are the training side's (``train.sparsify.weight_params``): dim 1
    for Linear/conv, dim 0 for Hugging Face ``Conv1D`` (stored ``(in, out)``), and
    ``<module>.in_proj_weight`` for ``nn.MultiheadAttention``'s packed Q/K/V."""
    from ...train.sparsify import weight_params

    params = weight_params(model)
    missing = [name for name in layers if name not in params]
    if missing:
        raise ConfigError(f"layers {missing} are not weight layers of the model; weight layers: {', '.join(params)}")
    return {name: (getattr(params[name][0], params[name][1]), params[name][2]) for name in layers}


def count_errors(model, x, y, batch: int = 512) -> int:
    import torch

    model.eval()
    wrong = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):  # (B, classes) or next-token (B, T, vocab) logits
            wrong += int((model(x[i:i + batch]).argmax(-1) != y[i:i + batch]).sum())
    return wrong


def metric_value(model, x, y, metric, batch: int = 512) -> float:
    """The task ``metric`` (loss, bpc or perplexity; mean over every target) on ``x``, ``y``."""
    import math

    import torch
    import torch.nn.functional as F

    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            logits = model(x[i:i + batch]).float()
            total += float(F.cross_entropy(logits.flatten(0, -2), y[i:i + batch].flatten(), reduction="sum"))
    loss = total / y.numel()
    return {"loss": loss, "bpc": loss / math.log(2), "perplexity": math.exp(loss)}[metric.name]


def apply_patterns(model, assignment: LayerPatterns) -> dict[str, "object"]:
    """Re-mask each named layer in place to its pattern (top-n |w| per group of the current
    weights, along the layer's reduction dim); returns the boolean masks applied."""
    import torch

    from ...train.masks import nm_mask

    masks = {}
    with torch.no_grad():
        for name, (w, dim) in layer_weights(model, assignment).items():
            masks[name] = nm_mask(w, NM.parse(assignment[name]), name=name, reduction_dim=dim)
            w.mul_(masks[name])
    return masks


def measure_sensitivity(model, x, y, layers: tuple[str, ...], patterns: tuple[NM, ...], metric=None) -> Sensitivity:
    """One evaluation per (layer, pattern) on the calibration tensors ``x`` (prepared), ``y``.
    ``metric`` None or accuracy: misclassified targets; a lower-is-better metric: its increase in
    steps of ``RESOLUTION``. A layer whose reduction size does not divide by a pattern's M gets a
    penalty no budget admits."""
    import torch

    patterns = tuple(NM.parse(p) for p in patterns)  # "2:4" strings from Python callers
    lower = metric is not None and not metric.higher_is_better
    weights = layer_weights(model, layers)
    base_value = metric_value(model, x, y, metric) if lower else None
    base = 0 if lower else count_errors(model, x, y)
    impossible = 10**9 if lower else y.numel() + 1
    errors = np.zeros((len(layers), len(patterns)), dtype=np.int64)
    for i, name in enumerate(layers):
        w, dim = weights[name]
        saved = w.detach().clone()
        for j, pat in enumerate(patterns):
            if w.shape[dim] % pat.m:
                errors[i, j] = impossible
                continue
            apply_patterns(model, {name: pat})
            if lower:
                errors[i, j] = int(np.ceil((metric_value(model, x, y, metric) - base_value) / RESOLUTION - 1e-9))
            else:
                errors[i, j] = count_errors(model, x, y)
            with torch.no_grad():
                w.copy_(saved)
    return Sensitivity(tuple(layers), tuple(patterns), errors, base, y.numel(),
                       RESOLUTION if lower else 0.0, base_value)


def layer_costs(workload, layers: tuple[str, ...], patterns: tuple[NM, ...], hw, metric: str,
                runtime: str = "eager") -> tuple[np.ndarray, float]:
    """(cost (L, P), constant): the simulated ``metric`` of each layer's op at each pattern on
    ``hw`` in ``runtime``, and the summed cost of every other op at its own (captured) pattern."""
    from ...sim.cost import evaluate, evaluate_grid

    table = workload.table()
    names = list(table.names)
    missing = [n for n in layers if n not in names]
    if missing:
        raise ConfigError(f"layers {missing} are not GEMM ops of the captured workload")
    rows = [names.index(n) for n in layers]
    # evaluate_grid sets *every* GEMM to each pattern in turn; only the chosen layers' rows are used
    grid = getattr(evaluate_grid(table, [hw], patterns=list(patterns), runtime=runtime), metric)  # (1, P, ops)
    cost = grid[0][:, rows].T  # (L, P)
    const = float(np.delete(getattr(evaluate(table, hw, runtime=runtime), metric), rows).sum())
    return np.ascontiguousarray(cost), const

