"""Verify a mixed N:M assignment chosen by ``mixed.py`` three ways, each beside the best uniform one:

1. one-shot: re-mask the trained start run to the assignment (top-n |w| of its weights);
2. fine-tuned: then ``finetune_steps`` of training with those masks held fixed;
3. trained: the start run's experiment trained from scratch by ``pgf_sim.train.trainer.train``
   with ``recipe.layer_patterns`` = the assignment (same recipe, schedule and seeds as the
   sweep's runs of that recipe), in the sweep's store and workdir, so it is recorded and a killed
   verification resumes from its checkpoint; its captured model is simulated on the target and
   set next to the sweep's uniform runs trained the same way. This is the check that matters:
   (1) and (2) start from weights trained at the start pattern, which favours that pattern.
"""
from __future__ import annotations

import dataclasses
import glob as _glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core import NM, ConfigError
from ...core.metric import ACCURACY, Metric
from .mixed import (Assignment, LayerPatterns, Sensitivity, apply_patterns, best_uniform, layer_costs, layer_weights,
                    measure_sensitivity, solve_exact)


def finetune_masked(model, data, masks: dict, *, steps: int, lr: float, batch_size: int, seed: int,
                    weight_decay: float = 0.0) -> None:
    """Train ``steps`` steps with the given masks held fixed, through the trainer's loop
    (``pgf_sim.train.trainer.fit_steps``, AdamW, its LR shape without warmup: half-cosine from
    ``lr`` to 0): after each step the masked weights are set back to zero, so the forward always
    uses the N:M weights (projected SGD; the same as training with a fixed binary mask). A
    non-finite loss stops it with ``TrainingDiverged``."""
    import torch

    from ...train.trainer import fit_steps, make_optimizer

    if steps <= 0:
        return
    torch.manual_seed(seed)
    weights = {name: w for name, (w, _) in layer_weights(model, masks).items()}
    opt, sched = make_optimizer(model, lr=lr, weight_decay=weight_decay, total=steps, warmup=0)

    @torch.no_grad()
    def reapply_masks(_stats) -> None:
        for name, w in weights.items():
            w.mul_(masks[name])

    fit_steps(model, opt, sched, lambda step: data.train_batch(min(batch_size, data.n_train), seed, step),
              range(steps), device=next(model.parameters()).device, after_step=reapply_masks)
    model.eval()


@dataclass(frozen=True)
class TrainedMixed:
    """The assignment trained from scratch, one run per seed: the task metric (validation) and the simulated
    ``metric`` of each trained model (captured, so the cost is that of its real zero structure)."""

    run_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    accuracies: tuple[float, ...]
    costs: tuple[float, ...]
    patterns: LayerPatterns  # captured per-layer weight patterns of the first seed's model

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def cost(self) -> float:
        return float(np.mean(self.costs))


def mixed_experiment(cfg: Any, assignment: LayerPatterns, seed: int) -> Any:
    """``cfg`` (an ``ExperimentConfig``) with each named layer's target set by
    ``recipe.layer_patterns`` (names escaped, so each glob matches exactly its layer)."""
    layer_patterns = {_glob.escape(name): pat for name, pat in assignment.items()}
    recipe = dataclasses.replace(cfg.recipe, layer_patterns=layer_patterns)
    return dataclasses.replace(cfg, name=f"{cfg.name}-mixed", recipe=recipe, seed=seed)


def train_assignment(cfg: Any, assignment: LayerPatterns, *, seeds: tuple[int, ...], store: Any, workdir: Any,
                     hw: str, metric: str, batch: int, dtype: str = "fp16", progress: bool = False,
                     runtime: str = "eager") -> TrainedMixed:
    """Train ``cfg`` with the per-layer ``assignment`` for each seed (resuming / reusing finished
    runs of ``store`` + ``workdir``), then capture and simulate each trained model on ``hw``."""
    from ...sim.hardware import load_hardware
    from ...sim.simulate import simulate
    from ...train.trainer import train
    from ..run import results
    from ..run.trained import capture_run

    if not seeds:
        raise ConfigError("train_assignment needs at least one seed")
    hardware = load_hardware(hw)
    run_ids, accs, costs, patterns = [], [], [], None
    for seed in seeds:
        summary = train(mixed_experiment(cfg, assignment, seed), store=store, workdir=Path(workdir), progress=progress)
        workload, _ = capture_run(Path(workdir) / summary.run_id, batch=batch, dtype=dtype)
        totals, _ = results.from_sim_result(simulate(workload, hardware, runtime=runtime))
        run_ids.append(summary.run_id)
        accs.append(float(summary.final_accuracy))
        costs.append(float(totals[metric]))
        if patterns is None:
            patterns = LayerPatterns.of({op.name: op.pattern for op in workload.ops
                                         if op.kind == "gemm" and op.name in assignment})
    return TrainedMixed(tuple(run_ids), tuple(seeds), tuple(accs), tuple(costs), patterns)


