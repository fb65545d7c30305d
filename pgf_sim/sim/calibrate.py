"""The calibration set (published measurements) and the fit of the efficiency factors.

Dense fp16 GEMMs on A100 80GB measured by LLMCompass (PrincetonUniversity/LLMCompass,
ae/figure5), and published 2:4-sparse vs dense speedups on A100 (shared/HARDWARE.md).
``validate`` compares the model with them; ``fit`` re-derives the four efficiency factors
that ``hw_configs/a100_*.yaml`` state as "fitted on calibration set" (a test checks that the
YAML values are what ``fit`` returns, so they cannot be tuned by hand).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..core.pattern import DENSE, NM
from .cost import BOUND_NAMES, evaluate
from .hardware import Hardware, load_hardware, replace_field
from .ops import Op, OpTable

SPEEDUP_TOLERANCE = 0.15  # issue 3: each sparse speedup within 0.15x of measured
DENSE_MAPE_TARGET = 0.15  # issue 3: dense MAPE <= 15%


@dataclass(frozen=True)
class DenseCase:
    m: int
    n: int
    k: int
    measured_s: float
    hardware: str
    source: str


@dataclass(frozen=True)
class SparseCase:
    name: str
    m: int
    n: int
    k: int
    dense_s: float
    sparse_s: float
    hardware: str
    source: str

    @property
    def measured_speedup(self) -> float:
        return self.dense_s / self.sparse_s


_LLMCOMPASS = "LLMCompass (PrincetonUniversity/LLMCompass, ae/figure5), measured A100 80GB fp16"
DENSE_CASES = (
    DenseCase(64, 12288, 12288, 0.1900e-3, "a100_80gb", _LLMCOMPASS),
    DenseCase(1024, 12288, 12288, 1.1990e-3, "a100_80gb", _LLMCOMPASS),
    DenseCase(8192, 256, 256, 0.0356e-3, "a100_80gb", _LLMCOMPASS),
    DenseCase(8192, 8192, 8192, 3.9614e-3, "a100_80gb", _LLMCOMPASS),
)
# GEMM convention (M, N, K) = (rows of x, out features, in features). The PyTorch tutorial ran
# on an A100 40GB per shared/HARDWARE.md; the other sources say "A100" only, so they are
# evaluated on the 80GB config. All four are compute-bound in the model, where the two A100s
# are identical (only DRAM bandwidth and capacity differ).
SPARSE_CASES = (
    SparseCase("Linear 10240->3072, x 3072x10240, CUTLASS", 3072, 3072, 10240, 0.870e-3, 0.630e-3, "a100_40gb",
               "PyTorch tutorial 'semi-structured sparse'"),
    SparseCase("ViT-L MLP fc1 (13008x1024)x(1024x4096)", 13008, 4096, 1024, 1.661e-3, 1.342e-3, "a100_80gb",
               "torchao sparsity training README"),
    SparseCase("ViT-L MLP fc2 (13008x4096)x(4096x1024)", 13008, 1024, 4096, 1.643e-3, 1.294e-3, "a100_80gb",
               "torchao sparsity training README"),
    SparseCase("m=n=k=4096 cuSPARSELt vs CUTLASS", 4096, 4096, 4096, 0.608e-3, 0.546e-3, "a100_80gb",
               "NVIDIA CUDALibrarySamples issue 57"),
)
FITTED_FIELDS = (
    "efficiency.dense_compute_fraction",
    "efficiency.memory_bw_fraction",
    "efficiency.launch_overhead_s",
    "efficiency.sparse_compute_fraction",
)


class DenseRow(NamedTuple):
    case: DenseCase
    hardware: str  # the config it was predicted on
    predicted_s: float
    error: float  # (predicted - measured) / measured
    bound: str


class SparseRow(NamedTuple):
    case: SparseCase
    hardware: str
    dense_pred_s: float
    sparse_pred_s: float
    predicted_speedup: float
    speedup_error: float  # predicted - measured speedup


class Validation(NamedTuple):
    dense: list[DenseRow]
    sparse: list[SparseRow]
    dense_mape: float
    max_speedup_error: float

    @property
    def meets_targets(self) -> bool:
        return self.dense_mape <= DENSE_MAPE_TARGET and self.max_speedup_error <= SPEEDUP_TOLERANCE


def _gemm_table(shapes: list[tuple[int, int, int]], pattern: NM) -> OpTable:
    return OpTable.from_ops([Op(f"gemm{i}", "gemm", m=m, n=n, k=k, pattern=pattern) for i, (m, n, k) in enumerate(shapes)])


def _predict_dense(hw: Hardware, cases) -> tuple[np.ndarray, np.ndarray]:
    cost = evaluate(_gemm_table([(c.m, c.n, c.k) for c in cases], DENSE), hw, dtype="fp16")
    return cost.time_s, cost.bound


def _predict_speedups(hw: Hardware, cases) -> tuple[np.ndarray, np.ndarray]:
    shapes = [(c.m, c.n, c.k) for c in cases]
    dense = evaluate(_gemm_table(shapes, DENSE), hw, dtype="fp16").time_s
    sparse = evaluate(_gemm_table(shapes, NM(2, 4)), hw, dtype="fp16").time_s
    return dense, sparse


def validate(hw_override: "str | Hardware | None" = None) -> Validation:
    """Predicted vs measured on the calibration set.

    By default each case runs on the config its measurement was taken on (``case.hardware``);
    ``hw_override`` runs every case on one target instead (e.g. ``--hw a100_40gb``).
    """
    cache: dict[str, Hardware] = {}

    def hw_for(name: str) -> Hardware:
        if isinstance(hw_override, Hardware):
            return hw_override
        key = hw_override or name
        if key not in cache:
            cache[key] = load_hardware(key)
        return cache[key]

    dense_rows = []
    for case in DENSE_CASES:
        hw = hw_for(case.hardware)
        t, b = _predict_dense(hw, [case])
        dense_rows.append(DenseRow(case, hw.name, float(t[0]), float(t[0] / case.measured_s - 1), BOUND_NAMES[int(b[0])]))
    sparse_rows = []
    for case in SPARSE_CASES:
        hw = hw_for(case.hardware)
        d, s = _predict_speedups(hw, [case])
        speedup = float(d[0] / s[0])
        sparse_rows.append(SparseRow(case, hw.name, float(d[0]), float(s[0]), speedup, speedup - case.measured_speedup))
    mape = float(np.mean([abs(r.error) for r in dense_rows]))
    worst = float(max(abs(r.speedup_error) for r in sparse_rows))
    return Validation(dense_rows, sparse_rows, mape, worst)


def fit(hw: "Hardware | str" = "a100_80gb", dense_cases: tuple[DenseCase, ...] = DENSE_CASES) -> dict[str, float]:
    """Least-squares fit of the four efficiency factors on the calibration set.

    Step 1: dense compute fraction, memory-bandwidth fraction and launch overhead minimise the
    squared relative error of the four dense GEMM times. Step 2: with those fixed, the sparse
    compute fraction minimises the squared error of the four 2:4 speedups. Each case runs on
    ``hw`` (the two A100 configs give the same results: the sparse cases are compute-bound).
    """
    from scipy.optimize import least_squares  # scipy ships with scikit-learn, a dependency

    base = load_hardware(hw) if isinstance(hw, str) else hw
    measured = np.array([c.measured_s for c in dense_cases])

    def with_values(h: Hardware, values: dict[str, float]) -> Hardware:
        for key, value in values.items():
            h = replace_field(h, key, float(value))
        return h

    def dense_residuals(x: np.ndarray) -> np.ndarray:
        h = with_values(base, {
            "efficiency.dense_compute_fraction": x[0], "efficiency.memory_bw_fraction": x[1],
            "efficiency.launch_overhead_s": x[2] * 1e-6,
            # keep the sparse <= dense invariant satisfiable while dense moves
            "efficiency.sparse_compute_fraction": min(base.efficiency.sparse_compute_fraction.value, x[0]),
        })
        return _predict_dense(h, dense_cases)[0] / measured - 1.0

    x0 = np.array([0.8, 0.8, 10.0])
    dense_fit = least_squares(dense_residuals, x0, bounds=([0.05, 0.05, 0.0], [1.0, 1.0, 1000.0]), xtol=1e-12, ftol=1e-12)
    eff_dense, eff_mem, launch_us = (float(v) for v in dense_fit.x)
    fitted = with_values(base, {
        "efficiency.dense_compute_fraction": eff_dense, "efficiency.memory_bw_fraction": eff_mem,
        "efficiency.launch_overhead_s": launch_us * 1e-6, "efficiency.sparse_compute_fraction": min(0.5, eff_dense),
    })
    measured_speedup = np.array([c.measured_speedup for c in SPARSE_CASES])

    def sparse_residuals(x: np.ndarray) -> np.ndarray:
        h = replace_field(fitted, "efficiency.sparse_compute_fraction", float(x[0]))
        d, s = _predict_speedups(h, SPARSE_CASES)
        return d / s - measured_speedup

    sparse_fit = least_squares(sparse_residuals, np.array([0.5 * eff_dense]), bounds=([0.01], [eff_dense]),
                               xtol=1e-12, ftol=1e-12)
    return {
        "efficiency.dense_compute_fraction": eff_dense,
        "efficiency.memory_bw_fraction": eff_mem,
        "efficiency.launch_overhead_s": launch_us * 1e-6,
        "efficiency.sparse_compute_fraction": float(sparse_fit.x[0]),
    }


def leave_one_out(hw: "Hardware | str" = "a100_80gb") -> list[float]:
    """Relative error on each dense case when the three dense factors are fitted on the others.

    Three parameters on four points fit in-sample almost exactly; this is the honest
    out-of-sample figure (each held-out case predicted by a fit that never saw it).
    """
    base = load_hardware(hw) if isinstance(hw, str) else hw
    errors = []
    for i, held in enumerate(DENSE_CASES):
        values = fit(base, DENSE_CASES[:i] + DENSE_CASES[i + 1:])
        h = base
        for key in FITTED_FIELDS[:3]:
            h = replace_field(h, key, values[key])
        errors.append(float(_predict_dense(h, [held])[0][0] / held.measured_s - 1.0))
    return errors


def format_validation(v: Validation, loo_errors: list[float] | None = None) -> str:
    lines = ["Dense fp16 GEMMs (predicted vs measured; the measurements are on A100 80GB):",
             f"{'M':>6} {'N':>6} {'K':>6} {'hw':>10} {'measured ms':>12} {'predicted ms':>13} {'error':>8}  bound"]
    for r in v.dense:
        c = r.case
        lines.append(f"{c.m:>6} {c.n:>6} {c.k:>6} {r.hardware:>10} {c.measured_s * 1e3:>12.4f} "
                     f"{r.predicted_s * 1e3:>13.4f} {r.error * 100:>7.1f}%  {r.bound}")
    lines.append(f"Dense MAPE: {v.dense_mape * 100:.1f}% (target <= {DENSE_MAPE_TARGET * 100:.0f}%)")
    if loo_errors is not None:
        lines.append("Leave-one-out (3 factors refitted without the case): errors "
                     + ", ".join(f"{e * 100:+.1f}%" for e in loo_errors)
                     + f"; MAPE {np.mean(np.abs(loo_errors)) * 100:.1f}%")
    lines.append(f"  source: {_LLMCOMPASS}")
    lines.append("")
    lines.append("2:4 sparse vs dense speedup, fp16 (absolute times: measured / predicted ms):")
    lines.append(f"{'case':<42} {'hw':>10} {'dense':>15} {'2:4':>15} {'speedup meas':>13} {'pred':>6} {'diff':>6}")
    for r in v.sparse:
        c = r.case
        lines.append(
            f"{c.name:<42} {r.hardware:>10} {c.dense_s * 1e3:>6.3f}/{r.dense_pred_s * 1e3:<8.3f} "
            f"{c.sparse_s * 1e3:>6.3f}/{r.sparse_pred_s * 1e3:<8.3f} {c.measured_speedup:>12.2f}x "
            f"{r.predicted_speedup:>5.2f}x {r.speedup_error:>+6.2f}"
        )
    lines.append(f"Max |speedup error|: {v.max_speedup_error:.3f}x (target <= {SPEEDUP_TOLERANCE}x)")
    lines.append("  sources: " + "; ".join(sorted({c.source for c in SPARSE_CASES})))
    lines.append(f"Targets met: {'yes' if v.meets_targets else 'NO'}")
    return "\n".join(lines)
