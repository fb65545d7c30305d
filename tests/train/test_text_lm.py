"""Character-level language modelling: causal masking, bpc by hand, splits, tokenizer, corpus."""
import hashlib
import math
from importlib import resources

import pytest
import torch
from torch import nn

from pgf_sim.core import ConfigError
from pgf_sim.train.data import DataSpec, load_data
from pgf_sim.train.experiment import DataConfig, ModelConfig, TextOptions
from pgf_sim.train.models import build_model
from pgf_sim.train.sparsify import infer_roles
from pgf_sim.train.text import CORPUS_FILE, CharTokenizer, TextData, build_text_data, split_document
from pgf_sim.train.trainer import evaluate

# docs/data.md states this checksum of the shipped archive
CORPUS_SHA256 = "0c41e2e7c50b5b12ac05ad968a1d2917cf3079715b492f1d432ad6dfd821e58d"


def _gpt(tie=False, qkv="fused"):
    torch.manual_seed(0)
    spec = DataSpec("lm", (12,), 11, vocab_size=11)
    opts = {"dim": 16, "depth": 2, "heads": 2, "tie_embeddings": tie, "qkv": qkv}
    return build_model(ModelConfig("char_gpt", opts), spec).eval()


@pytest.mark.parametrize("qkv", ["fused", "separate"])
def test_logits_at_t_do_not_depend_on_later_tokens(qkv):
    model = _gpt(qkv=qkv)
    x = torch.randint(0, 11, (3, 12))
    base = model(x)
    for t in range(11):
        y = x.clone()
        y[:, t + 1:] = torch.randint(0, 11, (3, 11 - t))  # change every token after t
        out = model(y)
        torch.testing.assert_close(out[:, :t + 1], base[:, :t + 1], rtol=0, atol=1e-6)
    z = x.clone()
    z[:, 5] = (z[:, 5] + 1) % 11  # ...while a change at t does reach t and later positions
    changed = (model(z) - base).abs().amax(dim=(0, 2))
    assert (changed[:5] < 1e-6).all() and (changed[5:] > 1e-4).all()


def test_roles_are_inferred_like_the_vit():
    roles = infer_roles(_gpt())
    assert roles["blocks.0.attn.qkv"] == "qkv" and roles["blocks.1.attn.proj"] == "proj"
    assert roles["blocks.0.mlp.fc1"] == "fc1" and roles["blocks.0.mlp.fc2"] == "fc2" and roles["head"] == "head"


def test_tied_embeddings_share_one_table():
    model = _gpt(tie=True)
    assert model.head.weight is model.tok_embed.weight
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in _gpt().parameters()) - 11 * 16


class _Bigram(nn.Module):
    """Fixed next-token probabilities: after 0, P(1) = 0.75; after 1, P(0) = P(1) = 0.5."""

    def forward(self, x):
        probs = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
        return probs.log()[x]  # (B, T, 2)


def test_bpc_equals_a_hand_computation():
    stream = torch.tensor([0, 1, 1, 0, 1])
    spec = DataSpec("lm", (2,), 2, vocab_size=2)
    data = TextData(spec, CharTokenizer("ab"), stream, stream, stream, None)
    # windows of 2: x=[0,1] y=[1,1]; x=[1,0] y=[0,1] -> P = 0.75, 0.5, 0.5, 0.75
    bits = -(2 * math.log2(0.75) + 2 * math.log2(0.5)) / 4
    assert bits == pytest.approx(0.7075187496)
    got = evaluate(_Bigram(), data, torch.device("cpu"), False, "val")
    assert got["bpc"] == pytest.approx(bits, rel=1e-6)
    assert got["loss"] == pytest.approx(bits * math.log(2), rel=1e-6)
    assert got["perplexity"] == pytest.approx(2 ** bits, rel=1e-6)
    assert got["accuracy"] == 0.75  # the 0.5/0.5 tie predicts token 0 (argmax takes the first)


