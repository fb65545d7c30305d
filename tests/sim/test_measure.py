"""The measure -> calibrate -> validate loop on this machine's CPU (tiny grid), and what
``pgf-sim measure`` writes: both timings per case, honest sources, no 2:4 on the CPU."""
import contextlib
import io
import math
import time
import types

import pytest
import yaml

from pgf_sim.cli import main
from pgf_sim.core.errors import ConfigError
from pgf_sim.sim.calibrate import DENSE_FIT_FIELDS, OVERLAP_FIELD, fit, validate
from pgf_sim.sim.hardware import load_hardware
from pgf_sim.sim.measure import measure, parse_counts, parse_grid, parse_timings, prune_2_4
from pgf_sim.sim.measurements import load_measurements, write_measurements


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One CLI run on the tiny grid, shared: (file, printed output)."""
    out = tmp_path_factory.mktemp("measure") / "here.yaml"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["measure", "--tiny", "--threads", "1", "--target", "cpu_host", "--out", str(out)]) == 0
    return out, printed.getvalue()


def test_cpu_file_has_kernel_and_eager_for_every_shape(measured):
    out, printed = measured
    meas = load_measurements(out)
    assert meas.target == "cpu_host" and "read bandwidth" in meas.device["description"]
    grid = parse_grid(None, None, tiny=True)
    assert [(c.m, c.n, c.k, c.timing) for c in meas.dense] == [s + (t,) for s in grid for t in ("kernel", "eager")]
    assert all(math.isfinite(c.measured_s) and c.measured_s > 0 and c.dtype == "fp32" for c in meas.dense)
    raw = yaml.safe_load(out.read_text())
    assert all(case["timing"] in ("kernel", "eager") for case in raw["dense"])  # written, not defaulted
    # the sources say what was timed: on the CPU there is no graph
    assert all(c.source.count("CPU: back-to-back calls, no graph") == 1 for c in meas.dense if c.timing == "kernel")
    assert all("eager" in c.source and "no graph" not in c.source for c in meas.dense if c.timing == "eager")
    # a bigger GEMM of the same weight takes longer than a 1-row one, in either timing
    for timing in ("kernel", "eager"):
        t = {(c.m, c.n): c.measured_s for c in meas.dense if c.timing == timing}
        assert t[(128, 512)] > t[(1, 512)]
    # no 2:4 on the CPU: nothing written, one line saying why, not an error
    assert raw["sparse"] == [] and meas.sparse == ()
    why = [line for line in printed.splitlines() if "2:4 not measured" in line]
    assert len(why) == 1 and "CUDA device of compute capability >= 8.0" in why[0]
    assert "12 dense, 0 2:4 cases" in printed


def test_measure_then_calibrate_on_the_cpu(measured, capsys):
    out, _ = measured
    meas = load_measurements(out)
    assert main(["calibrate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Fitted factors:" in text and "Held-out (leave-one-out" in text
    values = fit("cpu_host", meas)
    assert set(DENSE_FIT_FIELDS) - {"efficiency.launch_overhead_s"} <= set(values) <= set(DENSE_FIT_FIELDS) | {OVERLAP_FIELD}
    assert 0 < values["efficiency.dense_compute_fraction"] <= 1
    v = validate("cpu_host", meas)
    assert v.held_out is not None and len(v.held_out) >= 4


def test_shipped_cpu_factors_are_the_fit_of_the_shipped_measurements():
    fitted = fit("cpu_host", "cpu_host")
    hw = load_hardware("cpu_host")
    for key, value in fitted.items():
        q = getattr(hw.efficiency, key.split(".")[1])
        assert q.value == pytest.approx(value, rel=2e-3, abs=1e-9), key
        assert q.source.startswith("fitted on calibration set")


def test_required_sparse_needs_cuda_and_flag_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"--sparse: 2:4 semi-structured kernels need a CUDA device"):
        measure([(1, 64, 64)], sparse=True)
    with pytest.raises(ConfigError, match="expected e.g. --m 1,8,64"):
        parse_grid("1,a", None)
    with pytest.raises(ConfigError, match="valid: kernel, eager, call"):
        parse_timings("kernel,fast")
    with pytest.raises(ConfigError, match=r"whole numbers in \[1, 2147483647\]"):
        parse_counts("0", "--batch")
    assert parse_timings(None) == ("kernel", "eager") and parse_timings("eager, eager") == ("eager",)
    out = str(tmp_path / "x.yaml")
    for argv, message in ((["--sparse"], "--sparse: 2:4 semi-structured kernels need a CUDA device"),
                          (["--batch", "4"], "--batch, --seq-len and --decode go with --model NAME"),
                          (["--timing", "graph"], "--timing 'graph': valid: kernel, eager, call"),
                          (["--device", "tpu"], "--device 'tpu': measure times on cpu or cuda")):
        assert main(["measure", "--tiny", "--m", "1", "--nk", "64x64", "--out", out, *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.yaml").exists()


def test_call_timing_and_no_sparse():
    r = measure([(1, 64, 64), (8, 64, 64)], timings=("call",), sparse=False, min_block_s=0.001, blocks=3,
                 cold_bytes=2**20, threads=1)
    assert [c["timing"] for c in r["dense"]] == ["call", "call"] and r["sparse"] == [] and r["notes"] == []
    assert all(c["time_s"] > 0 and "one call alone" in c["source"] for c in r["dense"])


def test_prune_2_4_keeps_the_two_largest_of_every_four_along_k():
    import torch

    w = torch.tensor([[1.0, -4.0, 3.0, 2.0, 0.5, 0.125, -0.25, 0.375]])
    assert prune_2_4(w).tolist() == [[0.0, -4.0, 3.0, 0.0, 0.5, 0.0, 0.0, 0.375]]
    big = prune_2_4(torch.randn(16, 64))
    assert ((big.reshape(16, 16, 4) != 0).sum(-1) == 2).all()
    with pytest.raises(ConfigError, match="K divisible by 4"):
        prune_2_4(torch.randn(4, 6))


def test_sparse_cases_pair_with_the_dense_case_of_their_timing(monkeypatch, tmp_path):
    """The 2:4 path, run on the CPU with a stand-in for the CUDA-only compression (the pruned
    dense weight): every case names its timing, and its dense_s is the dense case's time."""
    import pgf_sim.sim.measure as m

    monkeypatch.setattr(m, "sparse_support", lambda device: None)
    monkeypatch.setattr(m, "_semi_structured", lambda w: w.clone())
    r = m.measure([(1, 64, 128), (16, 64, 128)], min_block_s=0.002, blocks=3, cold_bytes=2**20, threads=1)
    dense = {(c["m"], c["n"], c["k"], c["timing"]): c["time_s"] for c in r["dense"]}
    assert len(r["sparse"]) == len(dense) == 4
    for case in r["sparse"]:
        assert case["kind"] == "gemm" and case["timing"] in ("kernel", "eager")
        assert case["dense_s"] == dense[(case["m"], case["n"], case["k"], case["timing"])]
        assert case["sparse_s"] > 0 and math.isfinite(case["sparse_s"])
        assert case["name"].startswith(f"{case['m']}x64x128 2:4 ") and case["name"].endswith(f"({case['timing']})")
        assert "pruned to 2:4 along K" in case["source"]
    out = tmp_path / "s.yaml"
    write_measurements(out, r["device"], r["dense"], r["sparse"])
    assert {c.timing for c in load_measurements(out).sparse} == {"kernel", "eager"}


