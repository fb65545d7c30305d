"""Gradient-noise diagnostics on a hand-made gradient/mask sequence (values derived by hand)."""
import math

import pytest
import torch

from pgf_sim.train.diagnostics import GradNoiseMonitor


def test_window_values_match_hand_derivation():
    # every=4, window=3: steps 1, 2, 3 are measured, the summary comes at step 3.
    mon = GradNoiseMonitor(every=4, window=3)
    g = [torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[3.0, 0.0], [0.0, 2.0]]), torch.tensor([[2.0, 0.0], [0.0, 4.0]])]
    m = [torch.tensor([[1, 0], [0, 1]]), torch.tensor([[1, 0], [0, 1]]), torch.tensor([[0, 1], [0, 1]])]
    assert not mon.active(0)
    assert mon.update(0, {"fc1": torch.full((2, 2), 99.0)}, {"fc1": torch.ones(2, 2)}) is None  # ignored
    assert mon.update(1, {"fc1": g[0]}, {"fc1": m[0]}) is None
    assert mon.update(2, {"fc1": g[1]}, {"fc1": m[1]}) is None
    out = mon.update(3, {"fc1": g[2]}, {"fc1": m[2]})["fc1"]
    # per-weight unbiased variances: a: (1,3,2) -> 1; b, c: 0; d: (0,2,4) -> 4; mean 5/4
    assert out["grad_var"] == pytest.approx(1.25)
    assert out["grad_mean_sq"] == pytest.approx((4 + 0 + 0 + 4) / 4)  # means 2, 0, 0, 2
    assert out["grad_noise_ratio"] == pytest.approx(1.25 / 2)
    # ||g2-g1|| / ||g1|| = sqrt(8)/1; ||g3-g2|| / ||g2|| = sqrt(5)/sqrt(13)
    assert out["grad_diff"] == pytest.approx((math.sqrt(8) + math.sqrt(5) / math.sqrt(13)) / 2)
    # flips: 0 of 4, then 2 of 4 -> mean 0.25
    assert out["mask_flip_rate"] == pytest.approx(0.25)
    # last mask keeps b and d: variances 0 and 4; pruned a and c: 1 and 0
    assert out["grad_var_kept"] == pytest.approx(2.0)
    assert out["grad_var_pruned"] == pytest.approx(0.5)


def test_constant_gradient_has_no_noise_and_state_resets():
    mon = GradNoiseMonitor(every=2, window=2)
    g, mask = torch.randn(4, 8), torch.ones(4, 8, dtype=torch.bool)
    mon.update(0, {"l": g}, {"l": mask})
    out = mon.update(1, {"l": g}, {"l": mask})["l"]
    assert out["grad_var"] == pytest.approx(0.0, abs=1e-12) and out["grad_diff"] == 0.0
    assert out["mask_flip_rate"] == 0.0 and "grad_var_pruned" not in out  # nothing pruned
    # next window starts from scratch
    mon.update(2, {"l": g}, {"l": mask})
    out = mon.update(3, {"l": -g}, {"l": ~mask})["l"]
    assert out["grad_diff"] == pytest.approx(2.0) and out["mask_flip_rate"] == 1.0


def test_variance_matches_torch_over_random_sequence():
    torch.manual_seed(0)
    seq = torch.randn(6, 16, 8)
    mon = GradNoiseMonitor(every=10, window=6)
    for i in range(6):
        out = mon.update(4 + i, {"w": seq[i]}, {"w": torch.ones(16, 8)})
    assert out["w"]["grad_var"] == pytest.approx(float(seq.double().var(dim=0).mean()), rel=1e-9)


def test_bad_window():
    with pytest.raises(ValueError):
        GradNoiseMonitor(every=4, window=1)
    with pytest.raises(ValueError):
        GradNoiseMonitor(every=4, window=5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_caller_clipping_gradients_in_place_does_not_change_the_record(dtype):
    # The trainer clips gradients in place right after update(); what was measured must stay
    # what the optimiser received at that step, for float64 gradients too.
    mon = GradNoiseMonitor(every=2, window=2)
    g0, g1 = torch.ones(2, 2, dtype=dtype), torch.full((2, 2), 2.0, dtype=dtype)
    mask = {"fc1": torch.ones(2, 2)}
    assert mon.update(0, {"fc1": g0}, mask) is None
    g0.mul_(0.5)  # in-place clipping of the caller's gradient
    out = mon.update(1, {"fc1": g1}, mask)["fc1"]
    g1.mul_(0.5)
    assert out["grad_diff"] == pytest.approx(1.0)  # ||2 - 1|| / ||1||, not ||2 - 0.5|| / ||0.5|| = 3
    assert out["grad_mean_sq"] == pytest.approx(1.5 ** 2)
    assert out["grad_var"] == pytest.approx(0.5)  # (1, 2): unbiased variance 0.5
