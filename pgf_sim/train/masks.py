"""N:M masks: keep the N largest |w| of every group of M consecutive weights along the reduction dim.

Groups (docs/method.md, "Vocabulary"): ``nn.Linear`` weight ``(out, in)``: M consecutive
elements of one row. Conv weight ``(out, in, kh, kw)``: M consecutive input channels at a fixed
``(out, kh, kw)``. A weight stored transposed (Hugging Face GPT-2 ``Conv1D``, ``(in, out)``)
passes ``reduction_dim=0``.

Tie-breaking (deterministic, device independent): among equal |w| inside a group, the element
with the **lower index** (earlier input feature / channel) is kept. NaN magnitudes have no
defined rank. The mask is a pure function of the weight values, so every DDP rank computes the
same mask from the same weights.

Vectorised: no Python loop over groups. Two exact algorithms, chosen by M, N and size
(``_use_pairwise``, measured with benchmarks/bench_masks.py):
- small M (4; 8 with N > 1 on large weights): pairwise ranks. For every pair of positions
  (i < j) of a group, one comparison over all groups at once decides who ranks higher;
  rank < N is kept. M(M-1)/2 tensor ops.
- otherwise: threshold. v = N-th largest |w| of the group (``topk`` values, which
  do not depend on how topk breaks ties); keep |w| > v, plus the first ``N - #(|w| > v)``
  elements equal to v in index order (a cumulative sum).
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch

from ..core.errors import ShapeError
from ..core.pattern import NM


def check_divisible(shape: tuple[int, ...], pattern: NM | str, *, name: str = "weight", reduction_dim: int = 1) -> None:
    """Raise ``ShapeError`` naming the layer and shape if the reduction size is not a multiple of M."""
    pattern = NM.parse(pattern)  # "2:4" strings from Python callers
    if len(shape) < 2:
        raise ShapeError(f"layer {name!r}: weight shape {tuple(shape)} has no reduction dimension for N:M")
    k = shape[reduction_dim]
    if k % pattern.m:
        raise ShapeError(
            f"layer {name!r}: weight shape {tuple(shape)} has reduction size {k} (dim {reduction_dim}), "
            f"not divisible by M={pattern.m} of pattern {pattern}; choose M dividing {k}, "
            "or set skip_indivisible: true to keep this layer dense")


def to_groups(t: torch.Tensor, m: int, reduction_dim: int = 1) -> torch.Tensor:
    """View/copy ``t`` as ``(groups, m)``, the reduction dim moved last. Inverse: ``from_groups``."""
    if reduction_dim != t.dim() - 1:
        t = t.movedim(reduction_dim, -1)  # conv (out, in, kh, kw) -> (out, kh, kw, in)
    return t.reshape(-1, m)


def from_groups(g: torch.Tensor, shape: tuple[int, ...], reduction_dim: int = 1) -> torch.Tensor:
    """Inverse of ``to_groups`` for a tensor of the original ``shape``."""
    if reduction_dim == len(shape) - 1:
        return g.reshape(shape)
    moved = list(shape)
    moved.append(moved.pop(reduction_dim))
    return g.reshape(moved).movedim(-1, reduction_dim)


def _pairwise_rank_keep(a: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """a: (G, m) magnitudes -> (G, m) bool, exact, lower index wins ties."""
    # rank[i] = how many of the group beat position i; j > i beats i only if strictly larger.
    rank = torch.zeros(a.shape, dtype=torch.uint8, device=a.device)
    cols = a.t() if m <= 4 else a.t().contiguous()  # (m, G): contiguous rows pay off from m = 8
    for i in range(m):
        for j in range(i + 1, m):
            j_wins = cols[i] < cols[j]
            rank[:, i] += j_wins
            rank[:, j] += ~j_wins
    return rank < n


def _threshold_keep(a: torch.Tensor, n: int) -> torch.Tensor:
    """a: (G, m) magnitudes -> (G, m) bool, exact, lower index wins ties."""
    if n == 1:
        v = a.amax(dim=1, keepdim=True)
    else:
        v = a.topk(n, dim=1, sorted=False).values.amin(dim=1, keepdim=True)  # (G, 1) N-th largest
    above = a > v
    tied = a == v
    room = n - above.sum(dim=1, keepdim=True, dtype=torch.int32)  # tied slots still free, >= 1
    return above | (tied & (tied.cumsum(dim=1, dtype=torch.int32) <= room))


def _use_pairwise(n: int, m: int, numel: int) -> bool:
    # Measured on CPU (benchmarks/bench_masks.py, 1 thread): pairwise wins for M = 4 and, above
    # ~64k weights, for M = 8 with N > 1; below that its M(M-1)/2 tiny ops cost more than topk.
    large = numel >= 65536
    return (m <= 4 and (n > 1 or large)) or (m <= 8 and n > 1 and large)


def nm_mask(weight: torch.Tensor, pattern: NM | str, *, name: str = "weight", reduction_dim: int = 1) -> torch.Tensor:
    """Bool mask of ``weight``'s shape keeping the ``pattern.n`` largest |w| per group of ``pattern.m``.

    ``name`` appears in the ``ShapeError`` raised when the reduction size is not divisible by M.
    Works under ``torch.no_grad`` semantics (the weight is detached); any float dtype, any device.
    """
    pattern = NM.parse(pattern)  # "2:4" strings from Python callers
    if pattern.is_dense:
        return torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
    check_divisible(tuple(weight.shape), pattern, name=name, reduction_dim=reduction_dim)
    n, m = pattern.n, pattern.m
    a = to_groups(weight.detach().abs(), m, reduction_dim)
    keep = _pairwise_rank_keep(a, n, m) if _use_pairwise(n, m, a.numel()) else _threshold_keep(a, n)
    return from_groups(keep, tuple(weight.shape), reduction_dim).contiguous()


def nm_masks(weights: Sequence[torch.Tensor], pattern: NM | str, *, names: Sequence[str],
             reduction_dims: Sequence[int]) -> list[torch.Tensor]:
    """``nm_mask`` of several weights (same device) in one pass over their concatenated groups.

    Same result as one ``nm_mask`` call per weight; for a model of many small layers it saves
    the fixed per-op cost that dominates small masks (the controller refreshes all layers at once).
    """
    pattern = NM.parse(pattern)  # "2:4" strings from Python callers
    if pattern.is_dense or len(weights) <= 1:
        return [nm_mask(w, pattern, name=n, reduction_dim=d) for w, n, d in zip(weights, names, reduction_dims)]
    for w, name, dim in zip(weights, names, reduction_dims):
        check_divisible(tuple(w.shape), pattern, name=name, reduction_dim=dim)
    n, m = pattern.n, pattern.m
    dtype = functools.reduce(torch.promote_types, [w.dtype for w in weights])  # exact for every input
    groups = [to_groups(w.detach().abs().to(dtype), m, d) for w, d in zip(weights, reduction_dims)]
    a = torch.cat(groups)
    keep = _pairwise_rank_keep(a, n, m) if _use_pairwise(n, m, a.numel()) else _threshold_keep(a, n)
    return [from_groups(k, tuple(w.shape), d).contiguous()
            for k, w, d in zip(keep.split([g.shape[0] for g in groups]), weights, reduction_dims)]


def reference_mask(weight: torch.Tensor, pattern: NM | str, *, reduction_dim: int = 1) -> torch.Tensor:
    """The plain stable-sort formulation of the same mask (one sort per group row, vectorised).

    Slower than ``nm_mask``; kept as the independent reference for tests and the benchmark.
    """
    pattern = NM.parse(pattern)  # "2:4" strings from Python callers
    if pattern.is_dense:
        return torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
    a = to_groups(weight.detach().abs(), pattern.m, reduction_dim)
    order = a.sort(dim=1, descending=True, stable=True).indices[:, : pattern.n]  # stable: lower index first
    keep = torch.zeros(a.shape, dtype=torch.bool, device=a.device).scatter_(1, order, True)
    return from_groups(keep, tuple(weight.shape), reduction_dim).contiguous()


def flip_count(before: torch.Tensor, after: torch.Tensor) -> int:
    """Number of positions whose kept/pruned state differs between two masks of one shape."""
    if before.shape != after.shape:
        raise ShapeError(f"cannot compare masks of shapes {tuple(before.shape)} and {tuple(after.shape)}")
    return int((before != after).sum().item())


def flip_rate(before: torch.Tensor, after: torch.Tensor) -> float:
    """Fraction of positions that flipped (0 = same mask, 1 = every position changed state)."""
    return flip_count(before, after) / max(before.numel(), 1)


def nonzeros_per_group(weight: torch.Tensor, m: int, *, reduction_dim: int = 1) -> torch.Tensor:
    """(G,) count of non-zero weights in each group of ``m`` along the reduction dim."""
    return (to_groups(weight.detach(), m, reduction_dim) != 0).sum(dim=1)


def complies(weight: torch.Tensor, pattern: NM | str, *, reduction_dim: int = 1) -> bool:
    """True if every group of ``pattern.m`` holds at most ``pattern.n`` non-zeros."""
    pattern = NM.parse(pattern)  # "2:4" strings from Python callers
    if pattern.is_dense:
        return True
    if weight.shape[reduction_dim] % pattern.m:
        return False
    return bool((nonzeros_per_group(weight, pattern.m, reduction_dim=reduction_dim) <= pattern.n).all())
