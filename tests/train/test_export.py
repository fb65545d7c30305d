"""Compressed N:M export: bit packing by hand, exact round-trip, sizes, refusals."""
import json
from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pgf_sim.core import NM, ConfigError, ShapeError
from pgf_sim.train.export import export_compressed, load_compressed, pack_bits, read_compressed, unpack_bits
from pgf_sim.sparsity.schedules import RecipeConfig
from pgf_sim.train.sparsify import sparsify


def test_pack_bits_by_hand():
    # 2-bit indices 1, 2, 3, 0 little-endian: 0b00_11_10_01 = 57; then 2 alone in the next byte
    assert pack_bits(torch.tensor([1, 2, 3, 0, 2]), 2).tolist() == [57, 2]
    # 3-bit: 5 = 101, 6 = 110 -> stream bits 1,0,1, 0,1,1 -> byte 0b110101 = 53
    assert pack_bits(torch.tensor([5, 6]), 3).tolist() == [53]
    with pytest.raises(ValueError):
        pack_bits(torch.tensor([4]), 2)


@settings(max_examples=50, deadline=None)
@given(bits=st.integers(1, 8), data=st.data())
def test_pack_unpack_round_trip(bits, data):
    values = data.draw(st.lists(st.integers(0, 2**bits - 1), max_size=40))
    packed = pack_bits(torch.tensor(values, dtype=torch.int64), bits)
    assert packed.dtype == torch.uint8 and packed.numel() == (len(values) * bits + 7) // 8
    assert unpack_bits(packed, bits, len(values)).tolist() == values


def _model():
    return nn.Sequential(OrderedDict(
        stem=nn.Conv2d(32, 16, 3), flat=nn.Flatten(), fc1=nn.Linear(16 * 4 * 4, 64), act=nn.ReLU(),
        fc2=nn.Linear(64, 32), head=nn.Linear(32, 10)))


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("pattern", [NM(2, 4), NM(1, 8), NM(3, 16), NM(1, 32)], ids=str)
def test_export_load_round_trip_is_bit_exact(tmp_path, pattern, dtype):
    torch.manual_seed(0)
    model = _model().to(dtype)
    ctl = sparsify(model, RecipeConfig(name="ste", pattern=pattern, roles=("*",), exclude=("head",)), 10)
    ctl.finalize(early=True)  # one-shot pruning of an untrained model is what this test wants
    report = export_compressed(model, tmp_path / "m.safetensors", ctl.target_patterns())
    fresh = _model().to(dtype)
    patterns = load_compressed(tmp_path / "m.safetensors", fresh)
    assert patterns == {"stem.weight": pattern, "fc1.weight": pattern, "fc2.weight": pattern}
    expected = model.state_dict()
    assert set(fresh.state_dict()) == set(expected)
    for key, value in fresh.state_dict().items():
        assert _bits_equal(value, expected[key]), key
    # Size by hand: per sparse weight, N values of the dtype + N indices of ceil(log2 M) bits per group
    value_bytes = torch.empty(0, dtype=dtype).element_size()
    sparse = [16 * 32 * 3 * 3, 64 * 256, 32 * 64]
    groups = [n // pattern.m for n in sparse]
    expected_bytes = sum(g * pattern.n * value_bytes + (g * pattern.n * pattern.index_bits + 7) // 8 for g in groups)
    assert report.sparse_weight_bytes == expected_bytes
    assert report.sparse_weight_dense_bytes == sum(sparse) * value_bytes
    assert report.compressed_bytes < report.dense_bytes and report.file_bytes > report.compressed_bytes
    assert f"({report.ratio:.1%})" in report.summary()


def test_round_trip_of_packed_qkv_and_metadata(tmp_path):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    ctl = sparsify(layer, RecipeConfig(name="sdgf", pattern=NM(2, 8), qkv_pattern=NM(1, 4)), 4)
    ctl.finalize(early=True)  # one-shot pruning of an untrained model is what this test wants
    export_compressed(layer, tmp_path / "t.safetensors", ctl.target_patterns())
    fresh = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    load_compressed(tmp_path / "t.safetensors", fresh)
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(fresh(x), layer(x), rtol=0, atol=0)
    from safetensors import safe_open
    with safe_open(str(tmp_path / "t.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["nm"])
    assert meta["self_attn.in_proj_weight"] == {"pattern": "1:4", "shape": [48, 16], "dtype": "float32",
                                               "reduction_dim": 1}


def test_refuses_unfinalized_weights_and_foreign_files(tmp_path):
    model = _model()
    with pytest.raises(ShapeError, match="'fc1'.*not 2:4 sparse.*finalize"):
        export_compressed(model, tmp_path / "x.safetensors", {"fc1": NM(2, 4)})
    with pytest.raises(ConfigError, match="no weight layer named"):
        export_compressed(model, tmp_path / "x.safetensors", {"nope": NM(2, 4)})
    from safetensors.torch import save_file
    save_file({"a": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ConfigError, match="not a pgf_sim compressed export"):
        read_compressed(tmp_path / "plain.safetensors")


def test_negative_zero_kept_value_and_under_full_groups_round_trip(tmp_path):
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(8, 2, bias=False)))
    with torch.no_grad():  # 2:4 groups: [0, -0.0, 0, 0] [1, 0, 0, 2] / [0, 0, 0, 0] [0, 3, -0.0, 0]
        model.fc1.weight.copy_(torch.tensor([[0.0, -0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0],
                                             [0.0, 0.0, 0.0, 0.0, 0.0, 3.0, -0.0, 0.0]]))
    export_compressed(model, tmp_path / "z.safetensors", {"fc1": NM(2, 4)})
    fresh = nn.Sequential(OrderedDict(fc1=nn.Linear(8, 2, bias=False)))
    load_compressed(tmp_path / "z.safetensors", fresh)
    assert _bits_equal(fresh.fc1.weight.detach(), model.fc1.weight.detach())
