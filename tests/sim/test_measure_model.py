"""``pgf-sim measure --model``: built-in models built as torch modules and timed on the CPU,
decode-shaped steps of decoders, model-level 2:4 entries, and the trust boundary of a user's
``module:function``."""
import math
import sys

import pytest
import yaml

from pgf_sim.cli import main
from pgf_sim.core.errors import ConfigError
from pgf_sim.core.trust import UntrustedError
from pgf_sim.sim import measure as m
from pgf_sim.sim.measurements import load_measurements
from pgf_sim.sim.workloads import ARCHS, Arch, param_count

QUICK = {"min_block_s": 0.002, "blocks": 3, "threads": 1}
GEMM = ["--tiny", "--threads", "1", "--m", "1", "--nk", "64x64"]  # the smallest GEMM grid beside a model
# Small stand-ins of the built-in families (the layouts of LLaMA and BERT: RMSNorm, SwiGLU, RoPE,
# grouped-query attention; post-norm, token types, pooler) for the registry while a test runs.
TINY = {
    "tiny_llama": Arch("tiny_llama", "decoder", 2, 64, 4, 128, kv_heads=2, norm="rmsnorm", mlp="swiglu", bias=False,
                       vocab=97, tied_head=False, rope=True, default_seq_len=16, source="test"),
    "tiny_gpt": Arch("tiny_gpt", "decoder", 2, 64, 4, 256, fused_qkv=True, vocab=97, learned_positions=32,
                     default_seq_len=16, source="test"),
    "tiny_bert": Arch("tiny_bert", "encoder", 2, 64, 4, 256, pre_norm=False, vocab=97, learned_positions=32,
                      type_vocab=2, default_seq_len=16, source="test"),
}


@pytest.fixture
def tiny_archs(monkeypatch):
    for name, arch in TINY.items():
        monkeypatch.setitem(ARCHS._items, name, arch)  # noqa: SLF001 - a test-only registration


def test_every_buildable_model_has_the_simulators_parameter_count():
    import torch

    names = m.model_names()
    assert {"vit_ti", "vit_b", "bert_base", "gpt2", "llama_7b"} <= set(names) and "t5_base" not in names
    for name in names:
        with torch.device("meta"):  # shapes only: llama_7b allocates nothing
            model = m._builtin_module(torch, ARCHS.get(name))()
        model.tie()
        assert sum(p.numel() for p in model.parameters()) == param_count(name), name


