"""``pgf-sim hw list|show|validate`` and ``pgf-sim validate`` (calibration report).

Light at import: the hardware and calibration modules are imported inside the commands.
"""
from __future__ import annotations

import argparse


def add_commands(subparsers) -> None:
    hw = subparsers.add_parser("hw", help="hardware targets: list, show, validate a YAML file",
                               description="Hardware targets are YAML files, one device each, every number with "
                                           "its source. Built-in ones live in hw_configs/; wherever a command "
                                           "takes a target, a path to your own YAML works too.")
    hw_sub = hw.add_subparsers(dest="hw_command", metavar="HW_COMMAND")
    hw_sub.required = True
    p = hw_sub.add_parser("list", help="list the built-in hardware targets",
                          description="One line per built-in target: kind, dense peak, DRAM bandwidth, "
                                      "natively supported N:M patterns.")
    p.set_defaults(func=cmd_list)
    p = hw_sub.add_parser("show", help="readable summary of a target, with derived peaks",
                          description="Every field of a target (built-in name or YAML file), with the peaks "
                                      "derived from units x arrays x MACs x clock; --sources adds each source.")
    p.add_argument("target", metavar="NAME|FILE")
    p.add_argument("--sources", action="store_true", help="print the source of every number")
    p.set_defaults(func=cmd_show)
    p = hw_sub.add_parser("validate", help="strictly load a hardware YAML file (exit 2 on any error)",
                          description="Load a hardware YAML with the strict loader: an unknown or missing key, "
                                      "a number without a source or a bad value is an error naming the field.")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_validate_file)

    p = subparsers.add_parser("validate", help="simulator vs published measurements (calibration set, MAPE)",
                              description="Compare the simulator with published A100 measurements (the "
                                          "calibration set): per-case error, MAPE, and leave-one-out refits of "
                                          "the fitted efficiency factors.")
    p.add_argument("--hw", default=None, metavar="NAME|FILE",
                   help="run every case on this target (default: each case on the A100 it was measured on)")
    p.add_argument("--no-loo", action="store_true", help="skip the leave-one-out refits")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target (MAPE, speedup) is missed")
    p.set_defaults(func=cmd_validate)


def cmd_list(args: argparse.Namespace) -> int:
    from .hardware import hardware_dir, list_hardware, load_hardware
    from .report_table import format_columns, si

    rows = []
    for name in list_hardware():
        hw = load_hardware(name)
        dtype = _main_dtype(hw)
        native = ", ".join(str(p) for p in hw.sparse.native_patterns) or "none"
        rows.append([name, hw.kind, si(hw.peak_flops_per_s(dtype), "FLOP/s") + f" {dtype}",
                     si(hw.memory.dram_bw_bytes_per_s.value, "B/s"), native, hw.description])
    print(format_columns(["name", "kind", "dense peak", "DRAM bw", "native N:M", "description"], rows, right=(2, 3)))
    print(f"({len(rows)} targets in {hardware_dir()})")
    return 0


def _main_dtype(hw) -> str:
    for dt in ("fp16", "bf16", "int8", "fp8", "tf32", "fp32", "int4"):
        if dt in hw.compute.macs_per_cycle_per_array:
            return dt
    raise AssertionError("validated hardware has at least one dtype")


def cmd_show(args: argparse.Namespace) -> int:
    from .hardware import load_hardware

    print(format_hardware(load_hardware(args.target), sources=args.sources))
    return 0


