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

    p = subparsers.add_parser("validate", help="simulator vs measurements (absolute time and 2:4 speedup errors, held-out MAPE)",
                              description="Compare the simulator with measurements (the published A100 calibration "
                                          "set, or a file from pgf-sim measure): absolute time and 2:4 speedup "
                                          "error per case, cases whose setup differs flagged and never fitted, and "
                                          "leave-one-out (held-out) MAPE of the fitted factors.")
    p.add_argument("--hw", default=None, metavar="NAME|FILE",
                   help="run every case on this target (default: the measurement file's device.target)")
    p.add_argument("--measurements", default="a100_published", metavar="NAME|FILE",
                   help="measurement file (default: the published A100 set in hw_configs/measurements/)")
    p.add_argument("--no-loo", action="store_true", help="skip the leave-one-out refits")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target (held-out MAPE, speedup sides) is missed")
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser("measure", help="time dense (and on CUDA sm80+ 2:4) GEMMs and models here; write a measurement file",
                              description="Time dense GEMMs y = x W^T over a grid of shapes from M=1 upward on the local "
                                          "device (on CUDA with compute capability >= 8.0 also 2:4 semi-structured), as "
                                          "device time in a CUDA graph (kernel) and as per-call wall time of an eager "
                                          "loop (eager), and write a measurement file with the device's description, for "
                                          "`pgf-sim calibrate` and `validate`. With --model also time a whole model's "
                                          "forward (eager; on CUDA also in a CUDA graph), dense and 2:4.")
    p.add_argument("--out", required=True, metavar="FILE", help="measurement file to write (YAML)")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda (cuda:N)")
    p.add_argument("--dtype", default=None, help="fp32 (CPU default), fp16 (CUDA default) or bf16")
    p.add_argument("--m", metavar="M,M,...", help="rows of x, from 1 upward (default CPU 1,8,64,256,1024; "
                                                  "CUDA 1,16,64,128,256,1024,4096)")
    p.add_argument("--nk", metavar="NxK,...", help="weight shapes (default CPU 256x256,1024x1024,2048x2048; "
                                                   "CUDA 4096x4096,11008x4096,4096x11008)")
    p.add_argument("--timing", metavar="T,T", default=None,
                   help="what each time covers: kernel (CUDA graph replays timed with CUDA events; on the CPU "
                        "back-to-back calls), eager (wall clock per call of an eager loop, host launch included), "
                        "call (one call alone); default kernel,eager")
    p.add_argument("--tiny", action="store_true", help="a tiny grid and short timing blocks (seconds; for tests)")
    sparse = p.add_mutually_exclusive_group()
    sparse.add_argument("--sparse", dest="sparse", action="store_const", const=True, default=None,
                        help="require 2:4 (an error where the device has no 2:4 kernels); default: 2:4 where the "
                             "device can (CUDA, compute capability >= 8.0)")
    sparse.add_argument("--no-sparse", dest="sparse", action="store_const", const=False, help="dense only")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    p.add_argument("--target", help="hardware target the file calibrates (written as device.target)")
    p.add_argument("--model", metavar="NAME|MODULE:FUNCTION",
                   help="also time a whole model's forward: a built-in model (vit_ti, vit_s, vit_b, vit_l, bert_base, "
                        "gpt2, llama_7b) or your declared factory package.module:function returning an nn.Module "
                        "(with --trust-module PACKAGE)")
    p.add_argument("--batch", metavar="B,B", help="--model: batch sizes (default 1)")
    p.add_argument("--seq-len", metavar="T,T", help="--model: tokens per sequence (default: the model's own; "
                                                    "a ViT's is fixed by its image and patch size)")
    p.add_argument("--decode", action="store_true",
                   help="--model: also time a decode-shaped step (forward of batch x 1 token); automatic for "
                        "built-in decoders")
    p.set_defaults(func=cmd_measure)

    p = subparsers.add_parser("calibrate", help="fit a target's named factors to a measurement file; held-out error",
                              description="Fit a hardware target's named efficiency factors to a measurement file "
                                          "(least squares), print in-sample and leave-one-out held-out error, and "
                                          "with --write store the fitted values in the target's YAML.")
    p.add_argument("measurements", metavar="FILE|NAME", help="measurement file (pgf-sim measure) or a built-in name")
    p.add_argument("--hw", metavar="NAME|FILE", help="target to fit (default: the file's device.target)")
    p.add_argument("--write", action="store_true", help="write the fitted values into the target's YAML file")
    p.set_defaults(func=cmd_calibrate)


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
                 f"memory {f.memory_bw_fraction.value:g}, launch overhead {si(f.launch_overhead_s.value, 's')} (eager)")
    extra = [(label, q) for label, q in (
        ("graph launch (fused)", f.graph_launch_overhead_s), ("DRAM latency", f.dram_latency_s),
        ("sparse call (eager)", f.sparse_call_overhead_s)) if q is not None]
    terms = [f"{label} {si(q.value, 's')}" for label, q in extra]
    if f.sparse_tile_overhead_cycles is not None:
        terms.append(f"sparse tile {f.sparse_tile_overhead_cycles.value:g} cycles")
    if f.compute_memory_overlap is not None:
        terms.append(f"compute/memory overlap {f.compute_memory_overlap.value:.3g}")
    if terms:
        lines.append("  kernel terms: " + ", ".join(terms))
    if c.emulated_dtypes:
        lines.append("  emulated dtypes: " + ", ".join(f"{a} as {b}" for a, b in c.emulated_dtypes.items())
                     + f" ({c.emulated_dtypes_source})")
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
    from .calibrate import format_validation, validate

    result = validate(args.hw, args.measurements, held_out=not args.no_loo)
    print(format_validation(result))
    return 1 if args.strict and not result.meets_targets else 0