def test_vit_forward_on_the_cpu_through_the_cli(tmp_path, capsys):
    out = tmp_path / "vit.yaml"
    assert main(["measure", *GEMM, "--model", "vit_ti", "--batch", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.startswith("model vit_ti forward, batch 1 x 197 tokens fp32 eager"))
    assert float(line.split("dense ")[1].split(" ms")[0]) > 0
    assert "note: model kernel timing is a CUDA graph replay: none on the CPU; the model is timed eager only" in text
    assert "dense model times printed only" in text
    raw = yaml.safe_load(out.read_text())  # the GEMM cases as usual; no dense-only model entry
    assert raw["sparse"] == [] and {c["timing"] for c in raw["dense"]} == {"kernel", "eager"}
    assert len(load_measurements(out).dense) == 2


def test_decoders_get_a_decode_step_and_the_llama_and_bert_layouts_run(tiny_archs):
    r = m.measure_model("tiny_llama", batches=(1, 2), seq_lens=(8,), **QUICK)
    shapes = [(row["step"], row["batch"], row["seq_len"], row["timing"]) for row in r["models"]]
    assert shapes == [("forward", 1, 8, "eager"), ("forward", 2, 8, "eager"), ("decode", 1, 1, "eager"),
                      ("decode", 2, 1, "eager")]
    assert all(row["dense_s"] > 0 and math.isfinite(row["dense_s"]) and row["sparse_s"] is None for row in r["models"])
    assert "no KV cache" in r["models"][2]["source"] and r["sparse"] == []
    bert = m.measure_model("tiny_bert", **QUICK)  # default seq_len, no decode step for an encoder
    assert [(row["step"], row["seq_len"]) for row in bert["models"]] == [("forward", 16)]
    with pytest.raises(ConfigError, match="--decode: tiny_bert is an encoder model"):
        m.measure_model("tiny_bert", decode=True, **QUICK)


def test_model_2_4_entries_load_and_validate(tiny_archs, monkeypatch, tmp_path, capsys):
    """On the CPU with a stand-in for the CUDA-only compression: a built-in model with dense and
    2:4 times is written as ``kind: model`` entries the simulator predicts."""
    monkeypatch.setattr(m, "sparse_support", lambda device: None)
    monkeypatch.setattr(m, "_semi_structured", lambda w: w.clone())
    out = tmp_path / "model.yaml"
    argv = ["measure", *GEMM, "--model", "tiny_gpt", "--batch", "2", "--seq-len", "8", "--timing", "eager",
            "--target", "cpu_host", "--out", str(out)]
    assert main(argv) == 0
    assert "model tiny_gpt decode step (1 token), batch 2 x 1 tokens fp32 eager: dense" in capsys.readouterr().out
    cases = [c for c in load_measurements(out).sparse if c.kind == "model"]
    assert [(c.model, c.batch, c.seq_len, c.timing) for c in cases] == [("tiny_gpt", 2, 8, "eager"),
                                                                        ("tiny_gpt", 2, 1, "eager")]
    assert all(c.dense_s > 0 and c.sparse_s > 0 for c in cases)
    assert "MLP and Q/K/V weights (6 layers) pruned to 2:4" in cases[0].source  # 2 x (qkv, fc1, fc2)
    assert main(["validate", "--measurements", str(out), "--no-loo"]) == 0
    assert "tiny_gpt forward, batch 2 x 8 tokens" in capsys.readouterr().out


@pytest.mark.parametrize("name, message", [
    ("nope", "--model 'nope': unknown model; valid: bert_base, gpt2, llama_7b, vit_b, vit_l, vit_s, vit_ti, or "
             "'package.module:function'"),
    ("t5_base", "measure does not build encdec models (encoder-decoder)"),
    ("os:getcwd", "is part of the Python standard library"),
    ("not a path:x y", "is not an import path"),
])
def test_bad_model_names_are_one_clear_line(name, message, tmp_path, capsys):
    assert main(["measure", *GEMM, "--model", name, "--out", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.yaml").exists()


def test_bad_shapes_name_the_model():
    with pytest.raises(ConfigError, match="seq_len is fixed at 197"):
        m.measure_model("vit_ti", seq_lens=(64,), **QUICK)
    with pytest.raises(ConfigError, match="exceeds its 1024 learned positions"):
        m.measure_model("gpt2", seq_lens=(2048,), **QUICK)


PROBE = '''
import pathlib
import torch

pathlib.Path({sentinel!r}).write_text("imported")


def build():
    return torch.nn.Sequential(torch.nn.Embedding(50, 32), torch.nn.Linear(32, 50))


def not_a_module():
    return 3
'''


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A user's module that leaves a file behind when it is imported."""
    name = "pgf_measure_probe"
    sentinel = tmp_path / "imported.txt"
    (tmp_path / f"{name}.py").write_text(PROBE.format(sentinel=str(sentinel)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name, sentinel
    sys.modules.pop(name, None)


def test_untrusted_factory_is_refused_before_import(probe, tmp_path, capsys):
    name, sentinel = probe
    assert main(["measure", *GEMM, "--model", f"{name}:build", "--out", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"--model '{name}:build': module '{name}' is not trusted; nothing was imported" in err
    assert f"--trust-module {name}" in err
    assert not sentinel.exists() and name not in sys.modules
    with pytest.raises(UntrustedError):
        m.measure_model(f"{name}:build", **QUICK)
    assert not sentinel.exists()


def test_trusted_factory_is_timed_and_printed_only(probe, tmp_path, capsys):
    name, sentinel = probe
    out = tmp_path / "x.yaml"
    argv = ["measure", *GEMM, "--model", f"{name}:build", "--trust-module", name, "--batch", "2", "--seq-len", "8",
            "--decode", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert sentinel.exists()
    assert f"model {name}:build forward, batch 2 x 8 tokens fp32 eager: dense" in text
    assert f"model {name}:build decode step (1 token), batch 2 x 1 tokens fp32 eager: dense" in text
    assert "times printed only (a user's module is not a built-in model" in text
    assert yaml.safe_load(out.read_text())["sparse"] == []
    assert main(["measure", *GEMM, "--model", f"{name}:not_a_module", "--trust-module", name, "--out", str(out)]) == 2
    assert "returned a int, not a torch nn.Module" in capsys.readouterr().err
