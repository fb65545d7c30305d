"""Training FLOPs per recipe against hand counts (docs/method.md, "Training FLOPs").

Two sparse layers fc1 (64, 16), fc2 (16, 64) and a dense head (4, 16); 10 tokens per step,
100 steps. One dense GEMM pass: fc1 = fc2 = 2*10*64*16 = 20480 FLOPs, head = 1280.
"""
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pgf_sim.core import NM
from pgf_sim.sparsity.flops import LayerShape, training_flops, training_flops_report
from pgf_sim.sparsity.schedules import RECIPES, RecipeConfig, beta_at, pattern_at, phase_at

LAYERS = {"fc1": ((64, 16), "fc1"), "fc2": ((16, 64), "fc2"), "head": ((4, 16), "head")}
SPARSE_PASS = 2 * 20480  # fc1 + fc2, one pass, one step
HEAD_PASS = 1280
T = 100


def _flops(**kw):
    return training_flops(RecipeConfig(**kw), LAYERS, tokens=10, total_steps=T)


def test_dense():
    f = _flops(name="dense", pattern=NM(1, 4))
    dense = (SPARSE_PASS + HEAD_PASS) * T
    assert f == {"forward": dense, "input_grad": dense, "weight_grad": dense}


@pytest.mark.parametrize("name", ["ste", "sr-ste"])
def test_ste_forward_and_input_grad_scale_with_density_weight_grad_dense(name):
    f = _flops(name=name, pattern=NM(1, 4))
    sparse = (SPARSE_PASS * 0.25 + HEAD_PASS) * T
    assert f == {"forward": sparse, "input_grad": sparse, "weight_grad": (SPARSE_PASS + HEAD_PASS) * T}


def test_mdgf_forward_is_dense_while_beta_positive():
    # default finetune 10%: sparse phase 90 steps; linear beta reaches 0 at 0.7*90 = 63 sparse steps
    f = _flops(name="mdgf", pattern=NM(1, 4), decay="linear")
    fwd = SPARSE_PASS * (63 + 37 * 0.25) + HEAD_PASS * T
    assert f["forward"] == pytest.approx(fwd) and f["input_grad"] == pytest.approx(fwd)
    assert f["weight_grad"] == (SPARSE_PASS + HEAD_PASS) * T
    # exponential never reaches 0 in the sparse phase: dense forward until the fine-tune phase
    f = _flops(name="mdgf", pattern=NM(1, 4), decay="exponential")
    assert f["forward"] == pytest.approx(SPARSE_PASS * (90 + 10 * 0.25) + HEAD_PASS * T)


def test_mdgf_scaled_weight_grad_sparse_once_pruned_gradients_vanish():
    f = _flops(name="mdgf", pattern=NM(1, 4), decay="linear", grad="scaled")
    # steps 63..89: beta = 0 and grad * m -> weight grad at density; fine-tune 90..99: STE, dense
    assert f["weight_grad"] == pytest.approx(SPARSE_PASS * (63 + 27 * 0.25 + 10) + HEAD_PASS * T)


def test_sdgf_follows_each_frame():
    f = _flops(name="sdgf", pattern=NM(1, 8))
    # frames 7:8 steps 0-17, 4:8 18-34, 2:8 35-52, then 1:8 53-99 (frames fill the first 70 steps)
    fwd = SPARSE_PASS * (18 * 7 / 8 + 17 * 4 / 8 + 18 * 2 / 8 + 47 / 8) + HEAD_PASS * T
    assert f["forward"] == pytest.approx(fwd) and f["weight_grad"] == (SPARSE_PASS + HEAD_PASS) * T


def test_dense_phase_and_per_layer_tokens():
    f = _flops(name="ste", pattern=NM(1, 4), dense_fraction=0.3)
    assert f["forward"] == pytest.approx(SPARSE_PASS * (30 + 70 * 0.25) + HEAD_PASS * T)
    report = training_flops_report(RecipeConfig(name="ste"), {"patch": LayerShape((8, 3, 2, 2), "patch_embed", 16)},
                                   tokens=999, total_steps=2)
    assert report.layers[0].forward == 2 * 16 * 8 * 12 * 2 and report.layers[0].target is None


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_recipe_costs_at_most_dense_and_forward_equals_input_grad(name):
    report = training_flops_report(RecipeConfig(name=name, pattern=NM(1, 8)), LAYERS, tokens=7, total_steps=333)
    totals = report.totals()
    assert totals["forward"] == pytest.approx(totals["input_grad"])
    assert report.total <= report.dense_total * (1 + 1e-12)
    assert (report.ratio_to_dense < 1) == (name != "dense")


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(RECIPES.names()), decay=st.sampled_from(["linear", "exponential", "cosine"]),
       grad=st.sampled_from(["ste", "scaled"]), total=st.integers(1, 200), dense=st.floats(0, 0.4),
       finetune=st.floats(0, 0.4), pattern=st.sampled_from([NM(2, 4), NM(1, 8), NM(1, 16)]))
