"""Built-in transformer models, written with plain torch modules.

Module names follow timm (``blocks.<i>.attn.qkv``, ``.attn.proj``, ``.mlp.fc1``, ``.mlp.fc2``,
``patch_embed``, ``head``) so the role rules of ``pgf_sim.sparsity.roles`` find the roles of docs/method.md
("Which layers") without a model-specific table. Nothing here knows about sparsity: the
controller wraps the weights from outside, exactly as it would for a user's timm/HF model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pgf_sim.core import ConfigError, PgfSimError, Registry
from pgf_sim.train.data import DataSpec
from pgf_sim.train.experiment import CharGPTOptions, ModelConfig, SeqTransformerOptions, ViTOptions

MODELS: Registry = Registry("model")


class Attention(nn.Module):
    """Multi-head self-attention; ``causal``: position t attends to positions <= t only."""

    def __init__(self, dim: int, heads: int, qkv: str, dropout: float, causal: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.causal = causal
        self.fused = qkv == "fused"
        if self.fused:
            self.qkv = nn.Linear(dim, 3 * dim)
        else:
            self.q = nn.Linear(dim, dim)
            self.k = nn.Linear(dim, dim)
            self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape  # (B, T, C)
        if self.fused:
            q, k, v = self.qkv(x).split(c, dim=-1)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)
        # (B, nh, T, hs)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=self.causal)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv: str, dropout: float, causal: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, qkv, dropout, causal)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(round(dim * mlp_ratio)), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _Encoder(nn.Module):
    """cls token + positional embedding + blocks + final norm + linear head on the cls token."""

    def _init_encoder(self, dim: int, tokens: int, opts, num_classes: int) -> None:
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, opts.heads, opts.mlp_ratio, opts.qkv, opts.dropout) for _ in range(opts.depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        for mod in self.modules():
            if isinstance(mod, nn.Linear):  # timm's ViT init: truncated normal, zero bias
                nn.init.trunc_normal_(mod.weight, std=0.02)
                nn.init.zeros_(mod.bias)

    def _encode(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)  # (B, T+1, C)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))  # (B, classes)


@MODELS.register("vit")
class ViT(_Encoder):
    """Vision transformer (Dosovitskiy et al. 2021) for (B, C, H, W) images."""

    def __init__(self, opts: ViTOptions, spec: DataSpec) -> None:
        super().__init__()
        if spec.kind != "image":
            raise ConfigError(f"model 'vit' needs image data, got {spec.kind} data")
        c, h, w = spec.input_shape
        p = opts.patch_size
        if h % p or w % p:
            raise ConfigError(f"model 'vit': patch_size {p} does not divide the image size {h}x{w}")
        self.patch_embed = nn.Conv2d(c, opts.dim, kernel_size=p, stride=p)
        self._init_encoder(opts.dim, (h // p) * (w // p), opts, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, C, H/p, W/p) -> (B, T, C)
        return self._encode(x)


@MODELS.register("seq_transformer")
class SeqTransformer(_Encoder):
    """Transformer encoder over (B, T) token ids, classifying from a cls token."""

    def __init__(self, opts: SeqTransformerOptions, spec: DataSpec) -> None:
        super().__init__()
        if spec.kind != "tokens":
            raise ConfigError(f"model 'seq_transformer' needs token data, got {spec.kind} data")
        self.embed = nn.Embedding(spec.vocab_size, opts.dim)
        self._init_encoder(opts.dim, spec.input_shape[0], opts, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode(self.embed(x))


@MODELS.register("char_gpt")
class CharGPT(nn.Module):
    """GPT-style causal decoder (Radford et al. 2019): token + learned position embedding,
    pre-norm blocks with causal self-attention, final LayerNorm, a linear head giving next-token
    logits at every position. (B, T) ids -> (B, T, vocab). Module names follow the ViT's, so
    the roles qkv, proj, fc1, fc2 and head are inferred the same way."""

    def __init__(self, opts: CharGPTOptions, spec: DataSpec) -> None:
        super().__init__()
        if spec.kind != "lm":
            raise ConfigError(f"model 'char_gpt' needs next-token (text) data, got {spec.kind} data")
        self.block_size = spec.input_shape[0]
        self.tok_embed = nn.Embedding(spec.vocab_size, opts.dim)
        self.pos_embed = nn.Parameter(torch.randn(1, self.block_size, opts.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(opts.dim, opts.heads, opts.mlp_ratio, opts.qkv, opts.dropout, causal=True)
                                    for _ in range(opts.depth))
        self.norm = nn.LayerNorm(opts.dim)
        self.head = nn.Linear(opts.dim, spec.vocab_size, bias=False)
        for mod in self.modules():  # GPT-2's init: N(0, 0.02), zero bias
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, std=0.02)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.Embedding):
                nn.init.normal_(mod.weight, std=0.02)
        if opts.tie_embeddings:
            self.head.weight = self.tok_embed.weight  # one (vocab, dim) table for input and output

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than the model's block_size {self.block_size}")
        x = self.tok_embed(idx) + self.pos_embed[:, :t]  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # (B, T, vocab)


def build_model(cfg: ModelConfig, spec: DataSpec) -> nn.Module:
    """Instantiate the registered model ``cfg.name`` (or the user's ``cfg.factory``) for data
    described by ``spec``."""
    if cfg.factory is not None:
        from pgf_sim.train.factories import model_from_factory

        return model_from_factory(cfg, spec)
    return MODELS.get(cfg.name)(cfg.typed(), spec)



def check_trainable(cfg, *, source: str = "<config>", memory_bytes: int | None = None) -> int:
    """Check before any training that ``cfg`` (an ``ExperimentConfig``) can train: its model
    fits in memory and its recipe fits the model's layers. Returns the parameter count.

    The model is built and sparsified on the ``meta`` device (shapes only, nothing allocated,
    no data read), so a typo such as ``dim=100000000`` or a pattern whose M does not divide a
    layer is reported at once, not after a sweep trained every other run. Training holds the
    weights, their gradients and AdamW's two moments: 4 x the fp32 weight bytes.
    """
    import os

    from pgf_sim.train.data import data_spec
    from pgf_sim.train.sparsify import sparsify

    spec = data_spec(cfg.data)  # outside the meta device: a factory's data is real tensors
    with torch.device("meta"):
        model = build_model(cfg.model, spec)
        params = sum(p.numel() for p in model.parameters())
        if memory_bytes is None:
            memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        need = 4 * 4 * params
        if need > memory_bytes:
            raise ConfigError(f"{source}: model {cfg.model.name!r} with options {dict(cfg.model.options)} has "
                              f"{params:.3g} parameters; training needs about {need / 2**30:.3g} GiB (weights, "
                              f"gradients, 2 AdamW moments) but this machine has {memory_bytes / 2**30:.3g} GiB")
        # an epoch-based schedule's length needs the data; the layer checks do not depend on it
        try:
            sparsify(model, cfg.recipe, cfg.schedule.steps or 1000)
        except PgfSimError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return params
