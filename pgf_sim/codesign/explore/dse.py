"""Hardware design-space exploration: sweep a base hardware's fields, cost given workloads.

The other direction of co-design: the models are fixed (trained, with their real per-layer
masks, or built-in architectures at a pattern) and the hardware varies. From a base
``Hardware`` and axes such as ``memory.dram_bw_bytes_per_s=1e12,2e12`` (dotted keys of the
hardware YAML, applied with ``sim.hardware.replace_field``) the cartesian product of variants
is built, every workload is costed on every variant with the vectorised cost model
(``sim.cost.evaluate_grid``: one call over variants x all workloads' layers concatenated), and
per-variant latency / energy (and area, where the YAML has an ``area_mm2`` estimate) come
back as (variants x workloads) arrays.

``native_pattern_gain`` answers "is supporting 1:8 natively worth it for these models?":
the same hardware with and without the pattern in ``sparse.native_patterns``.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.errors import ConfigError
from ...core.pattern import NM
from ...sim.hardware import Hardware, replace_field
from ...sim.ops import OpCode, OpTable, Workload


@dataclass(frozen=True)
class Axis:
    """One swept hardware field: its dotted key and the values it takes."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Variant:
    """One point of the design space: the settings applied to the base and the result."""

    name: str
    settings: tuple[tuple[str, Any], ...]
    hw: Hardware


def parse_set(spec: str) -> Axis:
    """``"key=v1,v2,..."`` -> ``Axis``. Lists in brackets: ``sparse.native_patterns=[2:4],[2:4,1:8],[]``.

    Scalars: integers and floats (``2e12``) become numbers, ``true``/``false`` booleans, the
    rest strings (``2:4`` stays a string: YAML would read it as the base-60 integer 124).
    """
    if "=" not in spec:
        raise ConfigError(f"--set {spec!r}: expected key=v1,v2,... (e.g. memory.dram_bw_bytes_per_s=1e12,2e12)")
    key, raw = (s.strip() for s in spec.split("=", 1))
    if not key:
        raise ConfigError(f"--set {spec!r}: empty key")
    values = tuple(_parse_value(v, spec) for v in _split_top(raw, spec))
    if not values:
        raise ConfigError(f"--set {spec!r}: no values after '='")
    return Axis(key, values)