@dataclass(frozen=True)
class MixedResult:
    """A mixed assignment on one target, the best uniform one beside it, and their task metric
    (test split) one-shot (re-masked) and after ``finetune_steps`` of masked fine-tuning.
    ``quality``: the task metric (accuracy, or bpc / loss / perplexity)."""

    hw: str
    metric: str
    run_id: str
    base_pattern: NM
    sensitivity: Sensitivity
    cost: np.ndarray
    const: float
    budget: float
    budget_errors: int
    mixed: Assignment
    uniform: Assignment | None
    finetune_steps: int
    accuracy: dict[str, float]   # "start", "mixed one-shot", "mixed fine-tuned", "uniform ..." keys
    trained: dict[str, tuple[float, float, int]]  # the sweep's trained uniform runs: pattern -> (mean acc, cost, seeds)
    trained_mixed: TrainedMixed | None = None  # the assignment trained from scratch (None: not asked)
    quality: Metric = ACCURACY
    runtime: str = "eager"  # sim.cost.RUNTIMES: how every op was priced

    def format(self) -> str:
        s, pats, q = self.sensitivity, self.sensitivity.patterns, self.quality
        unit = "µs" if self.metric == "latency_s" else "µJ"
        if q.higher_is_better:
            calib = (f"calibration: {s.n_calib} training targets, {s.base_errors} errors at the start; budget "
                     f"{q.fmt_delta(self.budget)} = {self.budget_errors} extra errors")
            pen_name = "extra errors"
        else:
            calib = (f"calibration: {s.n_calib} training targets, {q.name} {q.fmt(s.base_value)} at the start; budget "
                     f"{q.fmt_delta(self.budget)} = {self.budget_errors} steps of {q.fmt_delta(s.step)}")
            pen_name = f"+{q.name} steps"
        lines = [f"mixed N:M on {self.hw} ({self.metric}, {self.runtime} runtime), from run {self.run_id} (trained at {self.base_pattern}); {calib}",
                 f"  {'layer':<22} {'pattern':>8} {pen_name:>13} {'cost ' + unit:>12}"]
        pen = s.penalty
        for i, name in enumerate(s.layers):
            c = self.mixed.choice[i]
            lines.append(f"  {name:<22} {str(pats[c]):>8} {int(pen[i, c]):>13} {self.cost[i, c] * 1e6:>12.4f}")
        total = lambda a: (a.cost + self.const) * 1e6  # noqa: E731
        lines.append(f"  mixed: predicted +{self.mixed.penalty} {pen_name}, total {self.metric} {total(self.mixed):.4f} {unit}")
        if self.uniform is not None:
            u = self.uniform
            gain = (u.cost + self.const) / (self.mixed.cost + self.const)
            lines.append(f"  best uniform within the budget: {pats[u.choice[0]]} everywhere, predicted +{u.penalty} "
                         f"{pen_name}, total {total(u):.4f} {unit}; mixed gain {gain:.3f}x")
        lines.append(f"  test {q.label}: " + ", ".join(f"{k} {q.fmt(v)}" for k, v in self.accuracy.items()))
        if self.trained:
            lines.append("  the sweep's uniform runs trained from scratch (same recipe): " + "; ".join(
                f"{p} validation {q.name} {q.fmt(a)} (n={k}), {self.metric} {c * 1e6:.4f} {unit}"
                for p, (a, c, k) in self.trained.items()))
        if self.trained_mixed is not None:
            lines.extend(self._format_trained(unit))
        return "\n".join(lines)

    def _format_trained(self, unit: str) -> list[str]:
        t, pats, q = self.trained_mixed, self.sensitivity.patterns, self.quality
        lines = [f"  trained from scratch with recipe.layer_patterns = the mixed assignment (runs {', '.join(t.run_ids)}): "
                 f"validation {q.name} {q.fmt(t.accuracy)} (n={len(t.seeds)}: "
                 + ", ".join(q.fmt(a) for a in t.accuracies) + f"), {self.metric} {t.cost * 1e6:.4f} {unit}"]
        off = {n: p for n, p in t.patterns.items() if p != pats[self.mixed.choice[self.sensitivity.layers.index(n)]]}
        if off:  # the captured zero structure should be exactly the assignment
            lines.append(f"  WARNING: trained layers whose captured pattern differs from the assignment: {off}")
        if self.uniform is not None and str(pats[self.uniform.choice[0]]) in self.trained:
            u = str(pats[self.uniform.choice[0]])
            acc, cost, k = self.trained[u]
            lines.append(f"  vs the best uniform pattern {u} trained the same way (n={k}): {q.name} "
                         f"{'+' if t.accuracy >= acc else '-'}{q.fmt_delta(abs(t.accuracy - acc))}, "
                         f"{self.metric} {cost / t.cost:.3f}x of mixed's")
        # the sensitivity comes from re-masking one run trained at the start pattern; a uniform
        # pattern trained from scratch can do better than that predicts, so say when one does
        better = [p for p, (acc, cost, _) in self.trained.items()
                  if q.oriented(acc) >= q.oriented(t.accuracy) and cost <= t.cost]
        lines.append("  trained uniform runs at least as accurate and as cheap as the trained mixed one: "
                     + (", ".join(better) if better else "none (the mixed assignment is on the trained front)"))
        return lines


