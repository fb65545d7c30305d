"""The hardware description: frozen dataclasses, the strict YAML loader and design-space edits.

One device per file in ``hw_configs/`` (overridable with the ``PGF_SIM_HW_PATH`` environment
variable). Every number is written ``{value: X, source: "..."}``: a number without a source is
a load error, so each figure can be traced to a datasheet, a paper, a fit on the calibration
set or an explicitly labelled assumption. Rates use decimal units (1 GB/s = 1e9 B/s).

Compute model (shared by GPUs, TPUs and systolic designs): ``units`` independent units (SMs,
MXUs, arrays) each holding ``arrays_per_unit`` matrix arrays (tensor cores) that do
``macs_per_cycle_per_array[dtype]`` dense MACs per cycle. Peak FLOP/s = 2 x units x
arrays_per_unit x MACs/cycle x clock_hz, checked at load time against the stated datasheet peak.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from ..core.config import from_dict, load_yaml
from ..core.errors import ConfigError, UnknownNameError
from ..core.pattern import NM
from .ops import DTYPE_BITS

DType = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4"]
# Stated datasheet peaks must match the peak derived from the micro-architecture this closely.
PEAK_CHECK_RTOL = 0.01


@dataclass(frozen=True)
class Q:
    """A sourced number: ``{value: 1.555e12, source: "NVIDIA A100 datasheet"}``."""

    value: float
    source: str

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ConfigError("empty 'source': say where the number comes from (or 'assumption: ...')")
        if not math.isfinite(self.value):
            raise ConfigError(f"value {self.value!r} is not a finite number")

    def __float__(self) -> float:
        return float(self.value)


@dataclass(frozen=True)
class TileShapes:
    """Candidate output tiles (tile_m, tile_n) a unit computes per pass.

    For each op the cost model takes the candidate with the lowest time, as cuBLAS heuristics
    and autotuners pick a kernel per shape (small tiles cut wave quantisation, large tiles cut
    on-chip traffic). A systolic array lists its physical width as tile_n.
    """

    mn: tuple[tuple[int, int], ...]
    source: str

    def __post_init__(self) -> None:
        if not self.mn or any(len(t) != 2 or min(t) < 1 for t in self.mn):
            raise ConfigError(f"tile shapes must be a non-empty list of [tile_m, tile_n] >= 1, got {self.mn!r}")
        if not self.source.strip():
            raise ConfigError("empty 'source' for tile shapes")


@dataclass(frozen=True)
class Compute:
    clock_hz: Q
    units: Q  # independent units that each work on their own output tiles (SMs, MXUs, arrays)
    arrays_per_unit: Q  # matrix arrays (tensor cores) per unit, cooperating on one tile
    macs_per_cycle_per_array: dict[DType, Q]  # dense MACs per cycle, per dtype
    # Output tiles one unit computes per pass and the K step it advances by; shapes are padded
    # up to these (tile quantisation). A unit processes its tiles one after another.
    tile_shapes: TileShapes
    tile_k: Q
    fill_drain_cycles: Q  # pipeline fill + drain once per output tile (systolic: rows + cols)
    # Minimum cycles per K step: a weight-stationary array shifts the next weight block in one
    # row per cycle (double-buffered, so it overlaps compute but bounds it); 0 on GPUs.
    weight_load_cycles: Q
    vector_flops_per_s: Q  # element-wise unit (CUDA cores / VPU), for softmax, norms, GELU, adds
    datasheet_peak_flops_per_s: dict[DType, Q] = field(default_factory=dict)
    datasheet_sparse_peak_flops_per_s: dict[DType, Q] = field(default_factory=dict)
    # Explicit, labelled dtype emulation: an op of the key dtype runs at the value dtype's rate
    # (e.g. a TPU runs fp16 models in bf16). Any other dtype the arrays lack is an error.
    emulated_dtypes: dict[DType, DType] = field(default_factory=dict)
    emulated_dtypes_source: str = ""


@dataclass(frozen=True)
class Sparse:
    # N:M patterns the matrix arrays execute natively (compressed K: n/m of the dense MACs).
    native_patterns: tuple[NM, ...]
    patterns_source: str
    # When no native pattern fits a layer's pattern: "dense_compressed" = dense math on weights
    # stored compressed (decompressed on the fly, DRAM traffic saved), "dense" = plain dense.
    unsupported: Literal["dense_compressed", "dense"]
    unsupported_source: str
    # Metadata bits per kept value; None = ceil(log2 M) of the stored pattern (NVIDIA mma.sp:
    # 2 bits for 2:4; SCALE-Sim v3 and Sparseloop model general N:M the same way).
    metadata_bits_per_value: Optional[Q] = None
    # Sparse kernels pad the activation rows (M) and K up to these multiples. K in bytes so one
    # number covers dtypes: PyTorch semi-structured min shapes fp16 32x64 and int8 32x128 are
    # both 128-byte rows; a 1-row input is padded to 32 rows (pytorch issue 111339).
    pad_rows: Optional[Q] = None
    pad_k_bytes: Optional[Q] = None
    # Which library PyTorch's to_sparse_semi_structured uses on this architecture (e.g. on
    # Hopper cuSPARSELt: its CUTLASS path supports compute capability 8.x only), with its source.
    # Descriptive: the efficiency.sparse_* factors are fitted on that backend's kernels.
    torch_backend: Optional[str] = None
    torch_backend_source: str = ""

    def __post_init__(self) -> None:  # "2:4" strings from Python callers (the YAML loader parses its own)
        object.__setattr__(self, "native_patterns", tuple(NM.parse(p) for p in self.native_patterns))


@dataclass(frozen=True)
class Memory:
    dram_bw_bytes_per_s: Q
    dram_capacity_bytes: Q
    onchip_bytes: Q  # last-level on-chip buffer (L2 / CMEM / global SRAM) that tiles reuse
    onchip_bw_bytes_per_s: Q


@dataclass(frozen=True)
class Energy:
    mac_j: dict[DType, Q]  # per dense or sparse MAC actually executed
    vector_flop_j: Q
    dram_byte_j: Q
    onchip_byte_j: Q


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of peak and fixed costs; named so each can be sourced and fitted."""

    dense_compute_fraction: Q  # of the dense matrix peak, in full tiles
    sparse_compute_fraction: Q  # of the sparse matrix rate (dense peak x m/n) in full tiles
    memory_bw_fraction: Q  # of DRAM bandwidth
    launch_overhead_s: Q  # host cost per op in the eager runtime (framework dispatch + launch)
    # Kernel-level terms (see cost.py); None switches a term off for targets that lack a figure.
    graph_launch_overhead_s: Optional[Q] = None  # device floor per kernel, every runtime (CUDA graphs)
    dram_latency_s: Optional[Q] = None  # first-byte DRAM latency, once per kernel
    # Sparse kernels: host work per sparse GEMM call in the eager runtime (tensor-subclass
    # dispatch, input pad/transpose), and fixed cycles per output tile (metadata + epilogue).
    sparse_call_overhead_s: Optional[Q] = None
    sparse_tile_overhead_cycles: Optional[Q] = None
    # Fraction of DRAM bandwidth a native sparse kernel reaches on its compressed weights and
    # metadata (None: memory_bw_fraction). Small-M sparse GEMMs are memory-bound, and vendor
    # sparse kernels read far below the dense GEMV's bandwidth (cuSPARSELt 2:4 on an H200 at
    # M = 1: about a third of it, docs/simulator.md).
    sparse_memory_bw_fraction: Optional[Q] = None
    # Fraction of the shorter of compute and memory time hidden under the longer (1: the
    # roofline's max(); a CPU core issues its own loads and FMAs, so it overlaps less).
    compute_memory_overlap: Optional[Q] = None


