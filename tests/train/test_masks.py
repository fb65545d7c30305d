"""N:M masks: exactly N per group, the N largest, deterministic ties, errors that name the layer."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgf_sim.core import NM, ShapeError
from pgf_sim.train.masks import (complies, flip_count, flip_rate, nm_mask, nm_masks, nonzeros_per_group,
                                 reference_mask)


@st.composite
def nm_and_weight(draw, conv: bool):
    m = draw(st.integers(1, 16))
    n = draw(st.integers(1, m))
    groups = draw(st.integers(1, 4))
    out = draw(st.integers(1, 5))
    shape = (out, groups * m) + ((draw(st.integers(1, 3)), draw(st.integers(1, 3))) if conv else ())
    # Few distinct magnitudes so that ties are frequent.
    values = draw(st.lists(st.integers(-3, 3), min_size=int(torch.Size(shape).numel()),
                           max_size=int(torch.Size(shape).numel())))
    w = torch.tensor(values, dtype=torch.float32).reshape(shape) * 0.5
    return NM(n, m), w


def _groups_by_loop(w: torch.Tensor, m: int):
    """Independent enumeration of the groups: (index tuple of each element) lists, by plain loops."""
    out_c, in_c = w.shape[:2]
    spatial = [()] if w.dim() == 2 else [(i, j) for i in range(w.shape[2]) for j in range(w.shape[3])]
    for o in range(out_c):
        for s in spatial:
            for g in range(in_c // m):
                yield [(o, c, *s) for c in range(g * m, (g + 1) * m)]


@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_mask_keeps_exactly_n_largest_per_group_lower_index_wins(conv, data):
    pattern, w = data.draw(nm_and_weight(conv))
    mask = nm_mask(w, pattern)
    assert mask.dtype == torch.bool and mask.shape == w.shape
    for idx in _groups_by_loop(w, pattern.m):
        kept = [i for i in idx if mask[i]]
        assert len(kept) == pattern.n
        # Expected: sort positions by (-|w|, position); the first n are kept.
        order = sorted(range(pattern.m), key=lambda p: (-abs(float(w[idx[p]])), p))
        assert kept == [idx[p] for p in sorted(order[: pattern.n])]
    assert torch.equal(mask, reference_mask(w, pattern))


def test_hand_examples_and_ties():
    w = torch.tensor([[1.0, -3.0, 3.0, 2.0], [2.0, 2.0, 2.0, 2.0], [0.0, 5.0, -5.0, 5.0]])
    assert nm_mask(w, NM(2, 4)).tolist() == [[False, True, True, False], [True, True, False, False],
                                             [False, True, True, False]]
    assert nm_mask(w, NM(1, 4)).tolist() == [[False, True, False, False], [True, False, False, False],
                                             [False, True, False, False]]
    # 1:2 groups [1,-3] [3,2] / [2,2] [2,2] / [0,5] [-5,5]
    assert nm_mask(w, NM(1, 2)).tolist() == [[False, True, True, False], [True, False, True, False],
                                             [False, True, True, False]]


def test_conv_groups_run_along_input_channels():
    w = torch.zeros(1, 4, 1, 2)
    w[0, :, 0, 0] = torch.tensor([1.0, 4.0, 2.0, 3.0])  # kernel position (0, 0): keep channels 1, 3
    w[0, :, 0, 1] = torch.tensor([9.0, 0.0, 8.0, 0.0])  # kernel position (0, 1): keep channels 0, 2
    mask = nm_mask(w, NM(2, 4))
    assert mask[0, :, 0, 0].tolist() == [False, True, False, True]
    assert mask[0, :, 0, 1].tolist() == [True, False, True, False]


def test_transposed_weight_uses_reduction_dim_0():
    w = torch.randn(8, 3)  # (in, out) as Hugging Face Conv1D stores it
    assert torch.equal(nm_mask(w, NM(1, 4), reduction_dim=0), nm_mask(w.t(), NM(1, 4)).t())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_dtypes(dtype):
    w = torch.randn(6, 16).to(dtype)
    assert torch.equal(nm_mask(w, NM(2, 8)), reference_mask(w.float(), NM(2, 8)))


def test_indivisible_shape_error_names_layer_and_shape():
    with pytest.raises(ShapeError, match=r"blocks\.0\.mlp\.fc1.*\(8, 6\).*M=4"):
        nm_mask(torch.randn(8, 6), NM(2, 4), name="blocks.0.mlp.fc1")
    with pytest.raises(ShapeError, match=r"stem.*\(16, 3, 3, 3\)"):
        nm_mask(torch.randn(16, 3, 3, 3), NM(1, 2), name="stem")


def test_dense_pattern_keeps_everything_and_complies():
    w = torch.randn(3, 5)
    assert nm_mask(w, NM(1, 1)).all()
    v = torch.randn(4, 8)
    masked = v * nm_mask(v, NM(1, 4))
    assert complies(masked, NM(1, 4)) and complies(masked, NM(2, 4)) and not complies(torch.ones(4, 8), NM(1, 4))
    assert nonzeros_per_group(torch.ones(2, 8), 4).tolist() == [4, 4, 4, 4]


def test_flip_count_and_rate():
    a = torch.tensor([[True, False, True, False]])
    b = torch.tensor([[True, True, False, False]])
    assert flip_count(a, b) == 2 and flip_rate(a, b) == 0.5 and flip_count(a, a) == 0
    with pytest.raises(ShapeError):
        flip_count(a, b.t())


@pytest.mark.parametrize("pattern", [NM(1, 4), NM(2, 4), NM(2, 8), NM(5, 8), NM(3, 16)], ids=str)
def test_large_weights_take_the_same_exact_path(pattern):
    # >= 64k weights switches algorithms (masks._use_pairwise); ties are frequent by construction
    w = torch.randint(-4, 5, (64, 1024)).float()
    mask = nm_mask(w, pattern)
    assert torch.equal(mask, reference_mask(w, pattern))
    assert (mask.reshape(-1, pattern.m).sum(dim=1) == pattern.n).all()


def test_batched_masks_equal_one_by_one():
    ws = [torch.randint(-3, 4, shape).float() for shape in [(8, 16), (4, 8, 3, 3), (16, 32)]]
    ws.append(torch.randn(16, 8).to(torch.bfloat16))
    for pattern in (NM(2, 4), NM(1, 8)):
        batched = nm_masks(ws, pattern, names=["a", "b", "c", "d"], reduction_dims=[1, 1, 1, 1])
        for w, mask in zip(ws, batched):
            assert torch.equal(mask, nm_mask(w, pattern))
    with pytest.raises(ShapeError, match="'bad'"):
        nm_masks([torch.randn(2, 8), torch.randn(2, 6)], NM(2, 4), names=["ok", "bad"], reduction_dims=[1, 1])