class _FakeCuda:
    """Enough of ``torch.cuda`` to run the kernel timer's logic on the CPU: events read the
    host clock, a captured graph records its calls and replays them."""

    def __init__(self, fail_capture: bool) -> None:
        self.fail_capture, self.capturing, self.graphs = fail_capture, None, []

    def synchronize(self):
        pass

    def current_stream(self):
        return types.SimpleNamespace(wait_stream=lambda other: None)

    Stream = current_stream

    @contextlib.contextmanager
    def stream(self, s):
        yield

    class Event:
        def __init__(self, enable_timing=False):
            self.t = 0.0

        def record(self):
            self.t = time.perf_counter()

        def synchronize(self):
            pass

        def elapsed_time(self, other):
            return (other.t - self.t) * 1e3

    def CUDAGraph(self):  # noqa: N802 - torch's name
        graph = types.SimpleNamespace(calls=[])
        graph.replay = lambda: [self.work(i) for i in graph.calls]
        self.graphs.append(graph)
        return graph

    @contextlib.contextmanager
    def graph(self, graph):
        self.capturing = graph
        try:
            yield
        finally:
            self.capturing = None

    def work(self, i):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2e-5:  # a 20 us "kernel"
            pass

    def step(self, i):
        if self.capturing is not None:
            if self.fail_capture:
                raise RuntimeError("operation not permitted when stream is capturing\nmore detail")
            self.capturing.calls.append(i)
        else:
            self.work(i)


@pytest.mark.parametrize("fail_capture", [False, True])
def test_cuda_kernel_timer_logic_with_a_stand_in_for_cuda(fail_capture):
    """The graph path (whole turns through the weight copies, replays between events) and its
    fallback when capture fails (said in the source), on a stand-in for torch.cuda."""
    from pgf_sim.sim.measure import _Timer

    cuda = _FakeCuda(fail_capture)
    timer = _Timer(types.SimpleNamespace(cuda=cuda), "cuda", 0.004, 3, time.perf_counter)
    t, how = timer.time("kernel", cuda.step, 3, what="F.linear calls")
    assert 1.5e-5 < t < 2e-4
    if fail_capture:
        assert how.startswith("CUDA graph capture failed (RuntimeError: operation not permitted when stream is "
                              "capturing); instead CUDA events around a back-to-back eager loop of ")
    else:
        (graph,) = cuda.graphs
        assert len(graph.calls) % 3 == 0 and graph.calls[:4] == [0, 1, 2, 3]
        assert how.startswith(f"CUDA graph of {len(graph.calls)} back-to-back F.linear calls, ")
        assert "replays timed with CUDA events, median of 3" in how


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
