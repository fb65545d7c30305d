"""sparsify(): layer roles and selection, forward equivalence, shape errors, checkpoint round-trip, finalize."""
import io
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from pgf_sim.core import NM, ConfigError, ShapeError
from pgf_sim.train.masks import complies, nm_mask
from pgf_sim.sparsity.schedules import RecipeConfig
from pgf_sim.train.sparsify import infer_roles, sparsify


class _Attn(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        a = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
        return self.proj(a @ v)


class _Mlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1 = nn.Linear(d, 2 * d)
        self.fc2 = nn.Linear(2 * d, d)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attn = _Attn(d)
        self.mlp = _Mlp(d)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class TinyViT(nn.Module):
    """timm naming: patch_embed.proj, blocks.N.attn.qkv/proj, blocks.N.mlp.fc1/fc2, head."""

    def __init__(self, d=16, depth=2):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, d, 2, stride=2)
        self.blocks = nn.Sequential(*[_Block(d) for _ in range(depth)])
        self.head = nn.Linear(d, 3)

    def forward(self, img):  # (B, 1, 8, 8) -> (B, 3)
        x = self.patch_embed.proj(img).flatten(2).transpose(1, 2)  # (B, 16, d)
        return self.head(self.blocks(x).mean(dim=1))


def test_infer_roles_timm_naming():
    roles = infer_roles(TinyViT(depth=1))
    assert roles == {"patch_embed.proj": "patch_embed", "blocks.0.attn.qkv": "qkv", "blocks.0.attn.proj": "proj",
                     "blocks.0.mlp.fc1": "fc1", "blocks.0.mlp.fc2": "fc2", "head": "head"}


def test_infer_roles_torch_transformer_layer_and_hf_style_names():
    roles = infer_roles(nn.TransformerEncoderLayer(8, 2, 16))
    assert roles == {"self_attn.in_proj_weight": "qkv", "self_attn.out_proj": "proj",
                     "linear1": "fc1", "linear2": "fc2"}
    names = ["encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.key",
             "encoder.layer.0.attention.self.value", "encoder.layer.0.attention.output.dense",
             "encoder.layer.0.intermediate.dense", "encoder.layer.0.output.dense", "classifier",
             "embeddings.patch_embeddings.projection", "model.layers.0.mlp.gate_proj",
             "model.layers.0.mlp.down_proj", "model.layers.0.self_attn.o_proj", "pooler.dense"]
    model = nn.Module()
    for name in names:
        parent = model
        for part in name.split(".")[:-1]:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(name.split(".")[-1], nn.Linear(4, 4))
    assert list(infer_roles(model).values()) == ["q", "k", "v", "proj", "fc1", "fc2", "head", "patch_embed",
                                                 "fc1", "fc2", "proj", "other"]


def test_default_selection_is_mlp_only_and_qkv_gets_its_own_pattern():
    ctl = sparsify(TinyViT(), RecipeConfig(name="ste", pattern=NM(2, 4)), 10)
    info = ctl.layer_info()
    assert sorted(info) == ["blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2"]
    assert info["blocks.0.mlp.fc1"] == (NM(2, 4), (32, 16), "fc1")
    ctl = sparsify(TinyViT(), RecipeConfig(name="ste", pattern=NM(2, 4), qkv_pattern=NM(1, 8)), 10)
    assert ctl.layer_info()["blocks.1.attn.qkv"].pattern == NM(1, 8)
    assert "blocks.1.attn.proj" not in ctl.layer_info() and "head" not in ctl.layer_info()


def test_forward_equals_masked_reference_and_bias_kept():
    torch.manual_seed(0)
    model = TinyViT()
    img = torch.randn(2, 1, 8, 8)
    ref = TinyViT()
    ref.load_state_dict(model.state_dict())
    ctl = sparsify(model, RecipeConfig(name="ste", pattern=NM(1, 4), roles=("*",), exclude=("patch_embed*",)), 10)
    with torch.no_grad():
        for name, mod in ref.named_modules():
            if name in ctl.layer_info():
                mod.weight.mul_(nm_mask(mod.weight, NM(1, 4)))
    torch.testing.assert_close(model(img), ref(img))
    for name, w in ctl.effective_weights().items():
        assert complies(w, NM(1, 4)), name


def test_multihead_attention_packed_qkv_is_sparsified():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    ref = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    ref.load_state_dict(layer.state_dict())
    ctl = sparsify(layer, RecipeConfig(name="ste", pattern=NM(2, 4), qkv_pattern=NM(1, 4)), 5)
    assert ctl.layer_info()["self_attn.in_proj_weight"] == (NM(1, 4), (24, 8), "qkv")
    with torch.no_grad():
        ref.self_attn.in_proj_weight.mul_(nm_mask(ref.self_attn.in_proj_weight, NM(1, 4)))
        ref.linear1.weight.mul_(nm_mask(ref.linear1.weight, NM(2, 4)))
        ref.linear2.weight.mul_(nm_mask(ref.linear2.weight, NM(2, 4)))
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(layer(x), ref(x))
    layer.eval(), ref.eval()
    with torch.no_grad():  # the inference fast path reads the weights directly: still masked
        torch.testing.assert_close(layer(x), ref(x))


