"""Run a workload through the cost model on a hardware target: per-layer rows and totals.

``simulate(workload, hw)`` evaluates every op once with the vectorised cost model
(``cost.evaluate``), once more with every weight made dense (the speedup baseline), and returns a
``SimResult`` of plain rows (one dict per op) and totals, printable as a terminal table, CSV or
JSON. ``training_step_cost`` builds the backward ops of a training step per recipe (see
docs/method.md "Training FLOPs") and sums them over the recipe's schedule.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np

from ..core.errors import ConfigError
from ..core.pattern import DENSE, NM
from ..sparsity.flops import step_densities
from ..sparsity.roles import NO_INPUT_GRAD_ROLES
from ..sparsity.schedules import RecipeConfig, layer_target, segments
from .cost import BOUND_NAMES, LayerCost, evaluate
from .hardware import Hardware, load_hardware
from .mapping import MODE_NAMES, map_patterns
from .ops import Op, OpTable, Workload
from .report_table import format_columns, rows_to_csv, si, to_json

ROW_COLUMNS = ("layer", "role", "kind", "shape", "count", "pattern", "exec_pattern", "mapping",
               "dense_flops", "exec_flops", "dram_bytes", "weight_bytes", "compute_time_s",
               "memory_time_s", "latency_s", "bound", "energy_j")
_SUMMED = ("dense_flops", "exec_flops", "dram_bytes", "weight_bytes", "latency_s", "energy_j")


def _shape(op: Op) -> str:
    if op.kind == "elementwise":
        return f"{op.elements} el x{op.inputs} in"
    prefix = f"{op.batch}x " if op.batch > 1 else ""
    return f"{prefix}{op.m}x{op.n}x{op.k}"


@dataclass(frozen=True)
class SimResult:
    """Per-layer rows (dicts with ``ROW_COLUMNS``, SI units) and totals of one workload on one target."""

    workload: str
    hardware: str
    meta: dict
    rows: list[dict]
    totals: dict

    def to_csv(self) -> str:
        return rows_to_csv(self.rows, ROW_COLUMNS)

    def to_dict(self) -> dict:
        return {"workload": self.workload, "hardware": self.hardware, "meta": self.meta,
                "totals": self.totals, "rows": self.rows}

    def to_json(self) -> str:
        return to_json(self.to_dict())

    def format_table(self, max_rows: int | None = None) -> str:
        """Terminal table, one line per op, then the totals."""
        rows = self.rows if max_rows is None else self.rows[:max_rows]
        headers = ("layer", "shape (MxNxK)", "x", "pattern", "executed", "FLOPs dense", "FLOPs exec",
                   "DRAM bytes", "time", "bound", "energy")
        body = [(r["layer"], r["shape"], r["count"], r["pattern"], r["exec_pattern"], si(r["dense_flops"]),
                 si(r["exec_flops"]), si(r["dram_bytes"], "B"), si(r["latency_s"], "s"), r["bound"],
                 si(r["energy_j"], "J")) for r in rows]
        t = self.totals
        body.append(("TOTAL", "", "", "", "", si(t["dense_flops"]), si(t["exec_flops"]), si(t["dram_bytes"], "B"),
                     si(t["latency_s"], "s"), f"{t['compute_bound_time_fraction']:.0%} compute", si(t["energy_j"], "J")))
        head = f"{self.workload} on {self.hardware}"
        details = ", ".join(f"{k}={v}" for k, v in self.meta.items() if k in ("batch", "seq_len", "phase", "dtype", "pattern", "qkv_pattern", "runtime") and v is not None)
        lines = [f"{head} ({details})" if details else head,
                 format_columns(headers, body, right=(2, 5, 6, 7, 8, 10))]
        if self.meta.get("note"):
            lines.insert(1, f"note: {self.meta['note']}")
        if max_rows is not None and len(self.rows) > max_rows:
            lines.append(f"... {len(self.rows) - max_rows} more rows (use --format csv/json for all)")
        lines.append(f"dense-weight time {si(t['dense_latency_s'], 's')}, speedup from N:M {t['speedup_vs_dense']:.3f}x, "
                     f"weights {si(t['weight_bytes'], 'B')}"
                     + (f", KV cache {si(self.meta['kv_cache_bytes'], 'B')}" if "kv_cache_bytes" in self.meta else ""))
        if self.meta.get("footprint"):
            lines.append(self.meta["footprint"])
        if self.meta.get("unmodelled_ops"):
            lines.append(f"warning: ops without a cost rule, not counted: {self.meta['unmodelled_ops']}")
        return "\n".join(lines)



def simulate(workload: Workload, hw: Hardware | str, *, runtime: str | None = None,
             profile: str | None = None) -> SimResult:
    """Cost of every op of ``workload`` on ``hw`` (a ``Hardware`` or a name / YAML path) in the
    ``runtime`` (``cost.RUNTIMES``, default eager; ``profile`` is its former name), with its
    memory footprint."""
    from .cost import resolve_runtime
    from .footprint import inference_footprint

    runtime = resolve_runtime(runtime, profile)
    hw = load_hardware(hw) if isinstance(hw, str) else hw
    table = workload.table()
    cost = evaluate(table, hw, runtime=runtime)
    ones = np.ones_like(table.pat_n)
    dense_cost = evaluate(table._replace(pat_n=ones, pat_m=ones), hw, runtime=runtime)
    _, _, mode = map_patterns(table.pat_n, table.pat_m, hw)
    rows = []
    for i, op in enumerate(workload.ops):
        en, em = int(cost.exec_pat_n[i]), int(cost.exec_pat_m[i])
        rows.append({
            "layer": op.name, "role": op.role, "kind": op.kind, "shape": _shape(op), "count": op.count,
            "pattern": "dense" if op.pattern.is_dense else str(op.pattern),
            "exec_pattern": "dense" if en == em else f"{en}:{em}",
            "mapping": MODE_NAMES[int(mode[i])],
            "dense_flops": float(cost.dense_flops[i]), "exec_flops": float(cost.exec_flops[i]),
            "dram_bytes": float(cost.dram_bytes[i]), "weight_bytes": float(cost.weight_bytes[i]),
            "compute_time_s": float(cost.compute_time_s[i]), "memory_time_s": float(cost.memory_time_s[i]),
            "latency_s": float(cost.latency_s[i]), "bound": BOUND_NAMES[int(cost.bound[i])],
            "energy_j": float(cost.energy_j[i]),
        })
    totals = {key: float(getattr(cost, key).sum()) for key in _SUMMED}
    latency_s = totals["latency_s"]
    totals["dense_latency_s"] = float(dense_cost.latency_s.sum())
    totals["dense_energy_j"] = float(dense_cost.energy_j.sum())
    totals["speedup_vs_dense"] = totals["dense_latency_s"] / latency_s if latency_s > 0 else 1.0
    for code, name in enumerate(BOUND_NAMES):
        totals[f"{name}_bound_time_fraction"] = float(cost.latency_s[cost.bound == code].sum() / latency_s) if latency_s > 0 else 0.0
    totals["achieved_flops_per_s"] = totals["dense_flops"] / latency_s if latency_s > 0 else 0.0
    # memory footprint (a cost axis beside latency and energy) and whether it fits the target
    fp = inference_footprint(workload, hw, profile=runtime)
    totals["footprint_bytes"] = fp.total_bytes
    totals["dram_capacity_bytes"] = fp.capacity_bytes
    totals["fits_memory"] = fp.fits
    meta = dict(workload.meta, runtime=runtime, footprint=fp.summary())
    return SimResult(workload.name, hw.name, meta, rows, totals)


def simulate_many(workloads: Iterable[Workload], hardware: Iterable[Hardware | str], *,
                  runtime: str = "eager") -> list[SimResult]:
    """Every workload on every target (workload-major order)."""
    hws = [load_hardware(h) if isinstance(h, str) else h for h in hardware]
    return [simulate(w, h, runtime=runtime) for w in workloads for h in hws]


def format_summary(results: Sequence[SimResult]) -> str:
    """One line per result: the comparison across targets and patterns."""
    headers = ("workload", "hardware", "pattern", "qkv", "time", "dense time", "speedup", "energy",
               "FLOPs exec", "DRAM bytes", "compute-bound")
    body = [(r.workload, r.hardware, r.meta.get("pattern", ""), r.meta.get("qkv_pattern") or "-",
             si(r.totals["latency_s"], "s"), si(r.totals["dense_latency_s"], "s"), f"{r.totals['speedup_vs_dense']:.3f}x",
             si(r.totals["energy_j"], "J"), si(r.totals["exec_flops"]), si(r.totals["dram_bytes"], "B"),
             f"{r.totals['compute_bound_time_fraction']:.0%}") for r in results]
    return format_columns(headers, body, right=(4, 5, 6, 7, 8, 9, 10))


# ------------------------------------------------------------------------------ training step


def training_ops(workload: Workload, patterns: dict[str, NM],
                 weight_grad_patterns: dict[str, NM] | None = None) -> list[Op]:
    """The ops of one training step: forward, input gradient and weight gradient.

    ``patterns`` gives the forward weight pattern of each sparse GEMM by op name (others dense).
    Per docs/method.md: the input gradient dL/dx = dL/dy W_eff (an (M, K) output reducing over
    N) is sparse like the forward; the weight gradient dL/dW = dL/dy^T x (an (N, K) output reducing
    over the M tokens) is activation x activation and dense (every weight is updated), except
    where ``weight_grad_patterns`` names a layer whose pruned weights get no gradient (MDGF
    ``grad: scaled`` once beta is 0, see ``sparsity/flops.step_densities``): that one is counted as
    an N:M GEMM of the layer's pattern (ideal; real kernels would need output-sparse SDDMM).
    Hardware must support transposed N:M operands for a sparse input gradient (transposable
    masks); the mapping decides what executes. Attention products: backward = 2 products of the
    forward's size. Element-wise ops: backward reads the output gradient and saved inputs,
    writes the input gradient, same FLOPs per element (our convention). The optimizer update is
    not included. The first layer fed by data (patch embedding) needs no input gradient.
    """
    weight_grad_patterns = weight_grad_patterns or {}
    ops: list[Op] = []
    for op in workload.ops:
        if op.kind == "gemm":
            p = NM.parse(patterns.get(op.name, DENSE))  # "2:4" strings from Python callers
            ops.append(replace(op, pattern=p))
            if op.role not in NO_INPUT_GRAD_ROLES:
                ops.append(replace(op, name=f"{op.name}.dgrad", n=op.k, k=op.n, pattern=p))
            wp = NM.parse(weight_grad_patterns.get(op.name, DENSE))
            ops.append(Op(f"{op.name}.wgrad", "matmul" if wp.is_dense else "gemm", m=op.n, n=op.k, k=op.m,
                          batch=op.batch, pattern=wp, dtype=op.dtype, role=f"{op.role}.wgrad", count=op.count))
        elif op.kind == "matmul":
            ops.extend([op, replace(op, name=f"{op.name}.grad", count=2 * op.count)])
        else:
            ops.extend([op, replace(op, name=f"{op.name}.grad", inputs=op.inputs + 1)])
    return ops


@dataclass(frozen=True)
class TrainingSegment:
    start: int
    stop: int
    description: str
    result: SimResult  # the per-layer cost of one step in this segment

    @property
    def steps(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class TrainingCost:
    """A recipe's training cost over ``total_steps``: constant segments, per-step and total figures."""

    recipe: str
    total_steps: int
    segments: list[TrainingSegment]
    totals: dict = field(default_factory=dict)

    def format_table(self) -> str:
        headers = ("steps", "state", "step time", "dense-weight step time", "FLOPs exec/step", "energy/step")
        body = [(f"{s.start}-{s.stop}", s.description, si(s.result.totals["latency_s"], "s"),
                 si(s.result.totals["dense_latency_s"], "s"), si(s.result.totals["exec_flops"]),
                 si(s.result.totals["energy_j"], "J")) for s in self.segments]
        t = self.totals
        return "\n".join([
            f"training {self.segments[0].result.meta.get('model', '')} with {self.recipe}, {self.total_steps} steps "
            f"on {self.segments[0].result.hardware}",
            format_columns(headers, body, right=(2, 3, 4, 5)),
            f"total {si(t['latency_s'], 's')} (mean step {si(t['mean_step_latency_s'], 's')}), "
            f"{si(t['exec_flops'])} executed of {si(t['dense_flops'])} dense, energy {si(t['energy_j'], 'J')}, "
            f"speedup vs dense training {t['speedup_vs_dense_training']:.3f}x",
        ] + ([f"training-step memory {si(t['footprint_bytes'], 'B')} (weights, gradients, AdamW state, masks, "
              f"saved activations): {'fits' if t['fits_memory'] else 'DOES NOT FIT'}"] if "footprint_bytes" in t else []))

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "total_steps": self.total_steps, "totals": self.totals,
                "segments": [{"start": s.start, "stop": s.stop, "state": s.description, **s.result.to_dict()}
                             for s in self.segments]}

    def to_json(self) -> str:
        return to_json(self.to_dict())

    def to_csv(self) -> str:
        rows = [{"start": s.start, "stop": s.stop, "state": s.description, **r}
                for s in self.segments for r in s.result.rows]
        return rows_to_csv(rows, ("start", "stop", "state") + ROW_COLUMNS)


