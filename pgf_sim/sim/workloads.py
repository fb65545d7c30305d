"""Built-in transformer architectures as op lists, and single-GEMM workloads (no torch).

``build_workload("vit_b", batch=1, seq_len=None, pattern=NM(1, 8))`` lists every operator of a
forward pass (or an inference phase) with its GEMM shape, the weight N:M pattern it carries and
its role. Which layers are sparse follows docs/method.md "Which layers": the MLP of every block
gets ``pattern``; Q/K/V get ``qkv_pattern`` when given; patch embedding, attention output
projection and head stay dense; attention score/AV products are activation x activation and are
never weight-sparse.

Shapes follow ``ops.py``: a GEMM is ``(M, N, K)`` = (tokens, out features, reduction).
Attention products use ``batch`` = batch x KV heads and ``m`` = (query heads per KV head) x query
tokens, so grouped-query attention reads each cached K/V once per KV head.

Element-wise FLOP counts per element follow the DeepSpeed flops profiler
(``deepspeed/profiling/flops_profiler/profiler.py``: layer_norm 5 with affine, gelu/relu/silu,
softmax and add 1 per element); RMSNorm (4: square, accumulate, scale by rsqrt, weight) and RoPE
(3: two multiplies, one add) are our own counts. These ops are memory-bound; their FLOPs barely
matter for time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from ..core.errors import ConfigError, ShapeError
from ..core.pattern import DENSE, NM
from ..core.registry import Registry
from ..sparsity.roles import MLP_ROLES, QKV_ROLES
from .ops import DTYPE_BITS, Op, Workload

FLOPS_PER_ELEMENT = {"layernorm": 5.0, "rmsnorm": 4.0, "gelu": 1.0, "relu": 1.0, "silu": 1.0,
                     "tanh": 1.0, "softmax": 1.0, "add": 1.0, "mul": 1.0, "rope": 3.0}
PHASES = ("forward", "prefill", "decode")
Phase = Literal["forward", "prefill", "decode"]

MAX_DIM = 2**31 - 1  # batch, sequence length and GEMM sizes: beyond int32 no kernel or array takes them


@dataclass(frozen=True)
class Arch:
    """Hyper-parameters of a built-in transformer. ``source`` says where they were read."""

    name: str
    family: Literal["vit", "encoder", "decoder", "encdec"]
    layers: int
    d_model: int
    heads: int
    ffn: int
    source: str
    kv_heads: int | None = None          # grouped-query attention; None = heads
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    mlp: Literal["gelu", "relu", "swiglu"] = "gelu"
    fused_qkv: bool = False              # one (3d x d) projection, as in timm ViT and GPT-2
    bias: bool = True
    pre_norm: bool = True                # BERT is post-norm
    vocab: int = 0
    learned_positions: int = 0           # rows of a learned position table (0: none / relative / RoPE)
    type_vocab: int = 0                  # BERT token types
    tied_head: bool = True
    decoder_layers: int = 0              # encoder-decoder models
    rel_pos_buckets: int = 0             # T5 relative attention bias (first block of each stack)
    rope: bool = False
    patch_size: int = 0
    image_size: int = 0
    channels: int = 3
    num_classes: int = 0
    default_seq_len: int = 0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def vit_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1  # patches + class token


ARCHS: Registry[Arch] = Registry("model")


def _vit(name: str, layers: int, d: int, heads: int) -> None:
    ARCHS.add(name, Arch(name, "vit", layers, d, heads, 4 * d, fused_qkv=True, patch_size=16,
                         image_size=224, num_classes=1000, default_seq_len=197,
                         source="Dosovitskiy et al. 2021 (ViT) Table 1; Ti/S from Touvron et al. 2021 "
                                "(DeiT) Table 1; timm vit_*_patch16_224 module layout"))


_vit("vit_ti", 12, 192, 3)
_vit("vit_s", 12, 384, 6)
_vit("vit_b", 12, 768, 12)
_vit("vit_l", 24, 1024, 16)
ARCHS.add("bert_base", Arch(
    "bert_base", "encoder", 12, 768, 12, 3072, pre_norm=False, vocab=30522, learned_positions=512,
    type_vocab=2, default_seq_len=512,
    source="Devlin et al. 2019 (BERT-base); HF bert-base-uncased config.json"))
ARCHS.add("t5_base", Arch(
    "t5_base", "encdec", 12, 768, 12, 3072, norm="rmsnorm", mlp="relu", bias=False, vocab=32128,
    decoder_layers=12, rel_pos_buckets=32, default_seq_len=512,
    source="Raffel et al. 2020 (T5-base); HF t5-base config.json (T5 v1.0: ReLU, tied head)"))
ARCHS.add("gpt2", Arch(
    "gpt2", "decoder", 12, 768, 12, 3072, fused_qkv=True, vocab=50257, learned_positions=1024,
    default_seq_len=1024, source="Radford et al. 2019 (GPT-2 small, 124M); HF gpt2 config.json"))
ARCHS.add("llama_7b", Arch(
    "llama_7b", "decoder", 32, 4096, 32, 11008, norm="rmsnorm", mlp="swiglu", bias=False,
    vocab=32000, tied_head=False, rope=True, default_seq_len=2048,
    source="Touvron et al. 2023 (LLaMA 7B) Table 2; HF llama-7b config.json"))


def list_models() -> list[str]:
    return ARCHS.names()


class _Builder:
    """Collects ops, their data dependencies and their parameter counts."""

    def __init__(self, arch: Arch, dtype: str, pattern: NM, qkv_pattern: NM | None) -> None:
        self.arch, self.dtype, self.pattern, self.qkv_pattern = arch, dtype, pattern, qkv_pattern
        self.ops: list[Op] = []
        self.edges: list[tuple[str, str]] = []
        self.params = 0
        self.sparse_params = 0

    def _add(self, op: Op, deps: tuple[str, ...], params: int = 0) -> str:
        self.ops.append(op)
        self.edges.extend((d, op.name) for d in deps if d)
        self.params += params
        return op.name

    def gemm(self, name: str, role: str, m: int, n: int, k: int, *deps: str, tied: bool = False) -> str:
        pattern = DENSE
        if role in MLP_ROLES:
            pattern = self.pattern
        elif role in QKV_ROLES and self.qkv_pattern is not None:
            pattern = self.qkv_pattern
        if not pattern.is_dense and k % pattern.m:
            raise ShapeError(f"layer {name} ({role}): reduction dim K={k} (weight {n}x{k}) is not "
                             f"divisible by M={pattern.m} of pattern {pattern}")
        params = 0 if tied else n * k + (n if self.arch.bias else 0)
        if not pattern.is_dense:
            self.sparse_params += n * k
        return self._add(Op(name, "gemm", m=m, n=n, k=k, pattern=pattern, dtype=self.dtype, role=role),
                         deps, params)

    def matmul(self, name: str, role: str, batch: int, m: int, n: int, k: int, *deps: str, causal: bool = False) -> str:
        return self._add(Op(name, "matmul", m=m, n=n, k=k, batch=batch, dtype=self.dtype, role=role, causal=causal), deps)

    def eltwise(self, name: str, role: str, elements: int, flops: float, *deps: str,
                inputs: int = 1, params: int = 0) -> str:
        return self._add(Op(name, "elementwise", elements=elements, flops_per_element=flops,
                            inputs=inputs, dtype=self.dtype, role=role), deps, params)

    def norm(self, name: str, tokens: int, dep: str) -> str:
        kind = self.arch.norm
        per_feature = 2 if kind == "layernorm" else 1  # LayerNorm has weight+bias, RMSNorm weight
        return self.eltwise(name, kind, tokens * self.arch.d_model, FLOPS_PER_ELEMENT[kind], dep,
                            params=per_feature * self.arch.d_model)


@dataclass(frozen=True)
class _Ctx:
    batch: int
    q_len: int      # new tokens processed per sequence in this pass
    kv_len: int     # keys/values attended to per sequence (cache + new)
    cache: bool     # write new K/V into a cache (prefill/decode)


def _attention(b: _Builder, pfx: str, x: str, ctx: _Ctx, *, kv_src: str | None = None,
               kv_tokens: int | None = None, rel_bias_params: int | None = None) -> str:
    """Self-attention (``kv_src`` None) or cross-attention on ``kv_src`` of ``kv_tokens`` tokens.

    ``rel_bias_params`` not None: add a relative position bias to the scores (T5: the table lives
    in the first block of each stack and is shared by all blocks).
    """
    a = b.arch
    d, hd, kvh = a.d_model, a.head_dim, a.n_kv_heads
    kv_dim = kvh * hd
    tq = ctx.batch * ctx.q_len
    if kv_src is None and a.fused_qkv:
        q = k = v = b.gemm(f"{pfx}.qkv", "qkv", tq, d + 2 * kv_dim, d, x)
    else:
        q = b.gemm(f"{pfx}.q", "q", tq, d, d, x)
        src, new_kv = (x, tq) if kv_src is None else (kv_src, kv_tokens)
        if new_kv:  # cross-attention K/V of an encoder are computed once (prefill), then cached
            k = b.gemm(f"{pfx}.k", "k", new_kv, kv_dim, d, src)
            v = b.gemm(f"{pfx}.v", "v", new_kv, kv_dim, d, src)
        else:
            k = v = ""
    if a.rope and kv_src is None:
        q = k = b.eltwise(f"{pfx}.rope", "rope", tq * (d + kv_dim), FLOPS_PER_ELEMENT["rope"], q)
    if ctx.cache and kv_src is None:
        b.eltwise(f"{pfx}.kv_cache_write", "kv_cache_write", tq * 2 * kv_dim, 0.0, k)
    kv_len = ctx.kv_len if kv_src is None else (kv_tokens or ctx.kv_len)
    group = a.heads // kvh
    # decoder self-attention over its own tokens is causal (a fused kernel skips the masked half)
    causal = kv_src is None and ctx.q_len == kv_len > 1 and (
        (a.family == "decoder" and pfx.startswith("blocks.")) or pfx.startswith("decoder."))
    # (B*kvh) products of (group*q_len, hd) x (hd, kv_len): the K read is the KV-cache read in decode.
    s = b.matmul(f"{pfx}.attn_score", "attn_score", ctx.batch * kvh, group * ctx.q_len, kv_len, hd, q, k,
                 causal=causal)
    scores = ctx.batch * a.heads * ctx.q_len * kv_len
    if rel_bias_params is not None:
        s = b.eltwise(f"{pfx}.rel_bias", "add", scores, FLOPS_PER_ELEMENT["add"], s, inputs=2,
                      params=rel_bias_params)
    p = b.eltwise(f"{pfx}.softmax", "softmax", scores, FLOPS_PER_ELEMENT["softmax"], s)
    o = b.matmul(f"{pfx}.attn_av", "attn_av", ctx.batch * kvh, group * ctx.q_len, hd, kv_len, p, v,
                 causal=causal)
    return b.gemm(f"{pfx}.proj", "proj", tq, d, d, o)


def _mlp(b: _Builder, pfx: str, x: str, tokens: int) -> str:
    a = b.arch
    if a.mlp == "swiglu":
        g = b.gemm(f"{pfx}.gate", "fc1", tokens, a.ffn, a.d_model, x)
        u = b.gemm(f"{pfx}.up", "fc1", tokens, a.ffn, a.d_model, x)
        # silu(gate) * up, fused: two inputs, silu + mul per element
        h = b.eltwise(f"{pfx}.act", "swiglu", tokens * a.ffn, FLOPS_PER_ELEMENT["silu"] + FLOPS_PER_ELEMENT["mul"],
                      g, u, inputs=2)
        return b.gemm(f"{pfx}.down", "fc2", tokens, a.d_model, a.ffn, h)
    h = b.gemm(f"{pfx}.fc1", "fc1", tokens, a.ffn, a.d_model, x)
    h = b.eltwise(f"{pfx}.act", a.mlp, tokens * a.ffn, FLOPS_PER_ELEMENT[a.mlp], h)
    return b.gemm(f"{pfx}.fc2", "fc2", tokens, a.d_model, a.ffn, h)


def _residual(b: _Builder, name: str, tokens: int, x: str, y: str) -> str:
    return b.eltwise(name, "residual", tokens * b.arch.d_model, FLOPS_PER_ELEMENT["add"], x, y, inputs=2)


def _block(b: _Builder, pfx: str, x: str, ctx: _Ctx, *, cross: tuple[str, int | None] | None = None,
           rel_bias_params: int | None = None) -> str:
    """One transformer block: pre-norm (ViT, GPT-2, T5, Llama) or post-norm (BERT)."""
    t = ctx.batch * ctx.q_len
    sublayers = [("attn", lambda h: _attention(b, f"{pfx}.attn", h, ctx, rel_bias_params=rel_bias_params))]
    if cross is not None:
        sublayers.append(("cross_attn", lambda h: _attention(b, f"{pfx}.cross_attn", h, ctx, kv_src=cross[0],
                                                             kv_tokens=cross[1])))
    sublayers.append(("mlp", lambda h: _mlp(b, f"{pfx}.mlp", h, t)))
    for i, (name, fn) in enumerate(sublayers, start=1):
        if b.arch.pre_norm:
            x = _residual(b, f"{pfx}.residual{i}", t, x, fn(b.norm(f"{pfx}.norm{i}", t, x)))
        else:
            x = b.norm(f"{pfx}.norm{i}", t, _residual(b, f"{pfx}.residual{i}", t, x, fn(x)))
    return x


def _embed(b: _Builder, name: str, tokens: int) -> str:
    a = b.arch
    tables = 1 + (a.learned_positions > 0) + (a.type_vocab > 0)
    params = (a.vocab + a.learned_positions + a.type_vocab) * a.d_model
    # gather one row per table and sum them: reads `tables` rows, tables-1 adds per element
    return b.eltwise(name, "embed", tokens * a.d_model, float(tables - 1), inputs=tables, params=params)


def _rel_bias_params(a: Arch, block: int) -> int | None:
    if not a.rel_pos_buckets:
        return None
    return a.rel_pos_buckets * a.heads if block == 0 else 0


def _build(b: _Builder, batch: int, seq_len: int, phase: str) -> None:
    a = b.arch
    d = a.d_model
    if a.family == "vit":
        t = batch * seq_len
        patches = batch * (seq_len - 1)
        x = b.gemm("patch_embed", "patch_embed", patches, d, a.channels * a.patch_size ** 2)
        b.params += d + d * seq_len  # class token + position table (197 rows)
        x = b.eltwise("pos_embed", "add", t * d, FLOPS_PER_ELEMENT["add"], x, inputs=2)
        ctx = _Ctx(batch, seq_len, seq_len, cache=False)
        for i in range(a.layers):
            x = _block(b, f"blocks.{i}", x, ctx)
        x = b.norm("norm", t, x)
        b.gemm("head", "head", batch, a.num_classes, d, x)  # on the class token only
        return
    if a.family == "encoder":
        t = batch * seq_len
        x = b.norm("embeddings.norm", t, _embed(b, "embeddings", t))
        ctx = _Ctx(batch, seq_len, seq_len, cache=False)
        for i in range(a.layers):
            x = _block(b, f"encoder.{i}", x, ctx)
        x = b.gemm("pooler", "head", batch, d, d, x)  # BERT pooler on [CLS]: counted in the 110M
        b.eltwise("pooler.act", "tanh", batch * d, FLOPS_PER_ELEMENT["tanh"], x)
        return
    # decoder-only and encoder-decoder
    q_len = 1 if phase == "decode" else seq_len
    ctx = _Ctx(batch, q_len, seq_len, cache=phase != "forward")
    cross = None
    if a.family == "encdec":
        if phase == "decode":
            cross = ("", None)  # encoder output already projected to K/V during prefill
        else:
            te = batch * seq_len
            x = _embed(b, "encoder.embed", te)
            for i in range(a.layers):
                x = _block(b, f"encoder.{i}", x, _Ctx(batch, seq_len, seq_len, cache=False),
                           rel_bias_params=_rel_bias_params(a, i))
            cross = (b.norm("encoder.final_norm", te, x), te)
    t = batch * q_len
    prefix = "decoder" if a.family == "encdec" else "blocks"
    x = _embed(b, f"{prefix}.embed", t)
    if a.family == "encdec":
        b.params -= a.vocab * d  # the decoder shares the encoder's token embedding table
    for i in range(a.decoder_layers or a.layers):
        x = _block(b, f"{prefix}.{i}", x, ctx, cross=cross, rel_bias_params=_rel_bias_params(a, i))
    x = b.norm(f"{prefix}.final_norm", t, x)
    # Inference only needs the next-token logits of the last position; training needs all.
    head_rows = batch if phase in ("prefill", "decode") else t
    b.gemm("lm_head", "head", head_rows, a.vocab, d, x, tied=a.tied_head)


def build_workload(name: str, *, batch: int = 1, seq_len: int | None = None, pattern: NM = DENSE,
                   qkv_pattern: NM | None = None, phase: str = "forward", dtype: str = "fp16",
                   merge_blocks: bool = False) -> Workload:
    """Ops of built-in model ``name`` for one forward pass or inference phase.

    phase: ``forward`` (all tokens, all logits: a training/eval forward), ``prefill`` (prompt of
    ``seq_len`` tokens, K/V written to the cache, last-token logits) or ``decode`` (one new
    token per sequence attending to a KV cache of ``seq_len`` tokens; decoder models only).
    Attention over a causal prefix is counted as the full square (kernels that skip the masked
    half are not modelled). ``merge_blocks`` folds identical blocks into one op with ``count``.
    """
    arch = ARCHS.get(name)
    pattern, qkv_pattern = NM.parse(pattern), None if qkv_pattern is None else NM.parse(qkv_pattern)
    if phase not in PHASES:
        raise ConfigError(f"unknown phase {phase!r}; valid: {', '.join(PHASES)} (training: simulate.training_step_cost)")
    if dtype not in DTYPE_BITS:
        raise ConfigError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPE_BITS)}")
    if not 1 <= batch <= MAX_DIM:
        raise ConfigError(f"batch must be in [1, {MAX_DIM}], got {batch}")
    if phase != "forward" and arch.family in ("vit", "encoder"):
        raise ConfigError(f"phase {phase!r} needs a decoder (KV cache); {name} is an encoder-only model: "
                          f"use phase 'forward'")
    if arch.family == "vit":
        if seq_len not in (None, arch.vit_tokens):
            raise ConfigError(f"{name}: seq_len is fixed at {arch.vit_tokens} tokens by {arch.image_size}px "
                              f"images and {arch.patch_size}px patches; got {seq_len}")
        seq_len = arch.vit_tokens
    seq_len = arch.default_seq_len if seq_len is None else seq_len
    if not 1 <= seq_len <= MAX_DIM:
        raise ConfigError(f"seq_len must be in [1, {MAX_DIM}], got {seq_len}")
    if arch.learned_positions and seq_len > arch.learned_positions:
        raise ConfigError(f"{name}: seq_len {seq_len} exceeds its {arch.learned_positions} learned positions")
    b = _Builder(arch, dtype, pattern, qkv_pattern)
    _build(b, batch, seq_len, phase)
    value_bytes = DTYPE_BITS[dtype] / 8
    # attention layers whose K/V a decode step reads from a cache: self-attention of every
    # decoder block, plus cross-attention (the encoder output, projected once) in T5
    n_cached = 2 * arch.decoder_layers if arch.family == "encdec" else arch.layers
    meta = {"model": name, "batch": batch, "seq_len": seq_len, "phase": phase, "dtype": dtype,
            "pattern": _text(pattern), "qkv_pattern": None if qkv_pattern is None else _text(qkv_pattern),
            "params": param_count(name), "source": arch.source}
    if phase != "forward":
        # K and V per cached layer, per token of context, per KV head (what a decode step reads)
        meta["kv_cache_bytes"] = int(2 * n_cached * batch * seq_len * arch.n_kv_heads * arch.head_dim * value_bytes)
    graph = None if merge_blocks else _graph(b.ops, b.edges)
    wl = Workload(f"{name}[{phase}]", b.ops, meta, graph)
    return merge_repeats(wl) if merge_blocks else wl


def param_count(name: str) -> int:
    """Parameters of built-in ``name`` (embeddings, weights, biases, norms; a tied head once)."""
    arch = ARCHS.get(name)
    b = _Builder(arch, "fp16", DENSE, None)
    _build(b, 1, arch.vit_tokens if arch.family == "vit" else 1, "forward")
    return b.params


def gemm_workload(m: int, n: int, k: int, *, pattern: NM = DENSE, dtype: str = "fp16") -> Workload:
    """One weight GEMM ``(M, K) x (K, N)``, the weight ``(N, K)`` with ``pattern`` along K."""
    pattern = NM.parse(pattern)
    if min(m, n, k) < 1 or max(m, n, k) > MAX_DIM:
        raise ShapeError(f"GEMM shape must be in [1, {MAX_DIM}], got M={m}, N={n}, K={k}")
    if dtype not in DTYPE_BITS:
        raise ConfigError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPE_BITS)}")
    if not pattern.is_dense and k % pattern.m:
        raise ShapeError(f"GEMM {m}x{n}x{k}: K={k} is not divisible by M={pattern.m} of pattern {pattern}")
    op = Op("gemm", "gemm", m=m, n=n, k=k, pattern=pattern, dtype=dtype, role="gemm")
    return Workload(f"gemm_{m}x{n}x{k}", [op], {"model": "gemm", "batch": 1, "phase": "forward",
                                                 "dtype": dtype, "pattern": _text(pattern), "params": n * k})


_BLOCK_INDEX = re.compile(r"(?<=\.)\d+(?=\.)")


def merge_repeats(workload: Workload) -> Workload:
    """Fold ops equal but for a block index in their name (``blocks.3.mlp.fc1``) into one op
    named ``blocks.*.mlp.fc1`` with ``count`` = number of repeats; order of first appearance."""
    merged: dict[tuple, Op] = {}
    for op in workload.ops:
        key = (_BLOCK_INDEX.sub("*", op.name), replace(op, name="", count=1))
        prev = merged.get(key)
        merged[key] = replace(op, name=key[0]) if prev is None else replace(prev, count=prev.count + op.count)
    return Workload(workload.name, list(merged.values()), dict(workload.meta, merged=True), None)


def _graph(ops: list[Op], edges: list[tuple[str, str]]):
    import networkx as nx  # light, but only needed when a graph is asked for

    g = nx.DiGraph()
    for op in ops:
        g.add_node(op.name, kind=op.kind, role=op.role)
    g.add_edges_from(edges)
    return g


def _text(pattern: NM) -> str:
    """A pattern as users write it: ``dense`` rather than ``1:1``."""
    return "dense" if pattern.is_dense else str(pattern)