def test_indivisible_layer_error_or_reported_skip():
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(6, 8), fc2=nn.Linear(8, 4)))
    with pytest.raises(ShapeError, match=r"'fc1'.*\(8, 6\)"):
        sparsify(model, RecipeConfig(name="ste", pattern=NM(2, 4)), 10)
    ctl = sparsify(model, RecipeConfig(name="ste", pattern=NM(2, 4), skip_indivisible=True), 10)
    assert list(ctl.layer_info()) == ["fc2"]
    assert ctl.skipped[0][:2] == ("fc1", (8, 6)) and "not divisible" in ctl.skipped[0][2]


def test_geometric_frame_needs_8m_and_says_so():
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(16, 8)))
    with pytest.raises(ShapeError, match=r"'fc1'.*M=64.*geometric frame of target 1:8"):
        sparsify(model, RecipeConfig(name="sdgf", pattern=NM(1, 8), sdgf_schedule="geometric"), 10)


def test_no_layer_selected_is_an_error():
    with pytest.raises(ConfigError, match="selected no layer.*roles found"):
        sparsify(nn.Sequential(nn.Linear(4, 4)), RecipeConfig(name="ste"), 10)


def _train(model, ctl, steps, start=0, seed=0):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(seed)
    for step in range(start, start + steps):
        ctl.set_step(step)
        loss = model(torch.randn(4, 1, 8, 8, generator=g)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return opt


def test_controller_state_round_trips_through_weights_only_checkpoint():
    cfg = RecipeConfig(name="mdgf+sdgf", pattern=NM(1, 4), decay="linear", sdgf_frames_fraction=0.5)
    torch.manual_seed(0)
    model = TinyViT()
    ctl = sparsify(model, cfg, 20)
    _train(model, ctl, 7)
    ctl.set_step(7)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "controller": ctl.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = TinyViT()
    ctl2 = sparsify(fresh, cfg, 20)
    fresh.load_state_dict(state["model"])
    ctl2.load_state_dict(state["controller"])
    assert ctl2.step == 7 and ctl2.layer_info() == ctl.layer_info()
    for name, mask in ctl.masks().items():
        assert torch.equal(mask, ctl2.masks()[name])
    img = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(model(img), fresh(img), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="over 20 steps"):
        sparsify(TinyViT(), cfg, 30).load_state_dict(state["controller"])


def test_finalize_leaves_plain_model_with_nm_zero_structure():
    torch.manual_seed(0)
    model = TinyViT()
    plain_keys = set(model.state_dict())
    ctl = sparsify(model, RecipeConfig(name="sr-ste", pattern=NM(2, 8)), 10)
    _train(model, ctl, 3)
    ctl.set_step(9)
    img = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        before = model(img)
    masks = ctl.finalize(early=True)  # at step 9 of 10: one step short of the end
    assert set(model.state_dict()) == plain_keys
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    for name, mask in masks.items():
        w = model.get_submodule(name).weight
        assert complies(w, NM(2, 8)) and torch.equal(w != 0, mask & (w != 0))
        assert not torch.signbit(w[~mask]).any()  # pruned entries are +0.0 (bit-exact export)
    with torch.no_grad():
        torch.testing.assert_close(model(img), before)


def test_mask_recomputed_after_weight_update_and_flip_counts():
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 1)))
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[4.0, 3.0, 2.0, 1.0]]))
    ctl = sparsify(model, RecipeConfig(name="ste", pattern=NM(2, 4)), 10)
    assert ctl.masks()["fc1"].tolist() == [[True, True, False, False]]
    assert ctl.flip_counts() == {"fc1": 0}
    with torch.no_grad():
        ctl.dense_weights()["fc1"].copy_(torch.tensor([[1.0, 3.0, 2.0, 4.0]]))  # in place, outside an optimizer
    assert ctl.masks()["fc1"].tolist() == [[True, True, False, False]]  # the step's mask holds for the step
    ctl.set_step(ctl.step)  # explicit control: recompute from the current weights
    assert ctl.masks()["fc1"].tolist() == [[False, True, False, True]]
    assert ctl.flip_counts() == {"fc1": 2}
    torch.testing.assert_close(ctl.effective_weights()["fc1"], torch.tensor([[0.0, 3.0, 0.0, 4.0]]))


def test_dense_recipe_tracks_layers_without_touching_them():
    model = TinyViT()
    ctl = sparsify(model, RecipeConfig(name="dense", pattern=NM(2, 4)), 10)
    assert all(info.pattern == NM(1, 1) for info in ctl.layer_info().values()) and len(ctl.layer_info()) == 4
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert all(mask.all() for mask in ctl.masks().values())


def test_conv_layers_are_masked_along_input_channels():
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(8, 4, 3)))
    ctl = sparsify(model, RecipeConfig(name="ste", pattern=NM(1, 4), roles=("*",)), 10)
    w = ctl.effective_weights()["conv"]
    assert (w != 0).reshape(4, 2, 4, 3, 3).sum(dim=2).max() <= 1  # 1 per 4 input channels, each (o, kh, kw)


def test_sparsifying_twice_is_refused_until_finalized():
    model = TinyViT()
    ctl = sparsify(model, RecipeConfig(name="ste"), 10)
    with pytest.raises(ConfigError, match="already parametrized"):
        sparsify(model, RecipeConfig(name="sdgf"), 10)
    ctl.finalize(early=True)
    assert sorted(sparsify(model, RecipeConfig(name="sdgf"), 10).layer_info()) == sorted(ctl.layer_info())