@dataclass(frozen=True)
class Hardware:
    name: str
    description: str
    kind: Literal["gpu", "tpu", "systolic", "npu", "cpu"]
    compute: Compute
    sparse: Sparse
    memory: Memory
    energy: Energy
    efficiency: Efficiency
    area_mm2: Optional[Q] = None

    def matrix_dtype(self, dtype: str) -> str:
        """The dtype whose matrix rate runs ``dtype``: itself, or its labelled emulation.

        A dtype the target neither has nor emulates is an error naming the valid ones (no
        silent substitution: fp32 is not TF32, fp8 on an A100 is not INT8)."""
        c = self.compute
        if dtype in c.macs_per_cycle_per_array:
            return dtype
        if dtype in c.emulated_dtypes:
            return c.emulated_dtypes[dtype]
        emulated = f"; emulated: {', '.join(f'{a} as {b}' for a, b in c.emulated_dtypes.items())}" if c.emulated_dtypes else ""
        raise ConfigError(
            f"hardware {self.name!r} has no matrix rate for dtype {dtype!r}; "
            f"valid: {', '.join(c.macs_per_cycle_per_array)}{emulated}"
        )

    def peak_flops_per_s(self, dtype: str) -> float:
        """Dense matrix peak derived from the micro-architecture (2 FLOPs per MAC)."""
        c = self.compute
        dtype = self.matrix_dtype(dtype)
        return 2.0 * c.units.value * c.arrays_per_unit.value * c.macs_per_cycle_per_array[dtype].value * c.clock_hz.value

    def sparse_peak_flops_per_s(self, dtype: str) -> float:
        """Peak counted in dense-equivalent FLOPs at the sparsest native pattern (0 if none)."""
        if not self.sparse.native_patterns:
            return 0.0
        speedup = max(p.m / p.n for p in self.sparse.native_patterns)
        return self.peak_flops_per_s(dtype) * speedup


