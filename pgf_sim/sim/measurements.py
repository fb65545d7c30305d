"""Measurement files: timed GEMMs (and 2:4 vs dense pairs) of one device, with their sources.

One YAML file per device, written by ``pgf-sim measure`` or collected from publications
(``hw_configs/measurements/``). ``calibrate`` fits a target's named factors to the dense
cases and checks the sparse ones. Format::

    device: {name: "...", target: a100_80gb, description: "..."}
    dense:  [{m, n, k, dtype, time_s, source[, timing][, exclude_from_fit]}, ...]
    sparse: [{name, kind: gemm|model, m, n, k | model, batch, seq_len, dtype, dense_s, sparse_s, source[, timing]}, ...]

A case's ``timing`` says what its time covers: ``eager`` (the default) is the wall time per call
of a loop of eager PyTorch calls ending in one synchronisation (host dispatch included, but
the host issues the next call while the GPU runs this one: ``pgf-sim measure``); ``call`` is
one call timed alone between synchronisations, so host cost and kernel add up (the LLMCompass
harness); ``kernel`` is device time of back-to-back calls (CUDA events around many launches, a CUDA graph
replay, Triton's ``do_bench``), where the host's launch cost is hidden behind the GPU's work.
A sparse (2:4 vs dense) case takes the same ``timing`` for both of its times: ``eager`` pairs
are predicted in the eager runtime (the per-call host cost of the sparse path included),
``kernel`` pairs in the graph runtime.
``exclude_from_fit: "<reason>"`` keeps a dense case (or a sparse pair) out of every fit (it is still predicted and
reported): for a regime the model has no term for, so that it does not bend the factors the
other cases need. The reason is printed beside the case.

Read with ``yaml.safe_load``; an unknown or missing key is an error naming the file and entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import load_yaml
from ..core.errors import ConfigError
from .ops import DTYPES


@dataclass(frozen=True)
class DenseCase:
    m: int
    n: int
    k: int
    dtype: str
    measured_s: float
    source: str
    timing: str = "eager"  # one of TIMINGS
    exclude_from_fit: str = ""  # non-empty: why this case is validation-only (module docstring)


@dataclass(frozen=True)
class SparseCase:
    """A 2:4 vs dense pair: one GEMM (``kind`` gemm) or a whole built-in model (``kind`` model)."""

    name: str
    kind: str
    dtype: str
    dense_s: float
    sparse_s: float
    source: str
    m: int = 0
    n: int = 0
    k: int = 0
    model: str = ""
    batch: int = 1
    seq_len: int = 0
    timing: str = "eager"  # one of TIMINGS, for both times
    exclude_from_fit: str = ""  # non-empty: why this pair is validation-only

    @property
    def measured_speedup(self) -> float:
        return self.dense_s / self.sparse_s


@dataclass(frozen=True)
class Measurements:
    path: str
    device: dict
    dense: tuple[DenseCase, ...]
    sparse: tuple[SparseCase, ...]

    @property
    def target(self) -> str:
        return str(self.device.get("target", ""))


TIMINGS = ("eager", "kernel", "call")  # what a case's time covers (module docstring)
_DEVICE_KEYS = {"name", "target", "description"}
_DENSE_REQUIRED = {"m", "n", "k", "dtype", "time_s", "source"}
_DENSE_KEYS = _DENSE_REQUIRED | {"timing", "exclude_from_fit"}
_SPARSE_KEYS = {"name", "kind", "m", "n", "k", "model", "batch", "seq_len", "dtype", "dense_s", "sparse_s", "source",
                "timing", "exclude_from_fit"}


def measurements_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "hw_configs" / "measurements"


def _entry(path: str, where: str, raw: Any, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {where}: expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{path}: {where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(raw))
    if missing:
        raise ConfigError(f"{path}: {where}: missing key(s) {', '.join(missing)}")
    for key in ("time_s", "dense_s", "sparse_s"):
        if key in raw and not (isinstance(raw[key], (int, float)) and raw[key] > 0):
            raise ConfigError(f"{path}: {where}: field '{key}': {raw[key]!r} must be a positive number of seconds")
    for key in ("m", "n", "k", "batch", "seq_len"):
        if key in raw and not (isinstance(raw[key], int) and raw[key] >= 1):
            raise ConfigError(f"{path}: {where}: field '{key}': {raw[key]!r} must be an integer >= 1")
    if "dtype" in raw and raw["dtype"] not in DTYPES:
        raise ConfigError(f"{path}: {where}: field 'dtype': {raw['dtype']!r}; valid: {', '.join(DTYPES)}")
    if "timing" in raw and raw["timing"] not in TIMINGS:
        raise ConfigError(f"{path}: {where}: field 'timing': {raw['timing']!r}; valid: {', '.join(TIMINGS)}")
    if "exclude_from_fit" in raw and not (isinstance(raw["exclude_from_fit"], str) and raw["exclude_from_fit"].strip()):
        raise ConfigError(f"{path}: {where}: field 'exclude_from_fit': {raw['exclude_from_fit']!r} must be the reason, "
                          f"a non-empty text (leave the field out to fit on the case)")
    if "source" in raw and not str(raw["source"]).strip():
        raise ConfigError(f"{path}: {where}: field 'source' is empty; say where the number comes from")
    return raw


def load_measurements(path: "str | Path") -> Measurements:
    """Load a measurement file (a path, or a file stem in ``hw_configs/measurements/``)."""
    p = Path(path)
    if not p.is_file() and (measurements_dir() / f"{path}.yaml").is_file():
        p = measurements_dir() / f"{path}.yaml"
    if not p.is_file():
        known = sorted(x.stem for x in measurements_dir().glob("*.yaml"))
        raise ConfigError(f"{path}: no such measurement file; built-in: {', '.join(known)} (or a YAML path)")
    data = load_yaml(p)
    src = str(p)
    unknown = sorted(set(data) - {"device", "dense", "sparse", "dense_source"})
    if unknown:
        raise ConfigError(f"{src}: unknown key(s) {', '.join(unknown)}; valid: device, dense, sparse")
    device = _entry(src, "device", data.get("device"), _DEVICE_KEYS, {"name"})
    dense = []
    for i, raw in enumerate(data.get("dense") or []):
        e = _entry(src, f"dense[{i}]", raw, _DENSE_KEYS, _DENSE_REQUIRED)
        dense.append(DenseCase(e["m"], e["n"], e["k"], e["dtype"], float(e["time_s"]), str(e["source"]),
                               e.get("timing", "eager"), e.get("exclude_from_fit", "")))
    sparse = []
    for i, raw in enumerate(data.get("sparse") or []):
        e = _entry(src, f"sparse[{i}]", raw, _SPARSE_KEYS, {"name", "kind", "dtype", "dense_s", "sparse_s", "source"})
        if e["kind"] == "gemm":
            _entry(src, f"sparse[{i}]", e, _SPARSE_KEYS, {"m", "n", "k"})
        elif e["kind"] == "model":
            _entry(src, f"sparse[{i}]", e, _SPARSE_KEYS, {"model", "batch", "seq_len"})
        else:
            raise ConfigError(f"{src}: sparse[{i}]: field 'kind': {e['kind']!r}; valid: gemm, model")
        sparse.append(SparseCase(str(e["name"]), e["kind"], e["dtype"], float(e["dense_s"]), float(e["sparse_s"]),
                                 str(e["source"]), e.get("m", 0), e.get("n", 0), e.get("k", 0), e.get("model", ""),
                                 e.get("batch", 1), e.get("seq_len", 0), e.get("timing", "eager"),
                                 e.get("exclude_from_fit", "")))
    if not dense and not sparse:
        raise ConfigError(f"{src}: no measurements (give 'dense' and/or 'sparse' entries)")
    return Measurements(src, dict(device), tuple(dense), tuple(sparse))


def write_measurements(path: "str | Path", device: dict, dense: list[dict], sparse: list[dict]) -> None:
    """Write a measurement file (the format ``load_measurements`` reads)."""
    import yaml

    Path(path).write_text(yaml.safe_dump({"device": device, "dense": dense, "sparse": sparse}, sort_keys=False))
