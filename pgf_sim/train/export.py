"""Compressed N:M export of a finalized model (safetensors) and its exact loader.

Format ``pgf_sim.nm.v1``. For every sparse weight with state-dict key ``K`` and pattern N:M,
groups taken as in ``masks.to_groups`` (M consecutive weights along the reduction dim):

- ``K.values``: (G, N) the kept values in the weight's dtype, in increasing index order;
- ``K.indices``: the (G, N) in-group positions (0..M-1), ``ceil(log2 M)`` bits each, packed
  little-endian (value bit b of index i lands in bit ``(i*bits + b) % 8`` of byte
  ``(i*bits + b) // 8``) into a flat uint8 tensor, as NVIDIA's 2-bit ``mma.sp`` metadata does for 2:4.

Every other state-dict tensor (biases, dense layers, norms, embeddings) is stored as is. The
safetensors metadata ``nm`` holds JSON ``{K: {"pattern", "shape", "dtype", "reduction_dim"}}``.
``load_compressed`` scatters the values back into zeros: bit-exact for a weight whose pruned
entries are +0.0 (what ``SparseController.finalize`` writes).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..core.errors import ConfigError, ShapeError
from ..core.files import atomic_write
from ..core.pattern import NM
from .masks import complies, from_groups, nm_mask, to_groups
from .sparsify import weight_params

FORMAT = "pgf_sim.nm.v1"


def pack_bits(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Flat uint8 packing of non-negative ints < 2**bits, ``bits`` each, little-endian."""
    flat = values.reshape(-1).to(torch.int64)
    if bits == 0:
        return torch.zeros(0, dtype=torch.uint8)
    if flat.numel() and int(flat.max()) >> bits:
        raise ValueError(f"values do not fit in {bits} bits")
    bitplane = (flat[:, None] >> torch.arange(bits)) & 1  # (L, bits)
    stream = bitplane.reshape(-1)
    pad = (-stream.numel()) % 8
    stream = torch.cat([stream, stream.new_zeros(pad)]).reshape(-1, 8)
    return (stream << torch.arange(8)).sum(dim=1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of ``pack_bits``: the first ``count`` values as int64."""
    if bits == 0:
        return torch.zeros(count, dtype=torch.int64)
    stream = ((packed.to(torch.int64)[:, None] >> torch.arange(8)) & 1).reshape(-1)[: count * bits]
    return (stream.reshape(count, bits) << torch.arange(bits)).sum(dim=1)


@dataclass(frozen=True)
class LayerBytes:
    """One N:M weight in the export: values + packed indices vs the same weight stored dense."""

    key: str
    pattern: NM
    shape: tuple[int, ...]
    compressed_bytes: int
    dense_bytes: int


@dataclass(frozen=True)
class ExportReport:
    path: Path
    compressed_bytes: int  # all tensors in the file (values + packed indices + dense tensors)
    dense_bytes: int  # the same state dict stored dense
    sparse_weight_bytes: int  # values + indices of the N:M weights
    sparse_weight_dense_bytes: int  # those weights stored dense
    file_bytes: int
    layers: tuple[LayerBytes, ...] = ()

    @property
    def ratio(self) -> float:
        return self.compressed_bytes / self.dense_bytes if self.dense_bytes else 1.0

    def summary(self) -> str:
        sparse = (self.sparse_weight_bytes / self.sparse_weight_dense_bytes) if self.sparse_weight_dense_bytes else 1.0
        return (f"{self.path}: {self.compressed_bytes / 1e6:.3f} MB of tensors vs {self.dense_bytes / 1e6:.3f} MB "
                f"dense ({self.ratio:.1%}); N:M weights {sparse:.1%} of their dense size; file {self.file_bytes / 1e6:.3f} MB")


def _state_keys(model: nn.Module) -> dict[str, tuple[str, int]]:
    """layer name (as ``weight_params``) -> (state-dict key, reduction dim)."""
    names = {id(mod): mod_name for mod_name, mod in model.named_modules()}
    out = {}
    for name, (module, param, rd) in weight_params(model).items():
        prefix = names[id(module)]
        out[name] = (f"{prefix}.{param}" if prefix else param, rd)
    return out


def _bits(t: torch.Tensor) -> torch.Tensor:
    """Floats viewed as same-size integers: compares bits (-0.0 != +0.0), not values."""
    if t.dtype == torch.bool or not t.dtype.is_floating_point:
        return t.contiguous()
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.contiguous().view(ints)


def _nonzero_bits(t: torch.Tensor) -> torch.Tensor:
    return _bits(t) != 0


def export_compressed(model: nn.Module, path: str | Path, patterns: Mapping[str, NM]) -> ExportReport:
    """Write ``model`` (finalized: plain weights with N:M zero structure) to ``path``.

    ``patterns``: layer name -> N:M, e.g. ``controller.target_patterns()``; layers not listed or
    dense are stored as is. A weight that does not satisfy its pattern is an error (finalize first).
    """
    from safetensors.torch import save

    keys = _state_keys(model)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    unknown = sorted(set(patterns) - set(keys))
    if unknown:
        raise ConfigError(f"export: no weight layer named {unknown}; layers: {sorted(keys)}")
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, dict] = {}
    sparse_bytes = sparse_dense_bytes = 0
    layers: list[LayerBytes] = []
    for name, pattern in patterns.items():
        pattern = NM.parse(pattern)  # "2:4" strings from Python callers
        key, rd = keys[name]
        if pattern.is_dense:
            continue
        if key not in state:
            raise ConfigError(f"export: {key!r} is not in the state dict; call controller.finalize() first")
        w = state.pop(key).cpu()
        # Stored positions: every entry whose bits are not +0.0 (so a kept -0.0 survives too),
        # topped up with +0.0 entries, lower index first; at most N such entries per group.
        stored = _nonzero_bits(w).to(torch.float32)
        if not complies(stored, pattern, reduction_dim=rd):
            raise ShapeError(f"export: layer {name!r} weight {tuple(w.shape)} is not {pattern} sparse; "
                             "call controller.finalize() before exporting")
        keep = to_groups(nm_mask(stored, pattern, name=name, reduction_dim=rd), pattern.m, rd)  # (G, m)
        idx = keep.nonzero()[:, 1].reshape(-1, pattern.n)  # row-major: increasing index per group
        values = to_groups(w, pattern.m, rd).gather(1, idx).contiguous()
        packed = pack_bits(idx, pattern.index_bits)
        tensors[f"{key}.values"], tensors[f"{key}.indices"] = values, packed
        meta[key] = {"pattern": str(pattern), "shape": list(w.shape), "dtype": str(w.dtype).removeprefix("torch."),
                     "reduction_dim": rd}
        layer_bytes = LayerBytes(key, pattern, tuple(w.shape), values.numel() * values.element_size() + packed.numel(),
                                 w.numel() * w.element_size())
        layers.append(layer_bytes)
        sparse_bytes += layer_bytes.compressed_bytes
        sparse_dense_bytes += layer_bytes.dense_bytes
    for key, value in state.items():
        tensors[key] = value.cpu().contiguous().clone()  # clone: safetensors refuses shared storage
    path = Path(path)
    # serialised in memory, then written atomically: a full disk never leaves half a file
    atomic_write(path, save(tensors, metadata={"format": FORMAT, "nm": json.dumps(meta, sort_keys=True)}))
    compressed = sum(t.numel() * t.element_size() for t in tensors.values())
    dense = compressed - sparse_bytes + sparse_dense_bytes
    return ExportReport(path, compressed, dense, sparse_bytes, sparse_dense_bytes, path.stat().st_size, tuple(layers))


def read_compressed(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, NM]]:
    """The dense state dict rebuilt from ``path``, and the N:M pattern of each compressed key."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ConfigError(f"{path}: not a pgf_sim compressed export (format {meta.get('format')!r}, "
                                  f"expected {FORMAT!r})")
            raw = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"{path}: not a readable safetensors file ({exc})") from None
    layers = json.loads(meta["nm"])
    state, patterns = {}, {}
    for key, info in layers.items():
        pattern, shape, rd = NM.parse(info["pattern"]), tuple(info["shape"]), info["reduction_dim"]
        values = raw.pop(f"{key}.values")
        groups = math.prod(shape) // pattern.m
        idx = unpack_bits(raw.pop(f"{key}.indices"), pattern.index_bits, groups * pattern.n).reshape(groups, pattern.n)
        dense = torch.zeros((groups, pattern.m), dtype=values.dtype).scatter_(1, idx, values)
        state[key] = from_groups(dense, shape, rd).contiguous()
        patterns[key] = pattern
    state.update(raw)
    return state, patterns


