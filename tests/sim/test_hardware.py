"""Hardware YAML: datasheet peaks reproduced, strict loading, sources enforced, design-space edits."""
import shutil
import subprocess
import sys

import pytest

from pgf_sim.core import NM, ConfigError, UnknownNameError, apply_overrides, load_yaml
from pgf_sim.sim.hardware import (
    Q,
    hardware_dir,
    hardware_from_dict,
    list_hardware,
    load_hardware,
    replace_field,
)

BUILTIN = ["a100_40gb", "a100_80gb", "cpu_host", "edge_npu", "flex_nm_systolic", "h100_sxm", "h200", "tpu_v4", "tpu_v5e",
           "vegeta_cpu"]


def a100_dict(*overrides: str) -> dict:
    return apply_overrides(load_yaml(hardware_dir() / "a100_80gb.yaml"), list(overrides))


def test_builtin_targets_listed():
    assert list_hardware() == BUILTIN


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_loads_and_reproduces_its_datasheet(name):
    hw = load_hardware(name)
    assert hw.name == name
    c = hw.compute
    for dtype, stated in c.datasheet_peak_flops_per_s.items():
        # 2 FLOPs per MAC x units x arrays x MACs/cycle x clock, computed here independently
        derived = 2 * c.units.value * c.arrays_per_unit.value * c.macs_per_cycle_per_array[dtype].value * c.clock_hz.value
        assert derived == pytest.approx(stated.value, rel=0.01)
    for dtype, stated in c.datasheet_sparse_peak_flops_per_s.items():
        assert hw.sparse_peak_flops_per_s(dtype) == pytest.approx(stated.value, rel=0.01)


def test_a100_peak_from_microarchitecture():
    # NVIDIA Ampere In-Depth: 108 SMs x 4 tensor cores x 256 FP16 FMA/clk x 2 FLOP x 1.41 GHz
    hw = load_hardware("a100_80gb")
    assert hw.peak_flops_per_s("fp16") == pytest.approx(108 * 4 * 256 * 2 * 1.41e9)
    assert hw.peak_flops_per_s("fp16") == pytest.approx(312e12, rel=0.001)  # datasheet 312 TFLOP/s
    assert hw.sparse_peak_flops_per_s("fp16") == pytest.approx(624e12, rel=0.001)  # with sparsity
    assert hw.peak_flops_per_s("int8") == pytest.approx(624e12, rel=0.001)


def test_h100_h200_tpu_peaks_match_published():
    h100 = load_hardware("h100_sxm")
    assert h100.peak_flops_per_s("fp16") == pytest.approx(989.4e12, rel=0.001)  # H100 SXM5 datasheet
    assert h100.sparse_peak_flops_per_s("fp16") == pytest.approx(1978.9e12, rel=0.001)
    assert h100.peak_flops_per_s("fp8") == pytest.approx(1978.9e12, rel=0.001)
    h200 = load_hardware("h200")
    assert h200.peak_flops_per_s("bf16") == h100.peak_flops_per_s("bf16")
    assert h200.memory.dram_bw_bytes_per_s.value == 4.8e12 and h200.memory.dram_capacity_bytes.value == 141e9
    assert load_hardware("tpu_v4").peak_flops_per_s("bf16") == pytest.approx(275e12, rel=0.005)  # Cloud TPU docs
    assert load_hardware("tpu_v5e").peak_flops_per_s("bf16") == pytest.approx(197e12, rel=0.005)
    assert load_hardware("tpu_v5e").peak_flops_per_s("int8") == pytest.approx(393e12, rel=0.005)


def test_memory_numbers_use_decimal_units():
    assert load_hardware("a100_40gb").memory.dram_bw_bytes_per_s.value == 1.555e12  # 1555 GB/s, not 1555 * 2**30
    assert load_hardware("a100_80gb").memory.dram_bw_bytes_per_s.value == 2.039e12
    assert load_hardware("h100_sxm").memory.dram_bw_bytes_per_s.value == 3.35e12


def test_tpus_have_no_native_nm_and_research_design_is_labelled():
    assert load_hardware("tpu_v4").sparse.native_patterns == ()
    assert load_hardware("tpu_v5e").sparse.native_patterns == ()
    flex = load_hardware("flex_nm_systolic")
    assert {p.m for p in flex.sparse.native_patterns} == {4, 8, 16, 32}
    text = (hardware_dir() / "flex_nm_systolic.yaml").read_text()
    assert "design assumption" in text
    assert load_hardware("a100_80gb").sparse.native_patterns == (NM(2, 4),)