def hardware_dir() -> Path:
    """Folder of built-in hardware YAML: ``$PGF_SIM_HW_PATH`` or the repository's ``hw_configs/``."""
    env = os.environ.get("PGF_SIM_HW_PATH")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "hw_configs"


def list_hardware() -> list[str]:
    folder = hardware_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_hardware(name_or_path: "str | Path") -> Hardware:
    """Load a built-in target by name (file stem in ``hardware_dir()``) or a YAML file path."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or os.sep in text or path.is_file()):
        path = hardware_dir() / f"{text}.yaml"
        if not path.is_file():
            raise UnknownNameError(f"unknown hardware {text!r}; valid: {', '.join(list_hardware())} (or a YAML file path)")
    return hardware_from_dict(load_yaml(path), source=str(path))


def hardware_from_dict(data: dict[str, Any], *, source: str = "<hardware>") -> Hardware:
    _require_sources(Hardware, data, source, "Hardware")
    hw = from_dict(Hardware, data, source=source, field_path="")
    validate_hardware(hw, source=source, check_datasheet=True)
    return hw


def _require_sources(tp: Any, value: Any, source: str, path: str) -> None:
    """A bare number where a sourced ``{value, source}`` is expected is an error naming the field."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        for arg in args:
            if arg is not type(None):
                _require_sources(arg, value, source, path)
        return
    if tp is Q:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            raise ConfigError(
                f"{source}: field '{path}': number {value!r} has no source; write "
                f"{{value: {value}, source: \"where it comes from\"}} (or source: \"assumption: ...\")"
            )
        return
    if origin is dict and isinstance(value, dict):
        for k, v in value.items():
            _require_sources(args[1], v, source, f"{path}.{k}")
        return
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        hints = typing.get_type_hints(tp)
        for key, sub in value.items():
            if key in hints:
                _require_sources(hints[key], sub, source, f"{path}.{key}" if path else key)