def _split_top(text: str, spec: str) -> list[str]:
    """Split on commas outside brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"--set {spec!r}: unbalanced ']'")
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ConfigError(f"--set {spec!r}: unbalanced '['")
    parts.append("".join(cur).strip())
    if any(p == "" for p in parts):
        raise ConfigError(f"--set {spec!r}: empty value in the list")
    return parts


def _parse_value(text: str, spec: str = "") -> Any:
    """A scalar, or a bracketed list of values (nested: ``[[128,128],[256,128]]``)."""
    text = text.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise ConfigError(f"--set {spec!r}: {text!r} opens a list but does not end with ']'")
        inner = text[1:-1].strip()
        return [] if not inner else [_parse_value(t, spec) for t in _split_top(inner, spec)]
    return _parse_scalar(text)


def _parse_scalar(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _fmt_setting(key: str, value: Any) -> str:
    short = key.split(".")[-1]
    if isinstance(value, (list, tuple)):
        return f"{short}=[{','.join(str(v) for v in value)}]"
    return f"{short}={value:g}" if isinstance(value, float) else f"{short}={value}"


def make_variants(base: Hardware, axes: Sequence[Axis | str]) -> list[Variant]:
    """Cartesian product of the axes applied to ``base`` (first axis varies slowest).

    Every key is checked by ``replace_field`` (unknown field: error listing the valid ones;
    range checks re-run on every variant).
    """
    axes = [parse_set(a) if isinstance(a, str) else a for a in axes]
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--set: a key is given twice: {keys}")
    out = []
    for combo in itertools.product(*(a.values for a in axes)):
        hw = base
        for key, value in zip(keys, combo):
            try:
                hw = replace_field(hw, key, value)
            except ConfigError as exc:
                raise ConfigError(f"--set {key}={value!r}: {exc} (lists go in brackets, one list per value: "
                                  "sparse.native_patterns=[2:4],[2:4,1:8])") from None
        settings = tuple(zip(keys, combo))
        name = ", ".join(_fmt_setting(k, v) for k, v in settings) or "base"
        out.append(Variant(name, settings, hw))
    return out


def _as_table(w: OpTable | Workload) -> OpTable:
    return w.table() if isinstance(w, Workload) else w


def _concat(tables: Sequence[OpTable]) -> OpTable:
    return OpTable(*(np.concatenate([getattr(t, f) for t in tables]) for f in OpTable._fields))


@dataclass(frozen=True)
class DseResult:
    """Costs of every workload on every variant.

    latency_s, energy_j: (V, W) totals per inference (sum over the workload's ops, run one
    after another). area_mm2: (V,) from the variant's ``area_mm2`` (NaN where the YAML has
    none); area_source: its ``source`` text ("assumption: ..." when estimated).
    """

    base: str
    variants: tuple[Variant, ...]
    workloads: tuple[str, ...]
    latency_s: np.ndarray
    energy_j: np.ndarray
    area_mm2: np.ndarray
    area_source: tuple[str, ...]
    runtime: str = "eager"  # sim.cost.RUNTIMES: how every op was priced

    def best(self, workload: str, metric: str = "latency_s") -> Variant:
        """The variant with the lowest ``metric`` (latency_s | energy_j) for one workload."""
        if workload not in self.workloads:
            raise ConfigError(f"unknown workload {workload!r}; valid: {', '.join(self.workloads)}")
        if metric not in ("latency_s", "energy_j"):
            raise ConfigError(f"unknown DSE metric {metric!r}; valid: latency_s, energy_j")
        col = getattr(self, metric)[:, self.workloads.index(workload)]
        return self.variants[int(np.argmin(col))]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per (variant, workload), with speedup vs the first variant."""
        out = []
        for v, var in enumerate(self.variants):
            for w, name in enumerate(self.workloads):
                out.append({
                    "variant": var.name, "workload": name, "runtime": self.runtime,
                    "latency_s": float(self.latency_s[v, w]), "energy_j": float(self.energy_j[v, w]),
                    "speedup_vs_first": float(self.latency_s[0, w] / self.latency_s[v, w]),
                    "energy_vs_first": float(self.energy_j[v, w] / self.energy_j[0, w]),
                    "area_mm2": float(self.area_mm2[v]), "area_source": self.area_source[v],
                })
        return out

    def format_table(self) -> str:
        rows = self.rows()
        vw = max(len("variant"), *(len(r["variant"]) for r in rows))
        ww = max(len("workload"), *(len(r["workload"]) for r in rows))
        lines = [f"design space around {self.base}: {len(self.variants)} variants x {len(self.workloads)} workloads, "
                 f"{self.runtime} runtime",
                 f"{'variant':<{vw}}  {'workload':<{ww}}  {'latency':>12}  {'energy':>12}  {'speedup':>8}  {'area mm2':>9}"]
        for r in rows:
            area = "-" if math.isnan(r["area_mm2"]) else f"{r['area_mm2']:.1f}"
            lines.append(f"{r['variant']:<{vw}}  {r['workload']:<{ww}}  {r['latency_s'] * 1e3:>9.4g} ms  "
                         f"{r['energy_j'] * 1e3:>9.4g} mJ  {r['speedup_vs_first']:>7.2f}x  {area:>9}")
        sources = sorted({s for s in self.area_source if s})
        if sources:
            lines.append("area: " + "; ".join(sources))
        return "\n".join(lines)


def explore(base: Hardware, axes: Sequence[Axis | str], workloads: Mapping[str, OpTable | Workload], *,
            dtype: str | None = None, runtime: str = "eager") -> DseResult:
    """Cost ``workloads`` on every variant of ``base`` along ``axes`` (see module docstring), every
    op priced in ``runtime`` (``sim.cost.RUNTIMES``)."""
    return evaluate_variants(base.name, make_variants(base, axes), workloads, dtype=dtype, runtime=runtime)


