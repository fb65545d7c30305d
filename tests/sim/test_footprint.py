"""Memory footprint: compressed storage, capacity flags, training state per recipe by hand."""
import pytest

from pgf_sim.core import NM, ConfigError
from pgf_sim.sim.footprint import TRAIN_RECIPES, inference_footprint, training_footprint
from pgf_sim.sim.hardware import load_hardware
from pgf_sim.sim.ops import Op, Workload
from pgf_sim.sim.workloads import build_workload

A100 = load_hardware("a100_80gb")


def test_2_4_fp16_weights_are_56_25_percent_of_dense():
    dense = inference_footprint(Workload("d", [Op("w", "gemm", m=1, n=4096, k=4096)]), A100)
    sparse = inference_footprint(Workload("s", [Op("w", "gemm", m=1, n=4096, k=4096, pattern=NM(2, 4))]), A100)
    # 2 kept fp16 values (32 bits) + 2 x 2-bit indices per group of 4 (64 bits dense): 36/64
    assert sparse.weights_bytes / dense.weights_bytes == pytest.approx(0.5625)
    assert dense.weights_bytes == 4096 * 4096 * 2


def test_llama_7b_with_a_2048_token_kv_cache_does_not_fit_a_smaller_target():
    wl = build_workload("llama_7b", batch=1, seq_len=2048, phase="decode")
    on_a100 = inference_footprint(wl, A100)
    # 6,738,415,616 fp16 parameters + K and V: 2 x 32 layers x 2048 tokens x 4096 x 2 bytes
    assert on_a100.weights_bytes == pytest.approx(6_738_415_616 * 2, rel=1e-9)
    assert on_a100.kv_cache_bytes == 2 * 32 * 2048 * 4096 * 2
    assert on_a100.fits
    small = inference_footprint(wl, load_hardware("edge_npu"))  # 4 GB of DRAM
    assert not small.fits and "DOES NOT FIT" in small.summary()


def tiny() -> Workload:
    # fc1: 2 tokens x (16 -> 8), 2:4; fc2: (8 -> 4) dense; one 2-input element-wise add of 8 values
    return Workload("tiny", [
        Op("fc1", "gemm", m=2, n=8, k=16, pattern=NM(2, 4), dtype="fp32"),
        Op("act", "elementwise", elements=16, flops_per_element=1, inputs=1, dtype="fp32"),
        Op("fc2", "gemm", m=2, n=4, k=8, dtype="fp32"),
    ], meta={"params": 8 * 16 + 4 * 8 + 12})  # + 12 biases (8 + 4), stored dense


@pytest.mark.parametrize("recipe", TRAIN_RECIPES)
def test_training_step_footprint_matches_a_hand_count(recipe):
    fp = training_footprint(tiny(), A100, recipe)
    # saved activations: fc1 input 2x16, act input 16, fc2 input 2x8 = 64 fp32 values
    acts = 64 * 4
    if recipe == "fixed-mask":
        # trained: fc1's 64 kept values + fc2's 32 + 12 biases = 108 fp32; indices 64 x 2 bits
        trained = 64 + 32 + 12
        by_hand = trained * 4 + 64 * 2 / 8 + trained * 4 + 2 * trained * 4 + acts
        assert fp.masks_bytes == 0
    else:
        # dense shadow weights of all 172 params, their gradients, two Adam moments; STE-style
        # recipes keep a 1-byte mask per fc1 weight (128)
        trained = 128 + 32 + 12
        masks = 128 if recipe != "dense" else 0
        by_hand = trained * 4 * 4 + masks + acts
        assert fp.masks_bytes == masks
    assert fp.total_bytes == pytest.approx(by_hand)
    assert fp.activations_bytes == acts


def test_straight_through_recipes_train_at_dense_memory_cost():
    dense = training_footprint(tiny(), A100, "dense").total_bytes
    assert training_footprint(tiny(), A100, "sr-ste").total_bytes > dense
    assert training_footprint(tiny(), A100, "fixed-mask").total_bytes < dense
    with pytest.raises(ConfigError, match="unknown recipe 'magic'.*valid: dense, ste"):
        training_footprint(tiny(), A100, "magic")