def validate_hardware(hw: Hardware, *, source: str = "<hardware>", check_datasheet: bool = True) -> None:
    """Range checks (and, for files, datasheet peaks vs derived peaks); errors name the field."""

    def positive(path: str, q: Optional[Q], *, allow_zero: bool = False) -> None:
        if q is None:
            return
        if q.value < 0 or (q.value == 0 and not allow_zero):
            raise ConfigError(f"{source}: field '{path}': value {q.value!r} must be {'>= 0' if allow_zero else '> 0'}")

    c, m, e, f, s = hw.compute, hw.memory, hw.energy, hw.efficiency, hw.sparse
    for name in ("clock_hz", "units", "arrays_per_unit", "tile_k", "vector_flops_per_s"):
        positive(f"compute.{name}", getattr(c, name))
    for name in ("units", "arrays_per_unit", "tile_k"):  # counts: a fraction would silently skew the tiling
        q = getattr(c, name)
        if float(q.value) != int(q.value):
            raise ConfigError(f"{source}: field 'compute.{name}': value {q.value!r} must be a whole number")
    positive("compute.fill_drain_cycles", c.fill_drain_cycles, allow_zero=True)
    positive("compute.weight_load_cycles", c.weight_load_cycles, allow_zero=True)
    if not c.macs_per_cycle_per_array:
        raise ConfigError(f"{source}: field 'compute.macs_per_cycle_per_array' is empty; give at least one dtype ({', '.join(DTYPE_BITS)})")
    for dt, q in c.macs_per_cycle_per_array.items():
        positive(f"compute.macs_per_cycle_per_array.{dt}", q)
    for dt, q in e.mac_j.items():
        positive(f"energy.mac_j.{dt}", q, allow_zero=True)
    missing = sorted(set(c.macs_per_cycle_per_array) - set(e.mac_j))
    if missing:
        raise ConfigError(f"{source}: field 'energy.mac_j': no energy for dtype(s) {', '.join(missing)} that compute supports")
    for name in ("vector_flop_j", "dram_byte_j", "onchip_byte_j"):
        positive(f"energy.{name}", getattr(e, name), allow_zero=True)
    for name in ("dram_bw_bytes_per_s", "dram_capacity_bytes", "onchip_bytes", "onchip_bw_bytes_per_s"):
        positive(f"memory.{name}", getattr(m, name))
    for name in ("dense_compute_fraction", "sparse_compute_fraction", "memory_bw_fraction", "sparse_memory_bw_fraction"):
        q = getattr(f, name)
        if q is not None and not 0 < q.value <= 1:
            raise ConfigError(f"{source}: field 'efficiency.{name}': value {q.value!r} must be in (0, 1]")
    positive("efficiency.launch_overhead_s", f.launch_overhead_s, allow_zero=True)
    for name in ("graph_launch_overhead_s", "dram_latency_s", "sparse_call_overhead_s", "sparse_tile_overhead_cycles"):
        positive(f"efficiency.{name}", getattr(f, name), allow_zero=True)
    if f.compute_memory_overlap is not None and not 0 <= f.compute_memory_overlap.value <= 1:
        raise ConfigError(f"{source}: field 'efficiency.compute_memory_overlap': value "
                          f"{f.compute_memory_overlap.value!r} must be in [0, 1]")
    for src, dst in c.emulated_dtypes.items():
        if src in c.macs_per_cycle_per_array or dst not in c.macs_per_cycle_per_array:
            raise ConfigError(
                f"{source}: field 'compute.emulated_dtypes.{src}': emulate a dtype the arrays lack with one they "
                f"have; native: {', '.join(c.macs_per_cycle_per_array)}")
    if c.emulated_dtypes and not c.emulated_dtypes_source.strip():
        raise ConfigError(f"{source}: field 'compute.emulated_dtypes_source': say why the emulation holds")
    if f.sparse_compute_fraction.value > f.dense_compute_fraction.value:
        # Sparse kernels reach at most the dense kernels' fraction of their (higher) rate; with
        # this a pattern never runs faster than m/n times dense (an invariant the tests check).
        raise ConfigError(
            f"{source}: field 'efficiency.sparse_compute_fraction': value {f.sparse_compute_fraction.value!r} "
            f"exceeds efficiency.dense_compute_fraction {f.dense_compute_fraction.value!r}"
        )
    positive("sparse.metadata_bits_per_value", s.metadata_bits_per_value, allow_zero=True)
    positive("sparse.pad_rows", s.pad_rows)
    positive("sparse.pad_k_bytes", s.pad_k_bytes)
    if s.torch_backend is not None and not s.torch_backend_source.strip():
        raise ConfigError(f"{source}: field 'sparse.torch_backend_source': say where {s.torch_backend!r} comes from")
    if any(p.is_dense for p in s.native_patterns):
        raise ConfigError(f"{source}: field 'sparse.native_patterns': list sparse patterns only (dense always runs)")
    positive("area_mm2", hw.area_mm2)
    if not check_datasheet:
        return
    for dt, q in c.datasheet_peak_flops_per_s.items():
        _check_peak(source, f"compute.datasheet_peak_flops_per_s.{dt}", q.value, hw.peak_flops_per_s(dt))
    for dt, q in c.datasheet_sparse_peak_flops_per_s.items():
        if not s.native_patterns:
            raise ConfigError(f"{source}: field 'compute.datasheet_sparse_peak_flops_per_s': no native sparse patterns to reach it")
        _check_peak(source, f"compute.datasheet_sparse_peak_flops_per_s.{dt}", q.value, hw.sparse_peak_flops_per_s(dt))


