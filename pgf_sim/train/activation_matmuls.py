"""Attention's own matmuls (activation x activation) in one forward pass, for the FLOPs count.

Weight GEMMs are found by hooks on weight layers (``trainer.gemm_layers``); ``Q K^T`` and ``A V``
multiply two activations and belong to no layer, so they are caught at the torch-function level
during one forward pass of an example (``torch.overrides.TorchFunctionMode``):

- ``F.scaled_dot_product_attention(q, k, v, is_causal=...)`` (pgf_sim's models, timm's fused
  attention, Hugging Face "sdpa"): ``q (..., Tq, d)``, ``k (..., Tk, d)``, ``v (..., Tk, dv)`` give ``Q K^T`` = (Tq, d) x
  (d, Tk) and ``A V`` = (Tq, Tk) x (Tk, dv) over ``prod(q.shape[:-2])`` examples x heads.
  ``is_causal=True``: counted as half the square (``flops.py``). An explicit ``attn_mask`` is
  counted in full: the kernel computes the whole square and masks it.
- ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``):
  read from its arguments, since it dispatches as one function (a torch-function mode does not
  see inside it). Causal when torch itself passes ``is_causal`` on to its SDPA call: the
  ``is_causal`` hint with no key-padding mask and ``need_weights=False``.
- A batched matmul (``@``, ``torch.matmul``, ``bmm``, ``baddbmm``) of two tensors of >= 3
  dimensions, neither a parameter: attention written out by hand (timm's unfused path, Hugging
  Face "eager", ``nn.MultiheadAttention`` returning its weights). Counted in full: such code
  computes the whole square even when it masks it afterwards. ``einsum`` is not parsed.
"""
from __future__ import annotations

import math

import torch
from torch.overrides import TorchFunctionMode

from pgf_sim.sparsity.flops import ActivationMatmul

_SDPA = torch.nn.functional.scaled_dot_product_attention
_MHA = torch.nn.functional.multi_head_attention_forward
_MATMULS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm}
_ADD_MATMULS = {torch.baddbmm, torch.Tensor.baddbmm}  # (input, batch1, batch2)


def _activation(t: object) -> bool:
    return (isinstance(t, torch.Tensor) and t.dim() >= 3 and not isinstance(t, torch.nn.Parameter)
            and not isinstance(getattr(t, "_base", None), torch.nn.Parameter))


class _Recorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[ActivationMatmul] = []
        self.calls = 0  # attention calls seen, for the names

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _SDPA:
            self._sdpa(*args, **kwargs)
        elif func is _MHA:
            self._mha(*args, **kwargs)
        elif func in _MATMULS or func in _ADD_MATMULS:
            a, b = args[1:3] if func in _ADD_MATMULS else args[:2]
            if _activation(a) and _activation(b):
                batch = math.prod(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
                self.found.append(ActivationMatmul(f"matmul[{len(self.found)}]", batch, a.shape[-2],
                                                   a.shape[-1], b.shape[-1]))
        return func(*args, **kwargs)

    def _sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *_, **__) -> None:
        self._add(math.prod(query.shape[:-2]), query.shape[-2], query.shape[-1], key.shape[-2], value.shape[-1],
                  bool(is_causal) and attn_mask is None)

    def _mha(self, query, key, value, embed_dim, heads, *args, **kwargs) -> None:
        names = ("in_proj_weight", "in_proj_bias", "bias_k", "bias_v", "add_zero_attn", "dropout_p",
                 "out_proj_weight", "out_proj_bias", "training", "key_padding_mask", "need_weights")
        opts = {**dict(zip(names, args)), **kwargs}
        batch = query.shape[1] if query.dim() == 3 else 1  # (L, N, E) or unbatched (L, E)
        keys = key.shape[0] + (opts.get("bias_k") is not None) + bool(opts.get("add_zero_attn", False))
        causal = (bool(opts.get("is_causal", False)) and opts.get("key_padding_mask") is None
                  and not opts.get("need_weights", True))
        hd = embed_dim // heads
        self._add(batch * heads, query.shape[0], hd, keys, hd, causal)

    def _add(self, batch: int, tq: int, d: int, tk: int, dv: int, causal: bool) -> None:
        i, self.calls = self.calls, self.calls + 1
        self.found += [ActivationMatmul(f"attention[{i}].qk", batch, tq, d, tk, causal),
                       ActivationMatmul(f"attention[{i}].av", batch, tq, tk, dv, causal)]


def activation_matmuls(model: torch.nn.Module, example: torch.Tensor, batch: int) -> list[ActivationMatmul]:
    """The activation x activation matmuls of one training step of ``batch`` examples: one
    forward pass of ``example[:1]`` in eval mode (no dropout, no RNG drawn), with gradients
    enabled so that ``nn.TransformerEncoderLayer`` takes its module-by-module path rather than
    the fused inference kernel, each matmul's batch scaled by ``batch``."""
    recorder = _Recorder()
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad(), recorder:
            model(example[:1])
    finally:
        model.train(was_training)
    return [a._replace(batch=a.batch * batch) for a in recorder.found]
