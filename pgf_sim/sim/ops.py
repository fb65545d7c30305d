"""The workload representation shared by workload builders, model capture and the cost model.

A workload is a list of ops (and optionally a networkx graph of them). The cost model works on
the struct-of-arrays form (``OpTable``) so that it is vectorised over layers.

GEMM convention (all over the simulator): output ``(M, N) = (M, K) @ (K, N)``.
``M`` = rows of the output (tokens = batch * sequence), ``N`` = output features,
``K`` = the reduction dimension; the N:M weight pattern groups run along ``K``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, NamedTuple

import numpy as np

from ..core.pattern import DENSE, NM

OpKind = Literal["gemm", "matmul", "elementwise"]
DTYPE_BITS = {"fp32": 32, "tf32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "int4": 4}
DTYPES = tuple(DTYPE_BITS)  # OpTable.dtype_code indexes this
# Attention parts a fused (FlashAttention-style) kernel merges: OpTable.attn codes by op role.
ATTN_NONE, ATTN_SCORE, ATTN_AV, ATTN_SOFTMAX = 0, 1, 2, 3
_ATTN_ROLES = {"attn_score": ATTN_SCORE, "attn_av": ATTN_AV, "softmax": ATTN_SOFTMAX}


@dataclass(frozen=True)
class Op:
    """One operator of a workload.

    kind:
      - ``gemm``: weight x activation, shape (M, N, K); the weight is (N, K) with N:M pattern
        ``pattern`` along K (``DENSE`` = 1:1 when dense). ``batch`` repeats it.
      - ``matmul``: activation x activation (attention scores, AV): never weight-sparse;
        ``batch`` = independent products (batch x heads).
      - ``elementwise``: ``elements`` outputs, ``flops_per_element`` each, reading
        ``inputs`` tensors and writing one tensor of that many elements (softmax, norms,
        GELU, residual add).
    """

    name: str
    kind: OpKind
    m: int = 0
    n: int = 0
    k: int = 0
    batch: int = 1
    pattern: NM = DENSE
    elements: int = 0
    flops_per_element: float = 0.0
    inputs: int = 1
    dtype: str = "fp16"
    role: str = ""  # e.g. "fc1", "fc2", "qkv", "proj", "head", "attn_score", "softmax"
    count: int = 1  # identical repeats (e.g. per transformer block when blocks are merged)
    causal: bool = False  # attention with a causal mask over a square (q_len == kv_len) score matrix

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, NM):  # "2:4" from a Python caller: parse once, here
            object.__setattr__(self, "pattern", NM.parse(self.pattern))

    @property
    def dense_flops(self) -> int:
        """FLOPs without sparsity: 2*M*N*K per product (one multiply + one add per MAC)."""
        if self.kind == "elementwise":
            return int(round(self.elements * self.flops_per_element)) * self.count
        return 2 * self.m * self.n * self.k * self.batch * self.count


@dataclass
class Workload:
    name: str
    ops: list[Op]
    meta: dict = field(default_factory=dict)  # e.g. {"batch": 1, "seq_len": 197, "phase": "prefill"}
    graph: object | None = None  # networkx.DiGraph of op names, when captured

    def table(self) -> "OpTable":
        return OpTable.from_ops(self.ops)


class OpCode(IntEnum):
    """``OpTable.kind`` codes, one per ``Op.kind``."""

    GEMM = 0
    MATMUL = 1
    ELEMENTWISE = 2


class OpTable(NamedTuple):
    """Struct-of-arrays form of a list of ops (length L), the cost model's input."""

    names: np.ndarray       # (L,) object: op names
    kind: np.ndarray        # (L,) int8: an OpCode
    m: np.ndarray           # (L,) int64
    n: np.ndarray           # (L,) int64
    k: np.ndarray           # (L,) int64
    batch: np.ndarray       # (L,) int64: independent products within one instance
    pat_n: np.ndarray       # (L,) int64: kept per group (1 for dense with pat_m 1)
    pat_m: np.ndarray       # (L,) int64: group size (1 = dense)
    elements: np.ndarray    # (L,) int64 per instance
    flops_per_element: np.ndarray  # (L,) float64
    inputs: np.ndarray      # (L,) int64
    value_bits: np.ndarray  # (L,) int64
    count: np.ndarray       # (L,) int64: identical instances (own weights, own launches); costs scale by it
    dtype_code: np.ndarray  # (L,) int8: index into DTYPES
    attn: np.ndarray        # (L,) int8: ATTN_* part of an attention block (fused profile merges them)
    causal: np.ndarray      # (L,) bool: causal attention (a fused kernel skips the masked half)

    KIND_CODES = {"gemm": OpCode.GEMM, "matmul": OpCode.MATMUL, "elementwise": OpCode.ELEMENTWISE}

    @classmethod
    def from_ops(cls, ops: list[Op]) -> "OpTable":
        def col(values, dtype):
            return np.fromiter(values, dtype=dtype, count=len(ops))

        return cls(
            names=np.array([o.name for o in ops], dtype=object),
            kind=col((cls.KIND_CODES[o.kind] for o in ops), np.int8),
            m=col((o.m for o in ops), np.int64),
            n=col((o.n for o in ops), np.int64),
            k=col((o.k for o in ops), np.int64),
            batch=col((o.batch for o in ops), np.int64),
            pat_n=col((o.pattern.n for o in ops), np.int64),
            pat_m=col((o.pattern.m for o in ops), np.int64),
            elements=col((o.elements for o in ops), np.int64),
            flops_per_element=col((o.flops_per_element for o in ops), np.float64),
            inputs=col((o.inputs for o in ops), np.int64),
            value_bits=col((DTYPE_BITS[o.dtype] for o in ops), np.int64),
            count=col((o.count for o in ops), np.int64),
            dtype_code=col((DTYPES.index(o.dtype) for o in ops), np.int8),
            attn=col((_ATTN_ROLES.get(o.role, ATTN_NONE) for o in ops), np.int8),
            causal=col((o.causal for o in ops), np.bool_),
        )

    @property
    def n_ops(self) -> int:
        return len(self.names)
