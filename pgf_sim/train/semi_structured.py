"""Deploying a finalized 2:4 model on NVIDIA GPUs with PyTorch's own semi-structured sparse
format (``torch.sparse.to_sparse_semi_structured``: 2:4 sparse tensor-core kernels through
CUTLASS or cuSPARSELt, compute capability 8.0 (Ampere) and newer).

``to_semi_structured(model)`` replaces the weight of every ``nn.Linear`` whose weight keeps at
most 2 of every 4 consecutive inputs (what ``SparseController.finalize()`` leaves for a 2:4
target) with a ``SparseSemiStructuredTensor``; the forward then runs the sparse kernel.
``semi_structured_problems(model)`` says, per layer, why a layer cannot be converted (device,
dtype, shape, pattern) without converting anything, so the same rules are checked on a machine
without a GPU.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core import ConfigError

#: (rows, cols) the weight's two dimensions must each be a multiple of, per dtype: the CUTLASS
#: backend's ``sparse_min_rows`` / ``sparse_min_cols`` in torch/sparse/semi_structured.py
#: (torch 2.4 - 2.14); cuSPARSELt accepts these shapes too.
SHAPE_MULTIPLES = {torch.float16: (32, 64), torch.bfloat16: (32, 64), torch.int8: (16, 128), torch.float32: (32, 32)}
MIN_CAPABILITY = (8, 0)


def is_2_4(weight: torch.Tensor) -> bool:
    """At most 2 nonzeros in every group of 4 consecutive elements of each row (the input
    dimension of an ``nn.Linear`` weight ``(out, in)``); ``in`` must be divisible by 4."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight.detach() != 0).reshape(weight.shape[0], -1, 4).sum(-1) <= 2).all())


def semi_structured_problems(model: nn.Module, *, device: torch.device | str | None = None) -> dict[str, str]:
    """Layer name -> why its weight cannot become a semi-structured tensor, for every
    ``nn.Linear`` of ``model``; an empty dict means all of them can. ``device``: where the
    model would run (default: where its first parameter is)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    problems = {}
    gpu = _gpu_problem(device)
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        w = module.weight
        multiple = SHAPE_MULTIPLES.get(w.dtype)
        if not is_2_4(w):
            problems[name] = f"weight {tuple(w.shape)} is not 2:4 (more than 2 nonzeros in some group of 4 inputs)"
        elif multiple is None:
            problems[name] = f"dtype {w.dtype} unsupported; valid: {', '.join(str(d) for d in SHAPE_MULTIPLES)}"
        elif w.shape[0] % multiple[0] or w.shape[1] % multiple[1]:
            problems[name] = (f"shape {tuple(w.shape)} is not a multiple of {multiple} (rows, cols) required for "
                              f"{w.dtype}")
        elif gpu:
            problems[name] = gpu
    return problems


def _gpu_problem(device: torch.device) -> str:
    if device.type != "cuda":
        return f"the model is on {device}; the semi-structured kernels run on CUDA only"
    if not torch.cuda.is_available():
        return "CUDA is not available in this PyTorch build or machine"
    cap = torch.cuda.get_device_capability(device)
    if cap < MIN_CAPABILITY:
        return f"GPU compute capability {cap[0]}.{cap[1]} < 8.0 (2:4 sparse tensor cores start with Ampere)"
    return ""


def to_semi_structured(model: nn.Module, layers: list[str] | None = None) -> list[str]:
    """Convert the 2:4 ``nn.Linear`` weights of ``model`` (or the named ``layers``) in place to
    semi-structured sparse tensors (frozen: inference only); returns the converted names.

    Raises ``ConfigError`` naming each requested layer that cannot be converted and why (not a
    CUDA device of capability >= 8.0, dtype, shape, or not 2:4); with ``layers=None`` the
    layers that are not 2:4 (e.g. the dense head) are left as they are, the rest must convert.
    """
    from torch.sparse import to_sparse_semi_structured

    problems = semi_structured_problems(model)
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if layers is None:
        wanted = [n for n in linear if not problems.get(n, "").startswith("weight ")]
    else:
        unknown = sorted(set(layers) - set(linear))
        if unknown:
            raise ConfigError(f"not nn.Linear layers of the model: {', '.join(unknown)}; valid: {', '.join(linear)}")
        wanted = list(layers)
    bad = {n: problems[n] for n in wanted if n in problems}
    if bad:
        raise ConfigError("cannot convert to PyTorch's semi-structured 2:4 format: " +
                          "; ".join(f"{n}: {why}" for n, why in bad.items()))
    if not wanted:
        raise ConfigError("no 2:4 nn.Linear weight in the model: finalize() a model trained with a 2:4 target first")
    modules = dict(model.named_modules())
    for name in wanted:
        mod = modules[name]
        mod.weight = nn.Parameter(to_sparse_semi_structured(mod.weight.detach().contiguous()), requires_grad=False)
    return wanted