def run_mixed(*, db: Any, sweep: str | None, workdir: Any, hw: str, run_id: str | None = None, recipe: str = "mdgf",
              patterns: tuple[NM, ...] | None = None, budget: float = 0.01, metric: str = "latency_s",
              finetune_steps: int = 100, n_calib: int = 1024, train: bool = True,
              train_seeds: tuple[int, ...] | None = None, progress: bool = False, runtime: str = "eager") -> MixedResult:
    """Measure, choose and verify a mixed assignment (see the module docstring). ``train``: also
    train it from scratch, for ``train_seeds`` (default: the seeds of the sweep's runs of the
    start run's recipe label)."""
    import copy
    import math

    import torch

    from ...sim.capture import capture
    from ...sim.hardware import load_hardware
    from ...store import ResultStore
    from ...train.data import load_data
    from ...train.trainer import evaluate, example_input, load_trained
    from ..run import results

    store = ResultStore(db, create=False)
    info = store.sweep_info(sweep)
    grid_patterns = tuple(NM.parse(p) for p in info.config["grid"]["patterns"])
    if run_id is None:
        run_id = _start_run(store, store.sweep_points(info.sweep), recipe, grid_patterns)
    model, cfg = load_trained(Path(workdir) / run_id)
    q = cfg.task_metric
    if budget < 0 or (q.higher_is_better and budget >= 1.0):
        raise ConfigError(f"budget is how much worse than the start run the {q.label} may get "
                          f"({'a fraction in [0, 1)' if q.higher_is_better else '>= 0, in ' + q.unit}), got {budget}")
    base = cfg.recipe.pattern
    cands = tuple(sorted({p for p in (patterns or grid_patterns) if p.density <= base.density} | {base},
                         key=lambda p: (-p.density, p.m)))
    batch = int(info.config["simulate"]["batch"])
    workload = capture(model, (example_input(cfg, batch),))
    layers = tuple(op.name for op in workload.ops if op.kind == "gemm" and not op.pattern.is_dense)
    if not layers:
        raise ConfigError(f"run {run_id} has no sparse layers to assign patterns to")
    data = load_data(cfg.data)
    torch.manual_seed(0)
    x_cal, y_cal = _calibration(data, n_calib)
    sens = measure_sensitivity(model, x_cal, y_cal, layers, cands, q)
    cost, const = layer_costs(workload, layers, cands, load_hardware(hw), metric, runtime)
    budget_errors = int(math.floor(budget / sens.step + 1e-9))
    mixed = solve_exact(cost, sens.penalty, budget_errors)
    uniform = best_uniform(cost, sens.penalty, budget_errors)

    def score(m):
        return evaluate(m, data, torch.device("cpu"), False, "test")[q.name]

    acc = {"start": score(model)}
    for label, a in (("mixed", mixed), ("uniform", uniform)):
        if a is None:
            continue
        m = copy.deepcopy(model)
        masks = apply_patterns(m, a.layer_patterns(layers, cands))
        acc[f"{label} one-shot"] = score(m)
        if finetune_steps:
            finetune_masked(m, data, masks, steps=finetune_steps, lr=cfg.schedule.lr * 0.25,
                            batch_size=cfg.schedule.batch_size, seed=cfg.seed)
            acc[f"{label} fine-tuned"] = score(m)
    trained_mixed = None
    if train:
        points = store.sweep_points(info.sweep)
        start_label = next((p.recipe for p in points if p.run_id == run_id), None)
        seeds = train_seeds or tuple(sorted({p.seed for p in points if p.recipe == start_label})) or (cfg.seed,)
        trained_mixed = train_assignment(
            cfg, mixed.layer_patterns(layers, cands), seeds=seeds, store=store, workdir=workdir, hw=hw,
            metric=metric, batch=batch, dtype=str(info.config["simulate"].get("dtype", "fp16")), progress=progress,
            runtime=runtime)
    from ...store import sim_key

    key = sim_key(batch, str(info.config["simulate"].get("dtype", "fp16")), runtime)
    return MixedResult(hw, metric, run_id, base, sens, cost, const, budget, budget_errors, mixed, uniform,
                       finetune_steps, acc, _trained_uniform(store, info, run_id, hw, metric, key), trained_mixed, q,
                       runtime)


