"""Capture of torch modules: FLOPs vs hand counts, per-layer N:M read from weights, meta models."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
import torch.nn.functional as F
from torch import nn

from pgf_sim.core import NM, ConfigError, ShapeError
from pgf_sim.sim.capture import capture, infer_pattern
from pgf_sim.sim.workloads import build_workload


def nm_prune_(weight: torch.Tensor, n: int, m: int, dim: int = 1) -> None:
    """Test-local N:M pruning: keep the n largest |w| of every m consecutive along ``dim``."""
    w = torch.movedim(weight.data, dim, -1)
    groups = w.reshape(-1, m)
    keep = groups.abs().topk(n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    weight.data.copy_(torch.movedim((groups * mask).reshape(w.shape), -1, dim))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm ViT block (timm layout); ``sdpa`` switches to F.scaled_dot_product_attention."""

    def __init__(self, d=64, heads=4, ffn=256, sdpa=False):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.heads, self.sdpa = heads, sdpa

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            y = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(-1) @ v
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def flops(wl, kinds=("gemm", "matmul")):
    return sum(op.dense_flops for op in wl.ops if op.kind in kinds)


@pytest.mark.parametrize("method", ["export", "fx"])
def test_mlp_hand_count(method):
    wl = capture(MLP(), (4, 7, 32), method=method)
    # Linear on (4, 7, 32): M = 4*7 = 28 rows
    assert flops(wl) == 2 * 28 * 64 * 32 + 2 * 28 * 10 * 64
    relu = [op for op in wl.ops if op.role == "relu"]
    assert len(relu) == 1 and relu[0].elements == 28 * 64
    assert [op.name for op in wl.ops if op.kind == "gemm"] == ["fc1", "fc2"]
    assert list(wl.graph.edges) == [("fc1", "relu"), ("relu", "fc2")]
    assert wl.meta["capture"] == method and wl.meta["unmodelled_ops"] == {}