def load_compressed(path: str | Path, model: nn.Module) -> dict[str, NM]:
    """Load ``path`` into a plain (not sparsified) ``model`` exactly; returns key -> N:M pattern."""
    state, patterns = read_compressed(path)
    model.load_state_dict(state, strict=True)
    return patterns


def trained_patterns(model: nn.Module, recipe) -> dict[str, NM]:
    """Layer name -> target N:M of a model trained (and finalized) under ``recipe`` (a
    ``RecipeConfig``): the layers ``sparsify`` made sparse, per-layer targets included. A layer
    ``skip_indivisible`` left dense (some pattern of its schedule does not divide it) is left out."""
    from .sparsify import select_layers

    if not recipe.spec.sparse:
        return {}
    return {layer.name: layer.target for layer in select_layers(model, recipe)[0]}


def mismatches(path: str | Path, reference: nn.Module, fresh: nn.Module) -> list[str]:
    """Load ``path`` into ``fresh`` (same architecture, other weights) and list the state-dict
    keys whose tensor differs from ``reference``'s in dtype, shape or any bit (``-0.0 != +0.0``,
    NaN payloads compared too). Empty: the export reloads bit-exactly."""
    load_compressed(path, fresh)
    ref, got = reference.state_dict(), fresh.state_dict()
    bad = sorted(set(ref) ^ set(got))
    for key in sorted(set(ref) & set(got)):
        a, b = ref[key].detach().cpu(), got[key].detach().cpu()
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(_bits(a), _bits(b)):
            bad.append(key)
    return bad
