"""Built-in workloads against hand counts and published model sizes."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgf_sim.core import NM, ConfigError, ShapeError, UnknownNameError
from pgf_sim.sim.workloads import (
    ARCHS, MLP_ROLES, QKV_ROLES, build_workload, gemm_workload, list_models, merge_repeats, param_count,
)

# Published parameter counts (the number each paper / model card states, and the exact count of
# the reference implementation where one exists), tolerance 1% unless stated.
PUBLISHED_PARAMS = {
    "vit_ti": 5.7e6,      # DeiT Table 1 (5M; timm vit_tiny_patch16_224: 5.72M)
    "vit_s": 22.1e6,      # DeiT Table 1 (22M; timm: 22.05M)
    "vit_b": 86.6e6,      # ViT Table 1 (86M; timm: 86.57M)
    "vit_l": 304.3e6,     # ViT Table 1 (307M incl. ... ; timm vit_large_patch16_224: 304.33M)
    "bert_base": 109.5e6,  # BERT paper "110M"; HF bert-base-uncased: 109,482,240
    "t5_base": 222.9e6,   # T5 paper "220M"; HF t5-base: 222,903,552
    "gpt2": 124.4e6,      # GPT-2 "124M" (HF gpt2: 124,439,808)
    "llama_7b": 6.74e9,   # LLaMA Table 2 "6.7B" (HF: 6,738,415,616)
}


def test_every_registered_model_has_a_published_size():
    assert set(PUBLISHED_PARAMS) == set(list_models())


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_param_counts_match_published(name):
    assert param_count(name) == pytest.approx(PUBLISHED_PARAMS[name], rel=0.01)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_every_model_builds_in_each_valid_phase(name):
    arch = ARCHS.get(name)
    phases = ["forward"] + (["prefill", "decode"] if arch.family in ("decoder", "encdec") else [])
    for phase in phases:
        wl = build_workload(name, batch=2, seq_len=None if arch.family == "vit" else 64, pattern=NM(2, 4),
                            phase=phase)
        assert wl.ops and wl.graph is not None
        assert {op.name for op in wl.ops} == set(wl.graph.nodes)
        assert all(op.dense_flops >= 0 for op in wl.ops)


def test_vit_b_hand_count():
    wl = build_workload("vit_b", batch=1, pattern=NM(1, 8))
    ops = {op.name: op for op in wl.ops}
    # per block fc1: 2 * 197 tokens * 768 * 3072 FLOPs per image
    assert ops["blocks.0.mlp.fc1"].dense_flops == 2 * 197 * 768 * 3072
    assert ops["blocks.11.mlp.fc2"].dense_flops == 2 * 197 * 3072 * 768
    assert ops["blocks.3.attn.qkv"].dense_flops == 2 * 197 * 768 * 3 * 768
    assert ops["blocks.3.attn.attn_score"].dense_flops == 2 * 12 * 197 * 197 * 64
    assert ops["patch_embed"].dense_flops == 2 * 196 * (3 * 16 * 16) * 768
    assert ops["head"].dense_flops == 2 * 1 * 768 * 1000
    matmul_flops = sum(op.dense_flops for op in wl.ops if op.kind != "elementwise")
    per_block = 2 * 197 * 768 * (3 * 768 + 768 + 2 * 3072) + 2 * 2 * 12 * 197 * 197 * 64
    assert matmul_flops == 12 * per_block + 2 * 196 * 768 * 768 + 2 * 768 * 1000
    # published: ViT-B/16 at 224px = 17.6 GFLOPs counted as multiply-adds (DeiT Table 1 / timm)
    assert matmul_flops / 2 == pytest.approx(17.6e9, rel=0.01)


def test_sparse_layers_follow_method_defaults():
    wl = build_workload("vit_b", pattern=NM(1, 8), qkv_pattern=NM(2, 4))
    for op in wl.ops:
        if op.role in MLP_ROLES:
            assert op.pattern == NM(1, 8), op.name
        elif op.role in QKV_ROLES:
            assert op.pattern == NM(2, 4), op.name
        else:  # patch embed, proj, head, attention products, element-wise
            assert op.pattern.is_dense, op.name
    no_qkv = build_workload("llama_7b", seq_len=16, pattern=NM(2, 4))
    assert {op.role for op in no_qkv.ops if not op.pattern.is_dense} == {"fc1", "fc2"}


def test_decode_vs_prefill():
    seq = 512
    pre = {o.name: o for o in build_workload("gpt2", batch=4, seq_len=seq, phase="prefill").ops}
    dec = {o.name: o for o in build_workload("gpt2", batch=4, seq_len=seq, phase="decode").ops}
    assert set(pre) == set(dec)
    # weight GEMMs of the blocks: M = batch*seq tokens vs M = batch, same weights
    assert pre["blocks.0.mlp.fc1"].m == 4 * seq and dec["blocks.0.mlp.fc1"].m == 4
    assert pre["blocks.0.mlp.fc1"].dense_flops == seq * dec["blocks.0.mlp.fc1"].dense_flops
    # decode: one query row per head against the whole cache of seq keys
    s = dec["blocks.0.attn.attn_score"]
    assert (s.batch, s.m, s.n, s.k) == (4 * 12, 1, seq, 64)
    assert pre["blocks.0.attn.attn_score"].dense_flops == seq * s.dense_flops
    # both phases produce logits of the last position only
    assert pre["lm_head"].m == dec["lm_head"].m == 4
    fwd = {o.name: o for o in build_workload("gpt2", batch=4, seq_len=seq, phase="forward").ops}
    assert fwd["lm_head"].m == 4 * seq and "blocks.0.attn.kv_cache_write" not in fwd


def test_kv_cache_bytes_llama():
    wl = build_workload("llama_7b", batch=1, seq_len=2048, phase="decode")
    # 2 (K,V) x 32 layers x 2048 tokens x 4096 x 2 bytes = 1 GiB, the commonly quoted figure
    assert wl.meta["kv_cache_bytes"] == 2 * 32 * 2048 * 4096 * 2 == 2**30


def test_t5_decode_reuses_encoder_kv():
    # self-attention and cross-attention caches of 12 decoder blocks, 32 positions, d=768, fp16
    assert build_workload("t5_base", seq_len=32, phase="decode").meta["kv_cache_bytes"] == 2 * 2 * 12 * 32 * 768 * 2
    fwd = {o.name for o in build_workload("t5_base", seq_len=32).ops}
    dec = {o.name for o in build_workload("t5_base", seq_len=32, phase="decode").ops}
    assert "decoder.0.cross_attn.k" in fwd and "decoder.0.cross_attn.k" not in dec
    assert not any(n.startswith("encoder.") for n in dec)
    assert "decoder.0.cross_attn.attn_score" in dec


def test_merge_repeats_keeps_totals():
    wl = build_workload("vit_b", batch=2, pattern=NM(2, 4))
    merged = build_workload("vit_b", batch=2, pattern=NM(2, 4), merge_blocks=True)
    assert sum(o.dense_flops for o in merged.ops) == sum(o.dense_flops for o in wl.ops)
    fc1 = next(o for o in merged.ops if o.name == "blocks.*.mlp.fc1")
    assert fc1.count == 12
    assert len(merge_repeats(merged).ops) == len(merged.ops)


def test_errors():
    with pytest.raises(UnknownNameError, match="vit_b"):  # lists the valid names
        build_workload("vit_xxl")
    with pytest.raises(ShapeError, match=r"blocks\.0\.mlp\.fc1.*K=192"):  # ViT-Ti d=192, 192 % 256 != 0
        build_workload("vit_ti", pattern=NM(1, 256))
    with pytest.raises(ConfigError, match="encoder-only"):
        build_workload("bert_base", phase="decode")
    with pytest.raises(ConfigError, match="197"):
        build_workload("vit_b", seq_len=100)
    with pytest.raises(ConfigError, match="1024 learned positions"):
        build_workload("gpt2", seq_len=2048)
    with pytest.raises(ConfigError, match="phase"):
        build_workload("gpt2", phase="train")


def test_gemm_workload():
    wl = gemm_workload(64, 12288, 12288, pattern=NM(2, 4), dtype="fp16")
    (op,) = wl.ops
    assert (op.m, op.n, op.k, op.pattern) == (64, 12288, 12288, NM(2, 4))
    assert op.dense_flops == 2 * 64 * 12288 * 12288
    with pytest.raises(ShapeError, match="K=10"):
        gemm_workload(4, 4, 10, pattern=NM(1, 8))
    with pytest.raises(ConfigError, match="dtype"):
        gemm_workload(4, 4, 8, dtype="fp13")


@pytest.mark.parametrize("name, seq", [("gpt2", 1024), ("llama_7b", 2048)])
def test_decoder_forward_flops_match_chinchilla_appendix_f(name, seq):
    """Hoffmann et al. 2022 (Chinchilla), Appendix F, forward FLOPs per sequence, without the
    embedding-lookup matmul (we model the lookup as a gather): per layer 2*3*d*d_kv (Q/K/V),
    2*seq*d (logits) + 2*seq*d (softmax @ V), 2*d*d (projection), 2*2*d*ffw (MLP; SwiGLU has
    3 matrices), plus 2*d*vocab final logits, all times seq tokens."""
    a = ARCHS.get(name)
    d, ffw = a.d_model, a.ffn
    mlp_mats = 3 if a.mlp == "swiglu" else 2
    per_layer = 2 * 3 * d * d + 2 * seq * d + 2 * seq * d + 2 * d * d + mlp_mats * 2 * d * ffw
    expected = seq * (a.layers * per_layer + 2 * d * a.vocab)
    wl = build_workload(name, batch=1, seq_len=seq, phase="forward")
    assert sum(op.dense_flops for op in wl.ops if op.kind != "elementwise") == expected
    # the usual rule of thumb: ~2 FLOPs per parameter per token (+ attention)
    assert expected / seq == pytest.approx(2 * param_count(name), rel=0.25)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["gpt2", "llama_7b", "t5_base"]), batch=st.integers(1, 8), seq=st.integers(1, 512))
def test_prefill_weight_flops_are_seq_times_decode(name, batch, seq):
    """Property: the decoder's weight GEMMs do the same work per token in prefill and decode."""
    pre = build_workload(name, batch=batch, seq_len=seq, phase="prefill", pattern=NM(2, 4))
    dec = build_workload(name, batch=batch, seq_len=seq, phase="decode", pattern=NM(2, 4))
    blocks = lambda wl: sum(op.dense_flops for op in wl.ops if op.kind == "gemm" and op.name.startswith(  # noqa: E731
        ("blocks.", "decoder.")) and ".cross_attn.k" not in op.name and ".cross_attn.v" not in op.name)
    assert blocks(pre) == seq * blocks(dec)
    assert all(op.k % op.pattern.m == 0 for op in pre.ops + dec.ops if op.kind == "gemm")
    # decode attention reads a KV cache of seq positions: scores are (1 x seq) per head
    score = next(op for op in dec.ops if op.role == "attn_score")
    assert (score.m, score.n) == (ARCHS.get(name).heads // ARCHS.get(name).n_kv_heads, seq)