def _calibration(data: Any, n: int):
    """(x, y) calibration tensors from the TRAINING split: the first ``n`` examples, or for text
    the first ``n // 4`` windows of the training stream (each window scores block_size targets)."""
    if hasattr(data, "train_x"):
        n = min(n, len(data.train_y))
        return data.prepare(data.train_x[:n]), data.train_y[:n]
    t = data.block_size
    k = max(1, min(n // 4, (len(data.train) - 1) // t))
    return data.train[:k * t].view(k, t), data.train[1:k * t + 1].view(k, t)


def _trained_uniform(store: Any, info: Any, run_id: str, hw: str, metric: str,
                     key: str | None = None) -> dict[str, tuple[float, float, int]]:
    """Mean accuracy and simulated ``metric`` (stored under ``key``, default the sweep's) of the
    sweep's finished runs of the start run's recipe label at each pattern (what uniform training
    reached, for comparison; empty where the sweep never priced that runtime)."""
    points = store.sweep_points(info.sweep)
    recipe = next((p.recipe for p in points if p.run_id == run_id), None)
    totals = {r.run_id: r for r in store.sim_totals(key or info.sim_key, hw=hw)}
    by_pattern: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        run = store.get_run(p.run_id)
        if p.recipe != recipe or not run or run.status != "finished" or p.run_id not in totals:
            continue
        by_pattern.setdefault(str(p.pattern), []).append((run.final_accuracy, getattr(totals[p.run_id], metric)))
    return {pat: (float(np.mean([a for a, _ in v])), float(np.mean([c for _, c in v])), len(v))
            for pat, v in by_pattern.items()}


def _start_run(store: Any, points: list[Any], recipe: str, patterns: tuple[NM, ...]) -> str:
    """The lowest-seed finished run of ``recipe`` at the densest sparse pattern of the sweep."""
    ok = [p for p in points if p.recipe == recipe and not p.pattern.is_dense
          and (run := store.get_run(p.run_id)) is not None and run.status == "finished"]
    if not ok:
        labels = sorted({p.recipe for p in points})
        raise ConfigError(f"no finished sparse run of recipe {recipe!r} in the sweep; recipes: {', '.join(labels)}")
    densest = max(p.pattern.density for p in ok)
    ok = [p for p in ok if p.pattern.density == densest]
    return min(ok, key=lambda p: (p.seed, p.run_id)).run_id