def evaluate_variants(base_name: str, variants: Sequence[Variant], workloads: Mapping[str, OpTable | Workload], *,
                      dtype: str | None = None, runtime: str = "eager") -> DseResult:
    from ...sim.cost import evaluate_grid  # the cost model; imported here so parsing needs no simulator

    if not workloads:
        raise ConfigError("design-space exploration needs at least one workload")
    names = tuple(workloads)
    tables = [_as_table(workloads[n]) for n in names]
    empty = [n for n, t in zip(names, tables) if t.n_ops == 0]
    if empty:
        raise ConfigError(f"workload(s) without ops: {', '.join(empty)}")
    big = _concat(tables)
    starts = np.cumsum([0] + [t.n_ops for t in tables[:-1]])
    cost = evaluate_grid(big, [v.hw for v in variants], dtype=dtype, runtime=runtime)  # (V, L_total) arrays, one pass
    lat = np.add.reduceat(cost.latency_s, starts, axis=1)  # (V, W): ops of a workload run one after another
    en = np.add.reduceat(cost.energy_j, starts, axis=1)
    area = np.array([np.nan if var.hw.area_mm2 is None else var.hw.area_mm2.value for var in variants])
    src = tuple("" if var.hw.area_mm2 is None else var.hw.area_mm2.source for var in variants)
    return DseResult(base_name, tuple(variants), names, lat, en, area, src, runtime)


@dataclass(frozen=True)
class PatternGain:
    """Same hardware with / without ``pattern`` native: per-workload latency and energy."""

    pattern: NM
    base: str
    patterns_without: tuple[NM, ...]
    patterns_with: tuple[NM, ...]
    workloads: tuple[str, ...]
    latency_without_s: np.ndarray  # (W,)
    latency_with_s: np.ndarray
    energy_without_j: np.ndarray
    energy_with_j: np.ndarray
    area_without_mm2: float
    area_with_mm2: float
    area_note: str
    uses_pattern: np.ndarray  # (W,) bool: the workload has weight layers whose pattern complies with it

    @property
    def speedup(self) -> np.ndarray:
        return self.latency_without_s / self.latency_with_s

    @property
    def energy_saving(self) -> np.ndarray:
        """Fraction of energy saved by native support (0.25 = 25% less)."""
        return 1.0 - self.energy_with_j / self.energy_without_j

    def statement(self) -> str:
        fmt = lambda ps: "[" + ", ".join(map(str, ps)) + "]"  # noqa: E731
        lines = [f"Native {self.pattern} on {self.base}: native patterns {fmt(self.patterns_without)} -> "
                 f"{fmt(self.patterns_with)}."]
        for i, w in enumerate(self.workloads):
            lines.append(f"  {w}: latency {self.latency_without_s[i] * 1e3:.4g} ms -> {self.latency_with_s[i] * 1e3:.4g} ms "
                         f"({self.speedup[i]:.2f}x), energy {self.energy_without_j[i] * 1e3:.4g} mJ -> "
                         f"{self.energy_with_j[i] * 1e3:.4g} mJ ({self.energy_saving[i] * 100:.1f}% less)")
        users = [w for w, u in zip(self.workloads, self.uses_pattern) if u]
        if not users:
            lines.append(f"  none of the workloads has weight layers that can use {self.pattern}: nothing to gain.")
            geo = 1.0
        else:
            # the verdict counts only workloads that can use the pattern (the others gain nothing by design)
            geo = float(np.exp(np.mean(np.log(self.speedup[self.uses_pattern]))))
            verdict = "worth it on latency" if geo >= 1.05 else "not worth it on latency (< 5% gain)"
            saved = float(np.mean(self.energy_saving[self.uses_pattern]))
            lines.append(f"  over the {len(users)} workload(s) with {self.pattern}-compatible layers: geometric-mean "
                         f"speedup {geo:.2f}x, mean energy saving {saved * 100:.1f}%: {verdict}.")
        if not math.isnan(self.area_without_mm2) and not math.isnan(self.area_with_mm2):
            ratio = (geo * self.area_without_mm2) / self.area_with_mm2
            lines.append(f"  area {self.area_without_mm2:.1f} -> {self.area_with_mm2:.1f} mm2; performance per area "
                         f"{ratio:.2f}x ({self.area_note}).")
        elif self.area_note:
            lines.append(f"  area: {self.area_note}.")
        return "\n".join(lines)


