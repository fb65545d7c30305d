"""Layer roles: the one vocabulary every part uses, and the name rules that infer a layer's role.

A role says what a weight layer does in a transformer block, independent of the model's naming:

- ``fc1`` / ``fc2``: the MLP's input and output projections (SwiGLU's gate and up are ``fc1``,
  its down projection ``fc2``);
- ``q``, ``k``, ``v``: separate attention input projections; ``qkv``: a packed one;
- ``proj``: the attention output projection; ``patch_embed``: the patch embedding;
  ``head``: a classifier / LM head (or BERT's pooler);
- ``other``: a weight layer no rule recognised (select it with ``roles: ['*']`` or a glob).

The rules read only names (no torch), so training (``pgf_sim.train.sparsify`` lists the
torch modules) and capture (``pgf_sim.sim.capture`` lists the traced parameters) give a layer
the same role, and the built-in workloads (``pgf_sim.sim.workloads``) label their ops with it.
"""
from __future__ import annotations

from typing import Literal

Role = Literal["fc1", "fc2", "q", "k", "v", "qkv", "proj", "patch_embed", "head", "other"]
ROLES: tuple[str, ...] = ("fc1", "fc2", "q", "k", "v", "qkv", "proj", "patch_embed", "head", "other")
MLP_ROLES = frozenset({"fc1", "fc2"})
QKV_ROLES = frozenset({"q", "k", "v", "qkv"})
# The layer fed by the data (an image): a training step computes no input gradient for it.
NO_INPUT_GRAD_ROLES = frozenset({"patch_embed"})
RoleGroup = Literal["mlp", "qkv", "other"]


def role_group(role: str) -> RoleGroup:
    """``mlp`` (fc1, fc2), ``qkv`` (q, k, v, qkv) or ``other``: the groups that take the shared
    ``pattern``, the ``qkv_pattern``, or stay dense by default."""
    return "mlp" if role in MLP_ROLES else "qkv" if role in QKV_ROLES else "other"


def layer_name(param_name: str) -> str:
    """The layer name of a weight parameter: its module's name for a ``weight``, the full name
    otherwise (MultiheadAttention's packed ``in_proj_weight`` is ``<module>.in_proj_weight``)."""
    return param_name[: -len(".weight")] if param_name.endswith(".weight") else param_name


# Name rules for common layouts: timm ViT (patch_embed.proj, attn.qkv, attn.proj, mlp.fc1/fc2,
# head), Hugging Face BERT/ViT (attention.self.query/key/value, attention.output.dense,
# intermediate.dense, output.dense, classifier, embeddings.patch_embeddings.projection),
# LLaMA-style (q/k/v/o_proj, gate/up/down_proj), T5 (q/k/v/o, wi/wo), GPT-2 (c_attn, c_proj, c_fc),
# torch.nn.TransformerEncoderLayer (self_attn.in_proj_weight packed qkv, self_attn.out_proj,
# linear1/linear2) and torchvision ViT (conv_proj, heads).
_PATCH = {"patch_embed", "patch_embeddings", "patch_embedding", "conv_proj", "to_patch_embedding", "patch_proj"}
_HEAD = {"head", "heads", "classifier", "lm_head", "score"}
_FC1 = {"fc1", "linear1", "c_fc", "wi", "wi_0", "wi_1", "gate_proj", "up_proj", "w1", "w3", "lin1",
        "dense_h_to_4h", "fc_in"}
_FC2 = {"fc2", "linear2", "down_proj", "wo", "w2", "lin2", "dense_4h_to_h", "fc_out"}
_Q, _K, _V = {"q", "query", "q_proj", "wq"}, {"k", "key", "k_proj", "wk"}, {"v", "value", "v_proj", "wv"}
_QKV = {"qkv", "c_attn", "in_proj_weight", "query_key_value", "qkv_proj", "wqkv", "to_qkv"}
_PROJ = {"proj", "out_proj", "o_proj", "o", "c_proj", "dense", "out", "to_out"}
_ATTN_HINTS = ("attn", "attention")


def role_of(name: str) -> str:
    """The role of the weight layer called ``name`` (a dotted module path, see ``layer_name``)."""
    parts = name.lower().split(".")
    last = parts[-1]
    parent = parts[-2] if len(parts) > 1 else ""
    if any(p in _PATCH for p in parts):
        return "patch_embed"
    if any(p in _HEAD for p in parts) or (last == "fc" and len(parts) == 1):  # ResNet's top-level fc
        return "head"
    in_attn = any(h in p for p in parts[:-1] for h in _ATTN_HINTS)
    if last in _QKV:
        return "qkv"
    for role, names in (("q", _Q), ("k", _K), ("v", _V)):
        if last in names or last == f"{role}_proj_weight":  # MHA with kdim/vdim != embed_dim
            return role
    if last in _FC1 or (last == "dense" and parent == "intermediate"):
        return "fc1"
    if in_attn and last in _PROJ:
        return "proj"
    if last in _FC2 or (last == "dense" and parent == "output"):  # BERT layer.N.output.dense
        return "fc2"
    if last == "c_proj" and "mlp" in parts:
        return "fc2"
    return "other"