def _check_peak(source: str, path: str, stated: float, derived: float) -> None:
    if abs(derived - stated) > PEAK_CHECK_RTOL * stated:
        raise ConfigError(
            f"{source}: field '{path}': stated peak {stated:.4g} FLOP/s disagrees with the peak derived "
            f"from compute (2 x units x arrays_per_unit x MACs/cycle x clock_hz = {derived:.4g})"
        )


def replace_field(hw: Hardware, dotted_key: str, value: Any) -> Hardware:
    """A copy of ``hw`` with one field changed, for design-space sweeps.

    ``replace_field(hw, "memory.dram_bw_bytes_per_s", 3e12)``: a bare number replacing a sourced
    field is recorded with source ``"design-space override"``. Datasheet peaks are not re-checked
    (a swept design has no datasheet); range checks are.
    """
    parts = dotted_key.split(".")
    new = _replace(hw, parts, value, dotted_key)
    validate_hardware(new, source=f"replace_field({dotted_key!r})", check_datasheet=False)
    return new


def _replace(obj: Any, parts: list[str], value: Any, full: str) -> Any:
    head, rest = parts[0], parts[1:]
    if isinstance(obj, dict):
        if head not in obj and rest:
            raise ConfigError(f"replace_field: {full!r}: no key {head!r}; valid: {', '.join(map(str, obj))}")
        current = obj.get(head, Q(0.0, "design-space override"))
        out = dict(obj)
        out[head] = _replace(current, rest, value, full) if rest else _coerce(current, value, full)
        return out
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"replace_field: {full!r}: {head!r} is not a section")
    names = [f.name for f in dataclasses.fields(obj)]
    if head not in names:
        raise ConfigError(f"replace_field: {full!r}: unknown field {head!r}; valid: {', '.join(names)}")
    current = getattr(obj, head)
    if rest and not isinstance(current, Q):
        return dataclasses.replace(obj, **{head: _replace(current, rest, value, full)})
    if rest:  # "x.value" on a sourced number
        if rest != ["value"]:
            raise ConfigError(f"replace_field: {full!r}: a sourced number only has 'value' to change")
        return dataclasses.replace(obj, **{head: _coerce(current, value, full)})
    hint = typing.get_type_hints(type(obj))[head]
    return dataclasses.replace(obj, **{head: _coerce(current, value, full, hint)})


def _coerce(current: Any, value: Any, full: str, hint: Any = None) -> Any:
    if isinstance(value, Q):
        return value
    if isinstance(current, Q) or (hint is not None and Q in typing.get_args(hint)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"replace_field: {full!r}: expected a number, got {value!r}")
        return Q(float(value), "design-space override")
    if hint is not None:
        # Non-numeric fields (patterns, modes) go through the strict loader for the same checks.
        wrapper = dataclasses.make_dataclass("ReplaceField", [("v", hint)], frozen=True)
        return from_dict(wrapper, {"v": value}, source="replace_field", field_path=full).v
    return value