def format_hardware(hw, *, sources: bool = False) -> str:
    from ..core.config import to_dict
    from .report_table import si

    c, s, m, e, f = hw.compute, hw.sparse, hw.memory, hw.energy, hw.efficiency
    lines = [f"{hw.name}: {hw.description} ({hw.kind})", "Compute:"]
    lines.append(f"  {c.units.value:g} units x {c.arrays_per_unit.value:g} arrays at {si(c.clock_hz.value, 'Hz')}")
    for dt, q in c.macs_per_cycle_per_array.items():
        peak = hw.peak_flops_per_s(dt)
        stated = c.datasheet_peak_flops_per_s.get(dt)
        check = f" (datasheet {si(stated.value, 'FLOP/s')})" if stated else ""
        sparse = f", sparse peak {si(hw.sparse_peak_flops_per_s(dt), 'FLOP/s')}" if s.native_patterns else ""
        lines.append(f"  {dt:>5}: {q.value:g} MAC/cycle/array -> dense peak {si(peak, 'FLOP/s')}{check}{sparse}")
    lines.append(f"  tiles (M x N): {', '.join(f'{a}x{b}' for a, b in c.tile_shapes.mn)}; K step {c.tile_k.value:g}; "
                 f"fill/drain {c.fill_drain_cycles.value:g} cycles per tile; "
                 f">= {c.weight_load_cycles.value:g} cycles per K step (weight load)")
    lines.append(f"  vector unit: {si(c.vector_flops_per_s.value, 'FLOP/s')}")
    native = ", ".join(str(p) for p in s.native_patterns) or "none"
    meta = f"{s.metadata_bits_per_value.value:g} bits" if s.metadata_bits_per_value else "ceil(log2 M) bits"
    lines.append(f"Sparse: native N:M {native}; otherwise {s.unsupported}; metadata {meta} per kept value")
    if s.pad_rows or s.pad_k_bytes:
        lines.append(f"  sparse kernels pad rows to {s.pad_rows.value if s.pad_rows else 1:g} and K to "
                     f"{s.pad_k_bytes.value if s.pad_k_bytes else 1:g} bytes")
    lines.append(f"Memory: DRAM {si(m.dram_bw_bytes_per_s.value, 'B/s')}, {si(m.dram_capacity_bytes.value, 'B')}; "
                 f"on-chip {m.onchip_bytes.value / 2**20:g} MiB at {si(m.onchip_bw_bytes_per_s.value, 'B/s')}")
    macs = ", ".join(f"{dt} {si(q.value, 'J')}" for dt, q in e.mac_j.items())
    lines.append(f"Energy: per MAC {macs}; DRAM {si(e.dram_byte_j.value, 'J')}/B; on-chip "
                 f"{si(e.onchip_byte_j.value, 'J')}/B; vector {si(e.vector_flop_j.value, 'J')}/FLOP")
    lines.append(f"Efficiency: dense {f.dense_compute_fraction.value:g}, sparse {f.sparse_compute_fraction.value:g}, "
                 f"memory {f.memory_bw_fraction.value:g}, launch overhead {si(f.launch_overhead_s.value, 's')}")
    if hw.area_mm2:
        lines.append(f"Area: {hw.area_mm2.value:g} mm^2")
    if sources:
        lines.append("Sources:")
        _walk_sources(to_dict(hw), "", lines)
    return "\n".join(lines)


def _walk_sources(node, path: str, lines: list[str]) -> None:
    if isinstance(node, dict) and set(node) == {"value", "source"}:
        lines.append(f"  {path} = {node['value']:g}: {node['source']}")
        return
    if isinstance(node, dict):
        for key, value in node.items():
            _walk_sources(value, f"{path}.{key}" if path else key, lines)
    elif path.endswith("source"):
        lines.append(f"  {path}: {node}")


def cmd_validate_file(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..core.errors import ConfigError
    from .hardware import load_hardware

    if not Path(args.file).is_file():
        raise ConfigError(f"{args.file}: no such file")
    hw = load_hardware(Path(args.file))
    print(f"{args.file}: OK ({hw.name}: {hw.description})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .calibrate import format_validation, leave_one_out, validate

    result = validate(args.hw)
    loo = None if args.no_loo else leave_one_out(args.hw or "a100_80gb")
    print(format_validation(result, loo))
    return 1 if args.strict and not result.meets_targets else 0
