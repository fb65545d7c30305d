"""The user's own model and data, named in the experiment YAML by import path.

``model: {factory: "my_pkg.models:build", options: {width: 128}}`` calls
``build(width=128)`` (plus ``spec=<DataSpec>`` when ``build`` has a ``spec`` parameter) and
expects an ``nn.Module``. ``data: {factory: "my_pkg.data:load", options: {...}}`` calls
``load(**options)`` and expects a mapping with ``train`` and ``test`` (``val`` optional: else
carved from train by ``data.val_fraction``), each a map-style ``Dataset`` of (x, y) pairs, a
``DataLoader`` yielding (x, y) batches, or an ``(x, y)`` pair of tensors; optional keys
``num_classes`` and ``vocab_size``. A ready ``TensorData`` is accepted as is.

The splits are read once into memory, so the trainer's own deterministic batch order (a pure
function of seed and step) still holds and resume stays bit-exact. Kind of task, from the
tensors: floating (N, C, H, W) -> image; integer (N, T) with (N,) labels -> tokens; integer
(N, T) with (N, T) targets -> next-token (lm); anything else -> tensor.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pgf_sim.core import ConfigError
from pgf_sim.core.imports import resolve_factory
from pgf_sim.train.data_types import DataSpec, TensorData
from pgf_sim.train.datacheck import check_splits
from pgf_sim.train.experiment import DataConfig, ModelConfig


def model_from_factory(cfg: ModelConfig, spec: DataSpec) -> nn.Module:
    fn = resolve_factory(cfg.factory, "model.factory")
    kwargs = dict(cfg.options)
    if "spec" in _parameters(fn):
        kwargs["spec"] = spec
    model = _call(fn, kwargs, "model", cfg.factory, cfg.options)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.factory {cfg.factory!r} returned a {type(model).__name__}, not a torch nn.Module")
    return model


def data_from_factory(cfg: DataConfig) -> TensorData:
    fn = resolve_factory(cfg.factory, "data.factory")
    out = _call(fn, dict(cfg.options), "data", cfg.factory, cfg.options)
    if isinstance(out, TensorData):
        return out
    if not isinstance(out, Mapping) or "train" not in out or "test" not in out:
        raise ConfigError(f"data.factory {cfg.factory!r} must return a mapping with 'train' and 'test' "
                          f"(and optionally 'val', 'num_classes', 'vocab_size'), got {type(out).__name__}")
    unknown = sorted(set(out) - {"train", "val", "test", "num_classes", "vocab_size"})
    if unknown:
        raise ConfigError(f"data.factory {cfg.factory!r}: unknown key(s) {unknown}; valid: train, val, test, "
                          "num_classes, vocab_size")
    splits = {k: _tensors(out[k], f"data.factory {cfg.factory!r} split {k!r}") for k in ("train", "val", "test") if k in out}
    where = f"data.factory {cfg.factory!r}"
    declared = {k: _count(out.get(k), f"{where} {k}") for k in ("num_classes", "vocab_size")}
    check_splits(splits, declared["num_classes"], where)
    tr_x, tr_y = splits["train"]
    kind = _kind(tr_x, tr_y)
    ys = torch.cat([y.reshape(-1) for _, y in splits.values()])
    num_classes = declared["num_classes"] or int(ys.max()) + 1
    vocab = declared["vocab_size"] or (int(max(x.max() for x, _ in splits.values())) + 1
                                       if kind in ("tokens", "lm") else 0)
    spec = DataSpec(kind, tuple(tr_x.shape[1:]), num_classes, vocab_size=vocab)
    val = splits.get("val", (None, None))
    te_x, te_y = splits["test"]
    return TensorData(spec, tr_x, tr_y.long(), te_x, te_y.long(), val_x=val[0],
                      val_y=None if val[1] is None else val[1].long())


def _call(fn: Any, kwargs: dict[str, Any], section: str, path: str, options: Any) -> Any:
    """``fn(**kwargs)``; whatever it raises is one line naming the factory (the user's code)."""
    try:
        return fn(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{section}.factory {path!r} rejected {section}.options {sorted(options)}: {exc}") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - the user's factory failed: name it, keep one line
        first = (str(exc).splitlines() or [""])[0][:200]
        raise ConfigError(f"{section}.factory {path!r} raised {type(exc).__name__}: {first}") from None


def _count(value: Any, where: str) -> int | None:
    """A declared ``num_classes`` / ``vocab_size``: a whole number in [1, 2**31 - 1], or absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**31 - 1:
        raise ConfigError(f"{where} must be a whole number in [1, 2147483647], got {value!r}")
    return value


def _parameters(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # builtins without a signature
        return set()


def _kind(x: torch.Tensor, y: torch.Tensor) -> str:
    if x.is_floating_point() and x.ndim == 4:
        return "image"
    if not x.is_floating_point() and x.ndim == 2:
        return "lm" if y.shape == x.shape else "tokens"
    return "tensor"


def _tensors(obj: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) tensors of one split: a tensor pair, a DataLoader, or a map-style Dataset."""
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(t, torch.Tensor) for t in obj):
        x, y = obj
    elif isinstance(obj, torch.utils.data.DataLoader):
        batches = [_pair(b, where) for b in obj]  # its own order; our sampler reshuffles per step
        if not batches:
            raise ConfigError(f"{where}: the DataLoader yields no batches")
        x, y = torch.cat([bx for bx, _ in batches]), torch.cat([by for _, by in batches])
    elif hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        if len(obj) == 0:
            raise ConfigError(f"{where}: the Dataset is empty")
        items = [_pair(obj[i], where) for i in range(len(obj))]
        x = torch.stack([torch.as_tensor(a) for a, _ in items])
        y = torch.stack([torch.as_tensor(b) for _, b in items])
    else:
        raise ConfigError(f"{where}: expected a Dataset, a DataLoader or an (x, y) pair of tensors, "
                          f"got {type(obj).__name__}")
    if len(x) != len(y):
        raise ConfigError(f"{where}: {len(x)} inputs but {len(y)} labels")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ConfigError(f"{where}: labels must be integer class ids (cross-entropy), got {y.dtype}")
    return x, y


def _pair(item: Any, where: str) -> tuple[Any, Any]:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return torch.as_tensor(item[0]), torch.as_tensor(item[1])
    raise ConfigError(f"{where}: items must be (input, label) pairs, got {type(item).__name__}")