def _layer_targets(workload: Workload, recipe: RecipeConfig) -> dict[str, NM]:
    targets = {}
    for op in workload.ops:
        if op.kind != "gemm":
            continue
        # built-in block-merged names use "*"; a recipe glob still matches the concrete layers
        t = layer_target(recipe, op.name, op.role)
        if t is not None and not t.is_dense:
            targets[op.name] = t
    return targets


def training_step_cost(workload: Workload, hw: Hardware | str, recipe: RecipeConfig, total_steps: int) -> TrainingCost:
    """Cost of training ``workload`` (its forward ops; their own patterns are ignored) with
    ``recipe`` for ``total_steps`` steps on ``hw``.

    The schedule is cut into segments over which every layer's pattern and MDGF's "beta > 0" are
    constant (``schedules.segments``); the densities of forward / input gradient / weight
    gradient per segment are those of ``sparsity/flops.step_densities`` (while beta > 0 the MDGF
    forward weight W*(m + beta(1-m)) is dense). Each distinct state is simulated once.
    """
    hw = load_hardware(hw) if isinstance(hw, str) else hw
    if total_steps < 1:
        raise ConfigError(f"total_steps must be >= 1, got {total_steps}")
    targets = _layer_targets(workload, recipe)
    per_target = {t: segments(recipe, total_steps, t) for t in set(targets.values())}
    cuts = sorted({0, total_steps} | {s.start for segs in per_target.values() for s in segs})
    out: list[TrainingSegment] = []
    dense_step = simulate(Workload(workload.name, training_ops(workload, {}), dict(workload.meta)), hw)
    cache: dict[tuple, SimResult] = {}
    for a, b in zip(cuts, cuts[1:]):
        state = {}  # target -> (forward/input-grad pattern, weight-grad pattern)
        for t, segs in per_target.items():
            seg = next(s for s in segs if s.start <= a < s.stop)
            fwd_d, _, wgrad_d = step_densities(recipe, seg)
            state[t] = (seg.pattern if fwd_d < 1 else DENSE, seg.pattern if wgrad_d < 1 else DENSE)
        fwd = {name: state[t][0] for name, t in targets.items() if not state[t][0].is_dense}
        wgrad = {name: state[t][1] for name, t in targets.items() if not state[t][1].is_dense}
        key = tuple(sorted(state.items()))
        if key not in cache:
            meta = dict(workload.meta, phase="train", recipe=recipe.name)
            cache[key] = simulate(Workload(workload.name, training_ops(workload, fwd, wgrad), meta), hw)
        desc = ", ".join(f"{t}->{'dense' if f.is_dense else f}" + ("" if w.is_dense else f" (wgrad {w})")
                         for t, (f, w) in sorted(state.items())) or "dense"
        if out and out[-1].description == desc:
            out[-1] = TrainingSegment(out[-1].start, b, desc, out[-1].result)
        else:
            out.append(TrainingSegment(a, b, desc, cache[key]))
    totals = {key: sum(s.steps * s.result.totals[key] for s in out) for key in _SUMMED}
    totals["mean_step_latency_s"] = totals["latency_s"] / total_steps
    totals["dense_training_latency_s"] = dense_step.totals["latency_s"] * total_steps
    totals["speedup_vs_dense_training"] = totals["dense_training_latency_s"] / totals["latency_s"]
    from .footprint import TRAIN_RECIPES, training_footprint

    if recipe.name in TRAIN_RECIPES:  # memory of a training step: weights, gradients, optimizer, masks
        target_ops = [replace(op, pattern=targets.get(op.name, DENSE)) if op.kind == "gemm" else op for op in workload.ops]
        fp = training_footprint(Workload(workload.name, target_ops, dict(workload.meta)), hw, recipe.name)
        totals["footprint_bytes"] = fp.total_bytes
        totals["fits_memory"] = fp.fits
    return TrainingCost(recipe.name, total_steps, out, totals)