@pytest.mark.parametrize("sdpa", [False, True])
@pytest.mark.parametrize("method", ["export", "fx"])
def test_transformer_block_hand_count(method, sdpa):
    b, t, d, h, f = 2, 10, 64, 4, 256
    wl = capture(Block(d, h, f, sdpa=sdpa), (b, t, d), method=method)
    tokens = b * t
    gemm = 2 * tokens * (3 * d * d + d * d + d * f + f * d)
    attn = 2 * (2 * b * h * t * t * (d // h))  # scores + AV
    assert flops(wl, ("gemm",)) == gemm
    assert flops(wl, ("matmul",)) == attn
    softmax = [op for op in wl.ops if op.role == "softmax"]
    assert len(softmax) == 1 and softmax[0].elements == b * h * t * t
    norms = [op for op in wl.ops if op.role == "layernorm"]
    assert len(norms) == 2 and all(op.elements == tokens * d for op in norms)
    adds = [op for op in wl.ops if op.role == "add" and op.inputs == 2]
    assert len(adds) == 2  # the two residuals
    assert wl.graph.has_edge("fc1", "gelu") and wl.graph.has_edge("gelu", "fc2")


def test_capture_matches_builtin_vit_block():
    """A torch block with ViT-Ti dims gives the per-block GEMM/matmul FLOPs of the built-in vit_ti."""
    wl = capture(Block(192, 3, 768), (1, 197, 192))
    builtin = build_workload("vit_ti", batch=1)
    block0 = [op for op in builtin.ops if op.name.startswith("blocks.0.")]
    assert flops(wl, ("gemm",)) == sum(op.dense_flops for op in block0 if op.kind == "gemm")
    assert flops(wl, ("matmul",)) == sum(op.dense_flops for op in block0 if op.kind == "matmul")


def test_patterns_read_from_masked_weights():
    torch.manual_seed(0)
    model = Block()
    nm_prune_(model.fc1.weight, 1, 8)
    nm_prune_(model.fc2.weight, 2, 4)
    nm_prune_(model.qkv.weight, 1, 4)
    wl = capture(model, (2, 10, 64))
    pats = {op.name: op.pattern for op in wl.ops if op.kind == "gemm"}
    assert pats == {"qkv": NM(1, 4), "proj": NM(1, 1), "fc1": NM(1, 8), "fc2": NM(2, 4)}
    assert wl.meta["pattern"] == "mixed"


def test_infer_pattern_edge_cases():
    torch.manual_seed(0)
    w = torch.randn(16, 64)
    assert infer_pattern(w).is_dense
    w[torch.rand_like(w) < 0.5] = 0  # unstructured 50%: some 4-group keeps 4 -> not N:M
    assert infer_pattern(w).is_dense
    w = torch.randn(16, 64)
    nm_prune_(w, 2, 16)
    assert infer_pattern(w) == NM(2, 16)
    assert infer_pattern(w, candidate_m=(4, 8)).is_dense  # 2:16 is not a consistent 1:8 or x:4
    # a weight used as x @ W (K, N): groups along dim 0
    w = torch.randn(64, 16)
    nm_prune_(w, 1, 4, dim=0)
    assert infer_pattern(w, reduction_dim=0) == NM(1, 4)


def test_conv_im2col_and_conv_patterns():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                          nn.Conv2d(32, 32, 3, padding=1, groups=4))
    nm_prune_(model[2].weight, 2, 8, dim=1)  # groups of input channels at a fixed kernel position
    wl = capture(model, (2, 3, 8, 8))
    g = [op for op in wl.ops if op.kind == "gemm"]
    assert [(op.m, op.n, op.k, op.batch) for op in g] == [
        (2 * 8 * 8, 16, 3 * 9, 1), (2 * 4 * 4, 32, 16 * 9, 1), (2 * 4 * 4, 8, 8 * 9, 4)]
    assert [op.pattern for op in g] == [NM(1, 1), NM(2, 8), NM(1, 1)]
    assert flops(wl) == 2 * (128 * 16 * 27 + 32 * 32 * 144 + 4 * 32 * 8 * 72)


def test_x_at_weight_parameter_layout():
    """GPT-2 style Conv1D: y = addmm(b, x, W) with W (in, out); groups run along W's dim 0."""

    class Conv1D(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(32, 48))
            self.bias = nn.Parameter(torch.zeros(48))

        def forward(self, x):
            return torch.addmm(self.bias, x.view(-1, 32), self.weight).view(*x.shape[:-1], 48)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = Conv1D()

        def forward(self, x):
            return self.c_fc(x)

    net = Net()
    nm_prune_(net.c_fc.weight, 1, 4, dim=0)
    (op,) = [o for o in capture(net, (3, 5, 32)).ops if o.kind == "gemm"]
    assert (op.name, op.m, op.n, op.k, op.pattern) == ("c_fc", 15, 48, 32, NM(1, 4))


def test_meta_model_too_big_for_memory():
    # 8 x Linear(65536, 65536): 34e9 parameters, 137 GB in fp32; never materialised
    with torch.device("meta"):
        big = nn.Sequential(*[nn.Linear(65536, 65536, bias=False) for _ in range(8)])
    wl = capture(big, (4, 65536), patterns={"3": "2:4"})
    gemms = [op for op in wl.ops if op.kind == "gemm"]
    assert len(gemms) == 8 and flops(wl) == 8 * 2 * 4 * 65536 * 65536
    assert [str(op.pattern) for op in gemms] == ["1:1"] * 3 + ["2:4"] + ["1:1"] * 4
    assert wl.meta["params"] == 8 * 65536 ** 2


def test_pattern_override_and_errors():
    model = MLP()
    wl = capture(model, (2, 32), patterns={"fc1": NM(1, 8)})
    assert {op.name: op.pattern for op in wl.ops if op.kind == "gemm"} == {"fc1": NM(1, 8), "fc2": NM(1, 1)}
    with pytest.raises(ConfigError, match="fc3"):
        capture(model, (2, 32), patterns={"fc3": NM(2, 4)})
    with pytest.raises(ShapeError, match="fc2.*64"):
        capture(model, (2, 32), patterns={"fc2": NM(1, 128)})
    with pytest.raises(ConfigError, match="dtype"):
        capture(model, (2, 32), dtype="fp12")


def test_auto_falls_back_to_fx_when_export_fails(monkeypatch):
    def broken_export(*args, **kwargs):
        raise RuntimeError("export cannot trace this model")

    monkeypatch.setattr(torch.export, "export", broken_export)
    wl = capture(MLP(), (4, 32))
    assert wl.meta["capture"].startswith("fx (export failed: RuntimeError")
    assert flops(wl) == 2 * 4 * 64 * 32 + 2 * 4 * 10 * 64
    with pytest.raises(RuntimeError):
        capture(MLP(), (4, 32), method="export")


def test_token_inputs_and_embedding():
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Embedding(100, 16), nn.Linear(16, 100)

        def forward(self, ids):
            return self.head(self.embed(ids))

    wl = capture(LM(), (torch.zeros(2, 5, dtype=torch.long),))
    emb = [op for op in wl.ops if op.role == "embedding"]
    assert len(emb) == 1 and emb[0].elements == 2 * 5 * 16 and emb[0].flops_per_element == 0
    head = next(op for op in wl.ops if op.kind == "gemm")
    assert (head.role, head.m, head.n, head.k) == ("head", 10, 100, 16)


@pytest.mark.filterwarnings("ignore:The tensor attributes")  # torch's own LSTM under export
def test_torch_transformer_layer_roles_and_unmodelled_ops():
    layer = nn.TransformerEncoderLayer(64, 4, 256, batch_first=True)
    wl = capture(layer, (2, 10, 64))
    roles = {op.name: op.role for op in wl.ops if op.kind == "gemm"}
    # the training side's names and roles (train.sparsify.infer_roles): packed MHA in_proj is qkv
    assert roles == {"self_attn.in_proj_weight": "qkv", "self_attn.out_proj": "proj", "linear1": "fc1", "linear2": "fc2"}
    assert flops(wl) == 2 * 20 * 64 * (3 * 64 + 64 + 2 * 256) + 2 * 2 * (2 * 4 * 10 * 10 * 16)
    # an op the cost model has no rule for is reported, not dropped
    lstm = capture(nn.LSTM(16, 32, batch_first=True), (2, 5, 16))
    assert lstm.meta["unmodelled_ops"] == {"lstm": 1}
    from pgf_sim.sim.simulate import simulate

    assert "not counted: {'lstm': 1}" in simulate(lstm, "a100_80gb").format_table()


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), groups=st.integers(1, 4), m=st.sampled_from([4, 8, 16, 32]),
       keep=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_inferred_pattern_is_satisfied_and_at_least_as_sparse(rows, groups, m, keep, seed):
    n = max(1, min(m, round(keep * m)))
    w = torch.randn(rows, groups * m, generator=torch.Generator().manual_seed(seed))
    nm_prune_(w, n, m)
    p = infer_pattern(w)
    assert p.density <= n / m
    if not p.is_dense:  # every group of p.m holds at most p.n non-zeros
        assert int((w != 0).reshape(rows, -1, p.m).sum(-1).max()) <= p.n


