"""Attention's own matmuls (Q K^T, A V) in the training-FLOPs count, against hand counts
(docs/method.md, "Training FLOPs")."""
import pytest
import torch
from torch import nn

from pgf_sim.sparsity.flops import ActivationMatmul
from pgf_sim.store import ResultStore
from pgf_sim.train.activation_matmuls import activation_matmuls
from pgf_sim.train.data import load_data
from pgf_sim.train.experiment import DataConfig, experiment_from_dict
from pgf_sim.train.trainer import train


def test_char_gpt_training_flops_match_a_hand_count(tmp_path, one_thread):
    """A 2-block, 16-wide char_gpt (2 heads of 8), block 16, batch 4, 2 dense steps.

    Per step, rows = 4 x 16 = 64 tokens. Weight GEMMs per block: qkv (48, 16), proj (16, 16),
    fc1 (64, 16), fc2 (16, 64) = 3072 MACs per token, head (V, 16): one pass is
    2*64*(2*3072 + 16*V) FLOPs, three passes per step. Attention per block and step (causal,
    half the square): Q K^T = 2 * (4*2) * 16*8*16 / 2 = 16384, A V the same; two blocks,
    forward + two operand gradients: 3 * 2 * 2 * 16384 = 196608."""
    vocab = load_data(DataConfig("shakespeare", {"block_size": 16})).spec.vocab_size
    cfg = experiment_from_dict({
        "name": "gpt_flops", "model": {"name": "char_gpt", "options": {"dim": 16, "depth": 2, "heads": 2}},
        "data": {"name": "shakespeare", "options": {"block_size": 16, "eval_chars": 256}},
        "recipe": {"name": "dense"}, "schedule": {"steps": 2, "batch_size": 4, "lr": 1e-3}})
    s = train(cfg, store=ResultStore(tmp_path / "db.sqlite"), workdir=tmp_path, progress=False)
    weight_pass = 2 * 64 * (2 * 3072 + 16 * vocab)
    assert s.train_flops == {"forward": 2 * weight_pass, "input_grad": 2 * weight_pass,
                             "weight_grad": 2 * weight_pass, "attention": 2 * 196608}
    # the curve the study reads (train_flops at each evaluation) includes attention too
    (step, _, logged), = [m for m in ResultStore(tmp_path / "db.sqlite").run_metrics(s.run_id) if m[1] == "train_flops"]
    assert step == 2 and logged == 6 * weight_pass + 2 * 196608


class _Manual(nn.Module):
    """Attention written out by hand (timm's unfused path): scores and A V by ``@``."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x):  # (B, T, 8), 2 heads of 4
        b, t, _ = x.shape
        q, k, v = (z.view(b, t, 2, 4).transpose(1, 2) for z in self.qkv(x).split(8, dim=-1))  # (B, 2, T, 4)
        a = (q @ k.transpose(-2, -1)).softmax(-1)  # (B, 2, T, T)
        return (a @ v).transpose(1, 2).reshape(b, t, 8)


def test_attention_is_found_in_every_form():
    """Per example: 2 heads, 5 tokens, head dim 4; batch 3 -> 6 (example, head) pairs."""
    full = [("qk", 6, 5, 4, 5, False), ("av", 6, 5, 5, 4, False)]

    def shapes(found):
        return [(a.name.rsplit(".", 1)[-1], a.batch, a.m, a.k, a.n, a.causal) for a in found]

    mha = nn.MultiheadAttention(8, 2, batch_first=True)

    class Weights(nn.Module):  # need_weights=True: torch computes the full square with bmm
        def forward(self, x):
            return mha(x, x, x, need_weights=True)[0]

    x = torch.zeros(1, 5, 8)
    assert shapes(activation_matmuls(Weights(), x, 3)) == full
    causal = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0)

    class Causal(nn.Module):
        def forward(self, x):
            return causal(x, src_mask=nn.Transformer.generate_square_subsequent_mask(5), is_causal=True)

    assert shapes(activation_matmuls(Causal(), x, 3)) == [(n, *r[:-1], True) for n, *r in full]
    manual = activation_matmuls(_Manual(), x, 3)  # no sdpa: plain matmuls, counted in full
    assert [(a.batch, a.m, a.k, a.n, a.causal) for a in manual] == [r[1:] for r in full]
    # a weight GEMM written with @ (HF Conv1D: x @ W, W a 2-D parameter) is not attention
    assert activation_matmuls(nn.Linear(8, 8), x, 3) == []


def test_activation_matmul_flops():
    assert ActivationMatmul("qk", 6, 5, 4, 5).forward_flops == 2 * 6 * 5 * 4 * 5
    assert ActivationMatmul("qk", 6, 64, 16, 64, causal=True).forward_flops == pytest.approx(6 * 64 * 16 * 64)
