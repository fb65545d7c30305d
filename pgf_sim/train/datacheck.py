"""The user's own data and model, checked before step 1 (torch).

A factory's tensors reach the trainer as they are, so what would otherwise surface as a torch
traceback at step 1 (or, worse, as a silent "100%" on boolean labels) is checked here first:
label dtype and range, input dtype, matching shapes across splits, finite values, and one
forward pass whose output must have a logit per class.
"""
from __future__ import annotations

from typing import Any

import torch

from pgf_sim.core import ConfigError

_INPUT_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8,
                 torch.int16, torch.int32, torch.int64}
_LABEL_DTYPES = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}


def check_splits(splits: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int | None, where: str) -> None:
    """``splits``: name -> (x, y). ``num_classes``: what the factory declared (None: inferred)."""
    first_name, (first_x, first_y) = next(iter(splits.items()))
    for name, (x, y) in splits.items():
        at = f"{where} split {name!r}"
        if x.dtype not in _INPUT_DTYPES:
            raise ConfigError(f"{at}: inputs are {x.dtype}; give floating-point values or integer token ids")
        if y.dtype not in _LABEL_DTYPES:
            kind = "boolean" if y.dtype == torch.bool else str(y.dtype)
            raise ConfigError(f"{at}: labels are {kind}; give integer class ids 0..C-1 (torch.long)")
        if len(x) == 0:
            raise ConfigError(f"{at}: the split is empty")
        if x.shape[1:] != first_x.shape[1:]:
            raise ConfigError(f"{at}: inputs have shape {tuple(x.shape[1:])} per example but split "
                              f"{first_name!r} has {tuple(first_x.shape[1:])}")
        if y.shape[1:] != first_y.shape[1:]:
            raise ConfigError(f"{at}: labels have shape {tuple(y.shape[1:])} per example but split "
                              f"{first_name!r} has {tuple(first_y.shape[1:])}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ConfigError(f"{at}: inputs hold NaN or infinite values ({int((~torch.isfinite(x)).sum())} of them)")
        if not x.is_floating_point() and int(x.min()) < 0:
            raise ConfigError(f"{at}: integer inputs are token ids and must be >= 0, found {int(x.min())}")
        low, high = int(y.min()), int(y.max())
        if low < 0:
            raise ConfigError(f"{at}: labels must be class ids >= 0, found {low}")
        if num_classes is not None and high >= num_classes:
            raise ConfigError(f"{at}: label {high} is out of range for num_classes={num_classes} (ids 0..{num_classes - 1})")


def check_model_output(model: torch.nn.Module, data: Any, where: str) -> None:
    """One forward pass of two training examples (eval mode, no gradient, RNG untouched): the
    output must be (batch, ..., classes) with a logit for every class the labels use."""
    x, y = data.train_x[:2], data.train_y[:2]
    prepare = getattr(data, "prepare", None)
    x = prepare(x) if prepare is not None else x
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = model(x)
    except Exception as exc:  # noqa: BLE001 - the user's model failed on the user's data: one line naming both
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ConfigError(f"{where}: the model fails on one training batch (inputs {tuple(x.shape)} {x.dtype}): "
                          f"{type(exc).__name__}: {first}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"{where}: the model returns a {type(out).__name__}, not a tensor of logits")
    if out.shape[:y.dim()] != y.shape or out.dim() != y.dim() + 1:
        raise ConfigError(f"{where}: the model's output {tuple(out.shape)} does not match labels {tuple(y.shape)} "
                          "(expected labels' shape + one class dimension)")
    classes = int(data.spec.num_classes)
    if out.shape[-1] < classes:
        raise ConfigError(f"{where}: the model gives {out.shape[-1]} outputs per example but the labels use "
                          f"{classes} classes")
    if not bool(torch.isfinite(out).all()):
        raise ConfigError(f"{where}: the model's output on one training batch holds NaN or infinite values")