def native_pattern_gain(base: Hardware, pattern: NM | str, workloads: Mapping[str, OpTable | Workload], *,
                        dtype: str | None = None, area_with_mm2: float | None = None,
                        area_source: str = "", runtime: str = "eager") -> PatternGain:
    """Cost ``workloads`` on ``base`` without ``pattern`` native and with it added.

    The workloads carry their own per-layer patterns (e.g. models trained at 1:8 with MDGF).
    ``area_with_mm2``: the area of the variant that supports the pattern, when the user has an
    estimate (``area_source`` says where it comes from; labelled an assumption otherwise).
    """
    pattern = NM.parse(pattern)
    if pattern.is_dense:
        raise ConfigError("native_pattern_gain: dense always runs natively; give a sparse N:M pattern")
    others = tuple(p for p in base.sparse.native_patterns if p != pattern)
    without = Variant(f"without {pattern}", (("sparse.native_patterns", [str(p) for p in others]),),
                      replace_field(base, "sparse.native_patterns", [str(p) for p in others]))
    with_ps = others + (pattern,)
    with_hw = replace_field(base, "sparse.native_patterns", [str(p) for p in with_ps])
    area_base = math.nan if base.area_mm2 is None else base.area_mm2.value
    note = ""
    if area_with_mm2 is not None:
        with_hw = replace_field(with_hw, "area_mm2", float(area_with_mm2))
        note = area_source or "assumption: area of the variant given by the user"
        if base.area_mm2 is not None:
            note += f"; base area source: {base.area_mm2.source}"
    elif base.area_mm2 is not None:
        note = (f"base area {area_base:.1f} mm2 ({base.area_mm2.source}); no estimate of the extra area for "
                f"native {pattern} was given, so the gain is per unchanged area")
    res = evaluate_variants(base.name, [without, Variant(f"with {pattern}", (("sparse.native_patterns",
                            [str(p) for p in with_ps]),), with_hw)], workloads, dtype=dtype, runtime=runtime)
    area_with = area_base if area_with_mm2 is None else float(area_with_mm2)
    uses = np.array([_uses(_as_table(workloads[w]), pattern) for w in res.workloads], dtype=bool)
    return PatternGain(pattern, base.name, others, with_ps, res.workloads, res.latency_s[0], res.latency_s[1],
                       res.energy_j[0], res.energy_j[1], area_base, area_with, note, uses)


def _uses(table: OpTable, pattern: NM) -> bool:
    """True if some weight GEMM of ``table`` is sparse with a pattern that complies with ``pattern``."""
    pairs = {(int(n), int(m)) for n, m, k in zip(table.pat_n, table.pat_m, table.kind) if k == OpCode.GEMM and n != m}
    return any(NM(n, m).complies_with(pattern) for n, m in pairs)


def builtin_workloads(models: Sequence[str], patterns: Sequence[NM | str], *, batch: int = 1,
                      seq_len: int | None = None, dtype: str = "fp16") -> dict[str, Workload]:
    """Built-in architectures at uniform patterns, named ``"<model> <pattern>"``."""
    from ...sim.workloads import build_workload

    out = {}
    for model in models:
        for p in patterns:
            pat = NM.parse(p)
            out[f"{model} {'dense' if pat.is_dense else pat}"] = build_workload(
                model, batch=batch, seq_len=seq_len, pattern=pat, dtype=dtype, merge_blocks=True)
    return out