def test_documents_split_in_order_and_every_split_sees_every_document():
    tr, va, te = split_document("abcdefghijklmnopqrst", 0.1, 0.2)
    assert (tr, va, te) == ("abcdefghijklmn", "op", "qrst")
    opts = TextOptions(block_size=4, val_fraction=0.1, test_fraction=0.2)
    data = build_text_data(["A" * 40 + "x" * 10, "B" * 40 + "y" * 10], opts, "test")
    dec = data.tokenizer.decode
    # each document: 35 train, 5 validation, 10 test characters (the x / y tails are all test)
    assert dec(data.train) == "A" * 35 + "\n" + "B" * 35 and dec(data.val) == "AAAAA\nBBBBB"
    assert data.tokenizer.chars == "\nAB"  # vocabulary of the training split only
    assert dec(data.test) == "\ufffd" * 10 + "\n" + "\ufffd" * 10  # x and y never occur in training: unknown


def test_tokenizer_maps_unseen_characters_to_the_unknown_id():
    tok = CharTokenizer.fit("abca", "char")
    assert tok.vocab_size == 4 and tok.encode("cab").tolist() == [2, 0, 1]
    assert tok.encode("aZ").tolist() == [0, 3] and tok.decode([0, 3]) == "a\ufffd"
    byte = CharTokenizer.fit("anything", "byte")
    assert byte.vocab_size == 256 and byte.decode(byte.encode("héllo")) == "héllo"


def test_training_batches_are_a_function_of_seed_and_step_and_evaluation_is_fixed():
    opts = TextOptions(block_size=8, eval_chars=64)
    data = build_text_data(["the quick brown fox jumps over the lazy dog. " * 20], opts, "test")
    x1, y1 = data.train_batch(4, seed=3, step=7)
    x2, y2 = data.train_batch(4, seed=3, step=7)
    assert torch.equal(x1, x2) and torch.equal(x1[:, 1:], y1[:, :-1])
    halves = [data.train_batch(4, seed=3, step=7, rank=r, world=2)[0] for r in (0, 1)]
    assert torch.equal(torch.cat([halves[0], halves[1]])[[0, 2, 1, 3]], x1)  # ranks split one global batch
    windows = list(data.eval_batches("val"))
    assert sum(y.numel() for _, y in windows) == (min(64, len(data.val)) - 1) // 8 * 8
    assert all(torch.equal(a[0], b[0]) for a, b in zip(windows, data.eval_batches("val")))


def test_the_shipped_corpus_is_the_42_plays_with_its_documented_checksum():
    blob = resources.files("pgf_sim.train").joinpath("corpora", CORPUS_FILE).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == CORPUS_SHA256
    data = load_data(DataConfig("shakespeare", {"block_size": 64}))
    total = len(data.train) + len(data.val) + len(data.test)
    assert total == 5_057_198 + 3 * 41  # the 42 plays' characters + 41 joining newlines in each of 3 splits
    assert len(data.val) == pytest.approx(0.05 * total, rel=0.01) and data.spec.vocab_size == 85
    assert "HAMLET, PRINCE OF DENMARK" in data.tokenizer.decode(data.train[:2_000_000])


def test_local_text_file_or_folder(tmp_path):
    (tmp_path / "a.txt").write_text("hello world, " * 50)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("goodbye moon. " * 50)
    folder = load_data(DataConfig("text", {"path": str(tmp_path), "block_size": 8}))
    one = load_data(DataConfig("text", {"path": str(tmp_path / "a.txt"), "block_size": 8}))
    assert len(folder.train) > len(one.train) and "m" in folder.tokenizer.chars and "m" not in one.tokenizer.chars
    with pytest.raises(ConfigError, match="neither a file nor a folder"):
        load_data(DataConfig("text", {"path": str(tmp_path / "nope")}))
    with pytest.raises(ConfigError, match="fewer than block_size"):
        load_data(DataConfig("text", {"path": str(tmp_path / "a.txt"), "block_size": 60}))