def test_unknown_key_names_file_field_and_valid_keys(tmp_path):
    data = a100_dict("memory.hbm_bw={value: 1, source: x}")
    with pytest.raises(ConfigError) as err:
        hardware_from_dict(data, source="my_gpu.yaml")
    msg = str(err.value)
    assert "my_gpu.yaml" in msg and "memory" in msg and "'hbm_bw'" in msg
    assert "dram_bw_bytes_per_s" in msg and "onchip_bytes" in msg


BAD_VALUES = [
    # (override, expected message): every error names the file and the field
    ("sparse.unsupported=skip", r"x.yaml.*sparse.unsupported.*'skip'.*'dense_compressed', 'dense'"),
    ("memory.dram_bw_bytes_per_s=2.0e12", r"x.yaml: field 'Hardware.memory.dram_bw_bytes_per_s'.*has no source"),
    ("energy.mac_j.fp16=1.0e-12", r"x.yaml.*energy.mac_j.fp16.*has no source"),
    ("efficiency.launch_overhead_s={value: 1.0e-6}", r"x.yaml.*efficiency.launch_overhead_s.source' is missing"),
    ("compute.clock_hz={value: 1.0e9, source: ' '}", r"x.yaml.*compute.clock_hz.*empty 'source'"),
    ("compute.datasheet_peak_flops_per_s.fp16={value: 4.0e14, source: s}",
     r"x.yaml.*datasheet_peak_flops_per_s.fp16.*stated peak 4e\+14.*derived"),
    ("efficiency.memory_bw_fraction={value: 1.5, source: s}", r"x.yaml.*efficiency.memory_bw_fraction.*must be in \(0, 1\]"),
    ("efficiency.sparse_compute_fraction={value: 0.99, source: s}", r"x.yaml.*sparse_compute_fraction.*exceeds"),
    ("sparse.native_patterns=['2:4', '3:2']", r"x.yaml.*sparse.native_patterns\[1\].*need 1 <= N <= M"),
]


@pytest.mark.parametrize("override,message", BAD_VALUES)
def test_bad_values_name_file_and_field(override, message):
    with pytest.raises(ConfigError, match=message):
        hardware_from_dict(a100_dict(override), source="x.yaml")


def test_missing_energy_for_a_supported_dtype():
    data = a100_dict()
    del data["energy"]["mac_j"]["int8"]
    with pytest.raises(ConfigError, match=r"x.yaml: field 'energy.mac_j'.*int8"):
        hardware_from_dict(data, source="x.yaml")


def test_unknown_name_lists_targets_and_env_override(tmp_path, monkeypatch):
    with pytest.raises(UnknownNameError, match=r"unknown hardware 'a100'.*a100_40gb.*tpu_v5e"):
        load_hardware("a100")
    shutil.copy(hardware_dir() / "tpu_v4.yaml", tmp_path / "my_tpu.yaml")
    monkeypatch.setenv("PGF_SIM_HW_PATH", str(tmp_path))
    assert list_hardware() == ["my_tpu"]
    assert load_hardware("my_tpu").name == "tpu_v4"


def test_replace_field_for_design_sweeps():
    hw = load_hardware("a100_80gb")
    faster = replace_field(hw, "memory.dram_bw_bytes_per_s", 4e12)
    assert faster.memory.dram_bw_bytes_per_s == Q(4e12, "design-space override")
    assert hw.memory.dram_bw_bytes_per_s.value == 2.039e12  # original untouched
    wider = replace_field(hw, "sparse.native_patterns", ["2:4", "1:8"])
    assert wider.sparse.native_patterns == (NM(2, 4), NM(1, 8))
    more = replace_field(hw, "compute.macs_per_cycle_per_array.fp16", 512)
    assert more.peak_flops_per_s("fp16") == pytest.approx(2 * hw.peak_flops_per_s("fp16"))
    assert replace_field(hw, "efficiency.launch_overhead_s.value", 0.0).efficiency.launch_overhead_s.value == 0.0
    with pytest.raises(ConfigError, match=r"unknown field 'dram'.*dram_bw_bytes_per_s"):
        replace_field(hw, "memory.dram", 1.0)
    with pytest.raises(ConfigError, match=r"must be in \(0, 1\]"):
        replace_field(hw, "efficiency.memory_bw_fraction", 2.0)
    with pytest.raises(ConfigError, match="'dense_compressed', 'dense'"):
        replace_field(hw, "sparse.unsupported", "never")


def test_simulator_core_imports_no_torch():
    code = (
        "import sys; import pgf_sim, pgf_sim.sim.hardware, pgf_sim.sim.cost, pgf_sim.sim.mapping, "
        "pgf_sim.sim.tiling, pgf_sim.sim.calibrate, pgf_sim.sim.hw_cli; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
