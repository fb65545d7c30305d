"""Calibration: the YAML efficiency factors are what the fit returns, and the accuracy reached."""
import numpy as np
import pytest

from pgf_sim.sim.calibrate import DENSE_CASES, FITTED_FIELDS, SPARSE_CASES, fit, leave_one_out, validate
from pgf_sim.sim.hardware import load_hardware


def test_calibration_set_is_the_published_one():
    # shared/HARDWARE.md: LLMCompass A100 80GB fp16 GEMMs and the four measured 2:4 speedups
    assert [(c.m, c.n, c.k, c.measured_s) for c in DENSE_CASES] == [
        (64, 12288, 12288, 0.19e-3), (1024, 12288, 12288, 1.199e-3), (8192, 256, 256, 0.0356e-3), (8192, 8192, 8192, 3.9614e-3)]
    assert [round(c.measured_speedup, 2) for c in SPARSE_CASES] == [1.38, 1.24, 1.27, 1.11]
    assert all(c.source for c in DENSE_CASES + SPARSE_CASES)


@pytest.mark.parametrize("name", ["a100_80gb", "a100_40gb"])
def test_yaml_factors_are_the_fitted_ones(name):
    fitted = fit("a100_80gb")
    hw = load_hardware(name)
    for key in FITTED_FIELDS:
        q = getattr(hw.efficiency, key.split(".")[1])
        assert q.value == pytest.approx(fitted[key], rel=2e-3), key
        assert q.source.startswith("fitted on calibration set")


def test_accuracy_reached_on_the_calibration_set():
    v = validate()
    # In-sample (3 dense factors on 4 points): MAPE 0.1%. Issue target: <= 15%.
    assert v.dense_mape < 0.01
    # One sparse factor on 4 speedups 1.11x..1.38x: the model predicts ~1.25x for all of them,
    # worst error 0.138x (the cuSPARSELt 4096^3 case). Issue target: each within 0.15x.
    assert v.max_speedup_error < 0.14 and v.meets_targets
    for row in v.sparse:
        assert 1.0 < row.predicted_speedup < 2.0  # never the datasheet's 2x


def test_leave_one_out_is_reported_honestly():
    errors = leave_one_out()
    # Held-out errors: the launch-overhead case (8192x256x256) cannot be predicted from the
    # other three (+18%); the other cases stay within 8%. Out-of-sample MAPE about 6.7%.
    assert np.mean(np.abs(errors)) < 0.08
    assert max(abs(e) for e in errors) < 0.20
