"""Memory footprint and capacity: stored weights, activations, KV cache, and a training step's state.

Inference (``inference_footprint``): weights as stored on the target (N:M compressed values +
metadata where the target stores them compressed, else dense; ``cost.evaluate`` decides per
layer), the peak live activations (the largest op's operands and result: a forward pass frees
each activation once its consumer has run), and the KV cache of a prefill/decode workload.

Training (``training_footprint``), per recipe, with ``param_bits`` master weights (fp32 by
default, as the trainer keeps them) and AdamW's two moments:

- straight-through recipes (``STRAIGHT_THROUGH``: STE, SR-STE, MDGF, SDGF) keep every weight
  dense and update it (gradients reach pruned weights), so they pay dense weights + dense
  gradients + dense optimizer state, plus a 1-byte mask per sparsified weight;
- ``dense`` pays the same without masks;
- ``fixed-mask`` (train only the kept values of a frozen mask) stores weights compressed
  (kept values + ceil(log2 M)-bit indices) and keeps gradients and optimizer state for the
  kept values only;
- activations saved for the backward pass: every GEMM input (for its weight gradient), both
  operands of every matmul and every element-wise op's inputs.

``fits`` compares the total with ``memory.dram_capacity_bytes``. Approximations: framework
workspace, allocator fragmentation and the CUDA context are not counted.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..core.errors import ConfigError
from .cost import evaluate
from .hardware import Hardware
from .ops import DTYPE_BITS, Workload

STRAIGHT_THROUGH = ("ste", "sr-ste", "mdgf", "sdgf", "mdgf+sdgf")
FIXED_MASK = ("fixed-mask",)
TRAIN_RECIPES = ("dense",) + STRAIGHT_THROUGH + FIXED_MASK
ADAM_MOMENTS = 2  # AdamW: first and second moment per trained value
MASK_BYTES = 1  # a bool mask per sparsified weight


class Footprint(NamedTuple):
    """Bytes of one workload on one target. ``layers``: per weight GEMM (all ``count`` copies)."""

    layers: list[dict]
    weights_bytes: float
    activations_bytes: float  # peak live (inference) or saved for backward (training)
    kv_cache_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    masks_bytes: float
    total_bytes: float
    capacity_bytes: float

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.capacity_bytes

    def summary(self) -> str:
        from .report_table import si

        parts = [f"weights {si(self.weights_bytes, 'B')}", f"activations {si(self.activations_bytes, 'B')}"]
        for name, value in (("KV cache", self.kv_cache_bytes), ("gradients", self.gradients_bytes),
                            ("optimizer", self.optimizer_bytes), ("masks", self.masks_bytes)):
            if value:
                parts.append(f"{name} {si(value, 'B')}")
        verdict = "fits" if self.fits else "DOES NOT FIT"
        return (f"memory {si(self.total_bytes, 'B')} ({', '.join(parts)}) of {si(self.capacity_bytes, 'B')}: {verdict}")


def _weight_layers(workload: Workload, hw: Hardware) -> tuple[list[dict], float, float]:
    """Per weight GEMM rows, stored bytes of all GEMM weights, and dense-stored other params."""
    table = workload.table()
    cost = evaluate(table, hw)
    layers, gemm_elements, stored = [], 0, 0.0
    for i, op in enumerate(workload.ops):
        if op.kind != "gemm":
            continue
        dense = op.n * op.k * (table.value_bits[i] / 8.0) * op.count
        # cost.weight_bytes counts the weight once per product; the stored copy is one per instance
        kept = float(cost.weight_bytes[i]) / max(op.batch, 1)
        layers.append({"layer": op.name, "count": op.count, "pattern": str(op.pattern), "dense_bytes": dense,
                       "stored_bytes": kept})
        gemm_elements += op.n * op.k * op.count
        stored += kept
    params = int(workload.meta.get("params", gemm_elements))
    bytes_el = float(np.max(table.value_bits)) / 8.0 if table.n_ops else 2.0
    other = max(params - gemm_elements, 0) * bytes_el  # embeddings, norms, biases: dense
    return layers, stored, other


def _activation_bytes(workload: Workload, *, saved: bool, fused: bool) -> float:
    """Peak live activations of a forward pass, or (``saved``) all activations kept for backward."""
    peak = total = 0.0
    for op in workload.ops:
        b = DTYPE_BITS[op.dtype] / 8.0
        if op.kind == "gemm":
            inputs, out = op.m * op.k * op.batch * b, op.m * op.n * op.batch * b
        elif op.kind == "matmul":
            inputs = (op.m * op.k + op.k * op.n) * op.batch * b
            out = 0.0 if fused and op.role == "attn_score" else op.m * op.n * op.batch * b
        else:
            inputs, out = op.elements * op.inputs * b, op.elements * b
            if fused:  # fused into its producer: operands never materialised
                inputs = out = 0.0
        peak = max(peak, inputs + out)
        total += inputs * op.count
    return total if saved else peak


def inference_footprint(workload: Workload, hw: Hardware, *, profile: str = "eager") -> Footprint:
    layers, stored, other = _weight_layers(workload, hw)
    weights = stored + other
    acts = _activation_bytes(workload, saved=False, fused=profile == "fused")
    kv = float(workload.meta.get("kv_cache_bytes", 0))
    total = weights + acts + kv
    return Footprint(layers, weights, acts, kv, 0.0, 0.0, 0.0, total, hw.memory.dram_capacity_bytes.value)


def training_footprint(workload: Workload, hw: Hardware, recipe: str, *, param_bits: int = 32) -> Footprint:
    """Footprint of one training step of ``workload`` (its GEMM patterns are the recipe's targets)."""
    if recipe not in TRAIN_RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r} for a training footprint; valid: {', '.join(TRAIN_RECIPES)}")
    pb = param_bits / 8.0
    layers, dense_params, sparse_params, kept_params, index_bytes = [], 0, 0, 0.0, 0.0
    gemm_elements = 0
    for op in workload.ops:
        if op.kind != "gemm":
            continue
        elems = op.n * op.k * op.count
        gemm_elements += elems
        p = op.pattern
        if p.is_dense or recipe == "dense":
            dense_params += elems
            layers.append({"layer": op.name, "count": op.count, "pattern": "dense", "trained_values": elems})
            continue
        sparse_params += elems
        kept = elems * p.n / p.m
        kept_params += kept
        index_bytes += kept * math.ceil(math.log2(p.m)) / 8.0
        layers.append({"layer": op.name, "count": op.count, "pattern": str(p),
                       "trained_values": kept if recipe in FIXED_MASK else elems})
    other = max(int(workload.meta.get("params", gemm_elements)) - gemm_elements, 0)
    dense_params += other
    if recipe in FIXED_MASK:
        trained = dense_params + kept_params
        weights = trained * pb + index_bytes
        masks = 0.0  # the indices are the mask
    else:
        trained = dense_params + sparse_params
        weights = trained * pb
        masks = sparse_params * MASK_BYTES if recipe in STRAIGHT_THROUGH else 0.0
    grads = trained * pb
    optimizer = ADAM_MOMENTS * trained * pb
    acts = _activation_bytes(workload, saved=True, fused=False)
    total = weights + grads + optimizer + masks + acts
    return Footprint(layers, weights, acts, 0.0, grads, optimizer, masks, total, hw.memory.dram_capacity_bytes.value)