def test_linear_with_a_computed_matrix_is_an_activation_matmul():
    class Hyper(nn.Module):
        def __init__(self):
            super().__init__()
            self.gen = nn.Linear(8, 16 * 8)

        def forward(self, x, z):
            return F.linear(x, self.gen(z).view(16, 8))  # weight computed from z

    wl = capture(Hyper(), ((3, 8), (8,)))
    kinds = [(op.name, op.kind, op.m, op.n, op.k) for op in wl.ops if op.kind != "elementwise"]
    assert kinds == [("gen", "gemm", 1, 128, 8), ("matmul", "matmul", 3, 16, 8)]


class _Cache:
    """As transformers' DynamicCache: a plain object holding the keys, returned beside the logits."""

    def __init__(self):
        self.keys = []


class _CachingDecoder(nn.Module):
    """A decoder with Hugging Face's calling convention: ``config.use_cache`` (default True) makes
    ``forward`` return a cache object, which no tracer can return."""

    def __init__(self):
        import types

        super().__init__()
        self.config = types.SimpleNamespace(use_cache=True)
        self.emb = nn.Embedding(50, 16)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 50)

    def forward(self, ids):
        h = self.emb(ids)
        out = self.fc2(torch.relu(self.fc1(h)))
        if self.config.use_cache:
            cache = _Cache()
            cache.keys.append(h)
            return out, cache
        return (out,)


def test_hf_style_decoder_with_its_default_cache_is_captured_without_it():
    model = _CachingDecoder()
    with pytest.raises(Exception):  # what a user met before: the tracers cannot return the cache object
        torch.export.export(model, (torch.zeros(1, 8, dtype=torch.long),), strict=False)
    w = capture(model, (torch.zeros(1, 8, dtype=torch.long),))
    assert [op.name for op in w.ops if op.kind == "gemm"] == ["fc1", "fc2"]
    assert "use_cache was set to False" in w.meta["note"]
    assert model.config.use_cache is True  # restored


def test_hugging_face_gpt2_captures_with_its_default_cache():
    """GPT-2 from transformers (random weights, config.use_cache=True as shipped) captures in one
    call; before, the tracers failed on the returned DynamicCache with a ~40-line traceback."""
    transformers = pytest.importorskip("transformers", reason="pip install transformers (in the test extras)")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    assert cfg.use_cache is True
    model = transformers.GPT2LMHeadModel(cfg)
    w = capture(model, (torch.zeros(1, 16, dtype=torch.long),), name="gpt2_tiny")
    gemms = [op.name for op in w.ops if op.kind == "gemm"]
    # per block: the fused qkv (c_attn), the attention output and the MLP's two (GPT-2's Conv1D), then the head
    assert sum(".attn.c_attn" in g for g in gemms) == 2 and sum(".mlp.c_fc" in g for g in gemms) == 2
    assert "use_cache was set to False" in w.meta["note"] and model.config.use_cache is True