def cmd_measure(args: argparse.Namespace) -> int:
    from ..core.errors import ConfigError
    from .measure import measure, measure_model, parse_counts, parse_grid, parse_timings
    from .measurements import write_measurements

    cuda = args.device.startswith("cuda")
    dtype = args.dtype or ("fp16" if cuda else "fp32")
    timings = parse_timings(args.timing)
    if args.model is None and (args.batch or args.seq_len or args.decode):
        raise ConfigError("--batch, --seq-len and --decode go with --model NAME")
    grid = parse_grid(args.m, args.nk, tiny=args.tiny, cuda=cuda)
    quick = {"min_block_s": 0.005, "blocks": 3} if args.tiny else {}
    model = None
    if args.model:  # first: a wrong name or an untrusted path fails before minutes of GEMM timing
        model = measure_model(args.model, device=args.device, dtype=dtype,
                              batches=parse_counts(args.batch, "--batch") if args.batch else (1,),
                              seq_lens=parse_counts(args.seq_len, "--seq-len") if args.seq_len else None,
                              timings=timings, sparse=args.sparse, decode=True if args.decode else None,
                              threads=args.threads, **quick)
    result = measure(grid, device=args.device, dtype=dtype, sparse=args.sparse, timings=timings, threads=args.threads,
                     **quick, **({"cold_bytes": 16 * 2**20} if args.tiny else {}))
    if args.target:
        result["device"]["target"] = args.target
    sparse = result["sparse"] + (model["sparse"] if model else [])
    write_measurements(args.out, result["device"], result["dense"], sparse)
    for row in result["dense"]:
        print(f"{row['m']:>6} x {row['n']:>6} x {row['k']:>6} {row['dtype']} {row['timing']:>6}: "
              f"{row['time_s'] * 1e6:10.1f} us")
    for row in result["sparse"]:
        print(f"{row['name']}: dense {row['dense_s'] * 1e6:.1f} us, 2:4 {row['sparse_s'] * 1e6:.1f} us, "
              f"speedup {row['dense_s'] / row['sparse_s']:.2f}x")
    for row in model["models"] if model else ():
        step = "forward" if row["step"] == "forward" else "decode step (1 token)"
        line = (f"model {row['model']} {step}, batch {row['batch']} x {row['seq_len']} tokens {row['dtype']} "
                f"{row['timing']}: dense {row['dense_s'] * 1e3:.3f} ms")
        if row["sparse_s"] is not None:
            line += f", 2:4 {row['sparse_s'] * 1e3:.3f} ms, speedup {row['dense_s'] / row['sparse_s']:.2f}x"
        print(line)
    for note in dict.fromkeys(result["notes"] + (model["notes"] if model else [])):
        print(f"note: {note}")
    written = f"{len(result['dense'])} dense, {len(sparse)} 2:4 cases"
    print(f"wrote {args.out} ({written}; {result['device']['name']}: {result['device'].get('description', '')})")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..core.errors import ConfigError
    from .calibrate import fit, format_validation, validate, with_values
    from .hardware import hardware_dir, load_hardware
    from .measurements import load_measurements

    meas = load_measurements(args.measurements)
    target = args.hw or meas.target
    if not target:
        raise ConfigError(f"{meas.path}: no device.target; pass --hw NAME|FILE")
    base = load_hardware(target)
    before = validate(base, meas)
    values = fit(base, meas)
    after = validate(with_values(base, values), meas)
    print("Before the fit:")
    print(format_validation(before))
    print("\nFitted factors:")
    for key, value in values.items():
        print(f"  {key} = {value:.6g}")
    print("\nAfter the fit:")
    print(format_validation(after))
    if args.write:
        path = Path(target) if Path(target).is_file() else hardware_dir() / f"{target}.yaml"
        write_fitted(path, values, meas.path)
        print(f"wrote the fitted values into {path}")
    return 0


def write_fitted(path, values: dict, measurements_path: str) -> None:
    """Replace each fitted field's ``{value, source}`` line in a hardware YAML file."""
    import re
    from pathlib import Path

    from ..core.errors import ConfigError

    text = Path(path).read_text()
    name = Path(measurements_path).stem
    for key, value in values.items():
        field = key.split(".")[1]
        line = f'  {field}: {{value: {value:.6g}, source: "fitted on calibration set (pgf-sim calibrate {name})"}}'
        text, n = re.subn(rf"^  {field}: \{{.*\}}$", line, text, flags=re.M)
        if n != 1:
            raise ConfigError(f"{path}: field 'efficiency.{field}' must be one '{field}: {{value, source}}' line to be rewritten")
    Path(path).write_text(text)
