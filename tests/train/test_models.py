"""Built-in models: forward shapes for every registered model, timm-style layer names, errors."""
import pytest
import torch

from pgf_sim.core import ConfigError
from pgf_sim.train.data import DataSpec
from pgf_sim.train.experiment import ModelConfig
from pgf_sim.train.models import MODELS, build_model

pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = {
    "vit": DataSpec("image", (3, 8, 8), 7),
    "seq_transformer": DataSpec("tokens", (10,), 3, vocab_size=5),
    "char_gpt": DataSpec("lm", (10,), 7, vocab_size=7),
}


def _input(spec, batch=4):
    if spec.kind in ("tokens", "lm"):
        return torch.randint(0, spec.vocab_size, (batch, *spec.input_shape))
    return torch.randn(batch, *spec.input_shape)


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("qkv", ["fused", "separate"])
def test_forward_shape_and_backward(name, qkv):
    spec = SPECS[name]
    model = build_model(ModelConfig(name, {"dim": 16, "depth": 2, "heads": 2, "qkv": qkv}), spec)
    out = model(_input(spec))
    # next-token models give logits at every position, classifiers one row per example
    assert out.shape == ((4, 10, spec.num_classes) if spec.kind == "lm" else (4, spec.num_classes))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", MODELS.names())
def test_layer_names_follow_timm(name):
    model = build_model(ModelConfig(name, {"dim": 16, "depth": 2, "heads": 2}), SPECS[name])
    names = {n for n, _ in model.named_modules()}
    for i in range(2):
        assert {f"blocks.{i}.attn.qkv", f"blocks.{i}.attn.proj", f"blocks.{i}.mlp.fc1", f"blocks.{i}.mlp.fc2"} <= names
    assert "head" in names
    assert model.get_submodule("blocks.0.mlp.fc1").weight.shape == (64, 16)  # mlp_ratio 4
    separate = build_model(ModelConfig(name, {"dim": 16, "depth": 1, "heads": 2, "qkv": "separate"}), SPECS[name])
    assert {"blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v"} <= {n for n, _ in separate.named_modules()}


def test_vit_patch_count_and_errors():
    model = build_model(ModelConfig("vit", {"patch_size": 4, "dim": 8, "heads": 2, "depth": 1}), DataSpec("image", (1, 8, 8), 10))
    assert model.pos_embed.shape == (1, 4 + 1, 8)  # (8/4)^2 patches + cls
    assert isinstance(model.patch_embed, torch.nn.Conv2d)
    with pytest.raises(ConfigError, match="patch_size 3 does not divide the image size 8x8"):
        build_model(ModelConfig("vit", {"patch_size": 3}), DataSpec("image", (1, 8, 8), 10))
    with pytest.raises(ConfigError, match="needs image data"):
        build_model(ModelConfig("vit"), SPECS["seq_transformer"])
    with pytest.raises(ConfigError, match="needs token data"):
        build_model(ModelConfig("seq_transformer"), SPECS["vit"])


def test_fused_and_separate_attention_agree():
    spec = SPECS["vit"]
    torch.manual_seed(0)
    fused = build_model(ModelConfig("vit", {"dim": 16, "depth": 1, "heads": 2}), spec).eval()
    sep = build_model(ModelConfig("vit", {"dim": 16, "depth": 1, "heads": 2, "qkv": "separate"}), spec).eval()
    state = {k: v for k, v in fused.state_dict().items() if ".attn.qkv." not in k}
    for kind in ("weight", "bias"):
        q, k, v = fused.state_dict()[f"blocks.0.attn.qkv.{kind}"].chunk(3)
        state.update({f"blocks.0.attn.q.{kind}": q, f"blocks.0.attn.k.{kind}": k, f"blocks.0.attn.v.{kind}": v})
    sep.load_state_dict(state)
    x = _input(spec)
    torch.testing.assert_close(fused(x), sep(x))


@pytest.mark.parametrize("qkv", ["fused", "separate"])
def test_roles_are_recognised_by_infer_roles(qkv):
    from pgf_sim.train.sparsify import infer_roles

    model = build_model(ModelConfig("vit", {"dim": 16, "depth": 1, "heads": 2, "qkv": qkv}), SPECS["vit"])
    roles = infer_roles(model)
    expected = {"patch_embed": "patch_embed", "blocks.0.attn.proj": "proj", "blocks.0.mlp.fc1": "fc1",
                "blocks.0.mlp.fc2": "fc2", "head": "head"}
    expected.update({"blocks.0.attn.qkv": "qkv"} if qkv == "fused" else
                    {f"blocks.0.attn.{r}": r for r in ("q", "k", "v")})
    assert roles == expected


class _UserModel(torch.nn.Module):
    """A model the user wrote from stock torch layers (not ours): TransformerEncoderLayer blocks."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(8, 32)
        layer = torch.nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(1))


def test_a_user_model_built_from_torch_layers_is_sparsified():
    from pgf_sim.core import NM
    from pgf_sim.train.masks import complies
    from pgf_sim.sparsity.schedules import RecipeConfig
    from pgf_sim.train.sparsify import sparsify

    torch.manual_seed(0)
    model = _UserModel()
    steps = 30
    ctl = sparsify(model, RecipeConfig(name="mdgf", pattern=NM(2, 4)), steps)
    ff = {f"encoder.layers.{i}.{n}" for i in range(2) for n in ("linear1", "linear2")}
    assert set(ctl.layer_info()) == ff  # the MLP of every block, found by role (linear1/linear2)
    x, y = torch.randn(16, 5, 8), torch.randint(0, 3, (16,))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        ctl.set_step(step)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # it learns (memorises the fixed batch)
    ctl.finalize(early=True)  # one-shot pruning of an untrained model is what this test wants
    for name in ff:
        assert complies(model.get_submodule(name).weight, NM(2, 4)), name
    attn = model.encoder.layers[0].self_attn
    assert (attn.in_proj_weight != 0).all() and (attn.out_proj.weight != 0).all()  # attention stays dense
    model.eval()  # the inference fast path reads linear1.weight directly: still the sparse weights
    assert model(x).shape == (16, 3)
