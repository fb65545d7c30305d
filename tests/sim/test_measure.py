"""The measure -> calibrate -> validate loop on this machine's CPU (tiny grid)."""
import pytest

from pgf_sim.cli import main
from pgf_sim.sim.calibrate import DENSE_FIT_FIELDS, OVERLAP_FIELD, fit, validate
from pgf_sim.sim.hardware import load_hardware
from pgf_sim.sim.measure import parse_grid
from pgf_sim.sim.measurements import load_measurements


def test_measure_then_calibrate_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "here.yaml"
    assert main(["measure", "--tiny", "--threads", "1", "--target", "cpu_host", "--out", str(out)]) == 0
    meas = load_measurements(out)
    assert meas.target == "cpu_host" and "read bandwidth" in meas.device["description"]
    assert [(c.m, c.n, c.k) for c in meas.dense] == parse_grid(None, None, tiny=True)
    assert all(c.measured_s > 0 and c.dtype == "fp32" for c in meas.dense)
    # a bigger GEMM of the same weight takes longer than a 1-row one
    t = {(c.m, c.n): c.measured_s for c in meas.dense}
    assert t[(128, 512)] > t[(1, 512)]
    capsys.readouterr()
    assert main(["calibrate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Fitted factors:" in text and "Held-out (leave-one-out" in text
    values = fit("cpu_host", meas)
    assert set(values) == set(DENSE_FIT_FIELDS) | {OVERLAP_FIELD} and 0 < values["efficiency.dense_compute_fraction"] <= 1
    v = validate("cpu_host", meas)
    assert v.held_out is not None and len(v.held_out) >= 4


def test_shipped_cpu_factors_are_the_fit_of_the_shipped_measurements():
    fitted = fit("cpu_host", "cpu_host")
    hw = load_hardware("cpu_host")
    for key, value in fitted.items():
        q = getattr(hw.efficiency, key.split(".")[1])
        assert q.value == pytest.approx(value, rel=2e-3, abs=1e-9), key
        assert q.source.startswith("fitted on calibration set")


def test_sparse_measurement_needs_cuda_and_grid_errors():
    from pgf_sim.core.errors import ConfigError
    from pgf_sim.sim.measure import measure

    with pytest.raises(ConfigError, match="--sparse needs --device cuda"):
        measure([(1, 64, 64)], sparse=True)
    with pytest.raises(ConfigError, match="expected e.g. --m 1,8,64"):
        parse_grid("1,a", None)


def test_calibrate_write_rewrites_only_the_fitted_lines(tmp_path, capsys):
    import shutil

    from pgf_sim.sim.hardware import hardware_dir

    target = tmp_path / "cpu_copy.yaml"
    shutil.copy(hardware_dir() / "cpu_host.yaml", target)
    text = target.read_text().replace("dense_compute_fraction: {value: 0.862504", "dense_compute_fraction: {value: 0.5")
    target.write_text(text)
    assert main(["calibrate", "cpu_host", "--hw", str(target), "--write"]) == 0
    assert "wrote the fitted values" in capsys.readouterr().out
    again = load_hardware(target)
    assert again.efficiency.dense_compute_fraction.value == pytest.approx(
        load_hardware("cpu_host").efficiency.dense_compute_fraction.value, rel=2e-3)
    assert again.efficiency.dense_compute_fraction.source == "fitted on calibration set (pgf-sim calibrate cpu_host)"
    assert again.memory == load_hardware("cpu_host").memory  # untouched