def test_segment_sums_equal_a_step_by_step_count(name, decay, grad, total, dense, finetune, pattern):
    assume(dense > 0 or not RECIPES.get(name).frozen_variance)  # step needs a dense phase (tested apart)
    cfg = RecipeConfig(name=name, decay=decay, grad=grad, pattern=pattern, dense_fraction=dense,
                       finetune_fraction=finetune)
    got = training_flops(cfg, LAYERS, tokens=10, total_steps=total)
    fwd = wgrad = 0.0
    for step in range(total):  # the rules of docs/method.md applied one step at a time
        beta, p, phase = beta_at(cfg, step, total), pattern_at(cfg, step, total), phase_at(cfg, step, total)
        d_fwd = 1.0 if beta > 0 else p.density
        pruned_grad_zero = ((cfg.spec.decays and grad == "scaled" and phase == "sparse" and beta == 0)
                            or (cfg.spec.fixed_mask and phase != "dense"))  # one-shot, gmp
        fwd += SPARSE_PASS * d_fwd + HEAD_PASS
        wgrad += SPARSE_PASS * (p.density if pruned_grad_zero else 1.0) + HEAD_PASS
    assert got["forward"] == pytest.approx(fwd) and got["input_grad"] == pytest.approx(fwd)
    assert got["weight_grad"] == pytest.approx(wgrad)


def test_gemm_rows_are_measured_for_any_model():
    """trainer.gemm_layers on a model with no pos_embed: conv, HF Conv1D, MultiheadAttention
    (whose out_proj it applies without calling the module), nn.TransformerEncoderLayer and a
    layer called twice. Rows per example derived by hand, times the batch."""
    import torch
    from torch import nn

    from pgf_sim.train.trainer import gemm_layers

    class Conv1D(nn.Module):  # Hugging Face GPT-2 layout: weight (in, out)
        def __init__(self, n_in, n_out):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_in, n_out))

        def forward(self, x):
            return x @ self.weight

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)                 # 8x8 -> 6x6: 36 output pixels
            self.c_fc = Conv1D(4, 8)                        # 36 tokens
            self.attn = nn.MultiheadAttention(8, 2)         # self-attention over 36 tokens
            self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
            self.shared = nn.Linear(8, 8)                   # called twice: 2 x 36
            self.head = nn.Linear(8, 10)                    # on the pooled token: 1

        def forward(self, x):
            t = self.conv(x).flatten(2).permute(2, 0, 1)    # (B, 4, 6, 6) -> (36, B, 4)
            t = self.c_fc(t)
            t = self.attn(t, t, t, need_weights=False)[0]
            t = self.shared(self.shared(self.enc(t)))
            return self.head(t.mean(0))

    batch = 5
    out = gemm_layers(Net(), torch.zeros(3, 1, 8, 8), batch)
    rows = {name: r for name, (_, _, r) in out.items()}
    assert rows == {"conv": 36 * batch, "c_fc": 36 * batch, "attn.in_proj_weight": 36 * batch,
                    "attn.out_proj": 36 * batch, "enc.self_attn.in_proj_weight": 36 * batch,
                    "enc.self_attn.out_proj": 36 * batch, "enc.linear1": 36 * batch, "enc.linear2": 36 * batch,
                    "shared": 72 * batch, "head": batch}
    assert out["c_fc"][:2] == ((4, 8), "fc1") and out["enc.linear2"][:2] == ((8, 16), "fc2")


def test_flops_until_is_the_cumulative_count_of_the_first_steps():
    """``until`` counts the first steps of the same schedule: 0 at step 0, the whole total at
    the end, never decreasing, and each step costs at least the dense head's three passes."""
    from pgf_sim.core import NM
    from pgf_sim.sparsity.flops import training_flops
    from pgf_sim.sparsity.schedules import RecipeConfig

    layers = {"blocks.0.mlp.fc1": ((64, 32), "fc1", 16), "head": ((10, 32), "head", 4)}
    for cfg in (RecipeConfig(name="mdgf", pattern=NM(1, 8)), RecipeConfig(name="sdgf", pattern=NM(1, 8))):
        total = 40
        full = sum(training_flops(cfg, layers, tokens=0, total_steps=total).values())
        cum = [sum(training_flops(cfg, layers, tokens=0, total_steps=total, until=s).values()) for s in range(total + 1)]
        assert cum[0] == 0 and cum[-1] == full
        assert all(b >= a for a, b in zip(cum, cum[1:]))
        # the head (dense, 3 passes of 2*4*10*32 every step) contributes linearly
        per_step = [b - a for a, b in zip(cum, cum[1:])]
        assert min(per_step) >= 3 * 2 * 4 * 10 * 32


def test_attention_matmuls_are_dense_for_every_recipe_and_count_in_the_dense_reference():
    """Attention Q K^T (batch 4, 10 x 8 x 10, causal: half) and A V: 2*4*10*8*10/2 = 3200 FLOPs
    each forward, 3 passes: 19200 per step, whatever the recipe."""
    from pgf_sim.sparsity.flops import ActivationMatmul

    attn = [ActivationMatmul("qk", 4, 10, 8, 10, True), ActivationMatmul("av", 4, 10, 10, 8, True)]
    cfg = RecipeConfig(name="ste", pattern=NM(1, 4))
    report = training_flops_report(cfg, LAYERS, tokens=10, total_steps=T, attention=attn)
    assert report.totals()["attention"] == 19200 * T
    weights = training_flops(cfg, LAYERS, tokens=10, total_steps=T)
    assert report.total == pytest.approx(sum(weights.values()) + 19200 * T)
    assert report.dense_total == (3 * (SPARSE_PASS + HEAD_PASS) + 19200) * T
    # the cumulative count: attention grows linearly with the steps counted
    assert training_flops(cfg, LAYERS, tokens=10, total_steps=T, until=7, attention=attn)["attention"] == 19200 * 7
    # attention makes sparsity save a smaller share: the ratio to dense rises
    assert report.ratio_to_dense > training_flops_report(cfg, LAYERS, tokens=10, total_steps=T).ratio_to_dense
