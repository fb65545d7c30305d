"""``pgf-sim simulate``: per-layer cost of a model or a single GEMM on one or more hardware targets.

Light at import (argparse only). Built-in models never load torch; a checkpoint directory (a
finished training run) is loaded and captured with torch inside the command.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import ConfigError, PgfSimError
from ..core.pattern import NM

PHASES = ("forward", "prefill", "decode", "train")
FORMATS = ("table", "csv", "json")
DEFAULT_TRAIN_STEPS = 1000


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate", help="per-layer FLOPs, bytes, time, energy of a model or GEMM on hardware targets",
        description="Simulate a built-in model (pgf-sim simulate --model vit_b), a trained run directory "
                    "(patterns read from its weights) or one GEMM (--gemm M,N,K) on one or more hardware "
                    "targets and N:M patterns; one block per combination plus a summary.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="built-in model name (vit_ti, vit_s, vit_b, vit_l, bert_base, t5_base, "
                                      "gpt2, llama_7b) or a training run directory")
    what.add_argument("--gemm", metavar="M,N,K", help="one weight GEMM: M tokens, N out features, K reduction")
    p.add_argument("--hw", action="append", required=True, metavar="NAME|FILE",
                   help="hardware target (name in hw_configs/ or a YAML file); repeatable")
    p.add_argument("--pattern", action="append", metavar="N:M",
                   help="N:M of the MLP layers (or the GEMM weight), e.g. 2:4 or dense; repeatable (default dense)")
    p.add_argument("--qkv-pattern", metavar="N:M", help="N:M of the Q/K/V projections (default dense)")
    p.add_argument("--batch", type=int, help="batch size (default 1; a run directory with --phase train: its own)")
    p.add_argument("--seq-len", type=int, help="sequence / context length (default: the model's own)")
    p.add_argument("--phase", choices=PHASES, default="forward",
                   help="forward pass, inference prefill/decode (decoder models), or a training run")
    p.add_argument("--dtype", default="fp16", help="operand dtype (fp16, bf16, int8, fp8, tf32, fp32)")
    p.add_argument("--profile", choices=("eager", "fused"), default="eager",
                   help="execution profile: eager (one kernel per op) or fused (CUDA graphs, fused epilogues, FlashAttention)")
    p.add_argument("--recipe", help="training recipe for --phase train (default sr-ste; a run directory: its own)")
    p.add_argument("--steps", type=int, help=f"training steps for --phase train (default {DEFAULT_TRAIN_STEPS}; "
                                             "a run directory: its own when given in steps)")
    p.add_argument("--per-block", action="store_true", help="one row per block instead of merged repeats")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--out", metavar="FILE", help="write the output here instead of stdout")
    p.set_defaults(func=run_simulate)


def _parse_gemm(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    try:
        m, n, k = (int(x) for x in parts)
    except ValueError:
        raise ConfigError(f"--gemm {text!r}: expected three integers M,N,K (e.g. 1024,4096,4096)") from None
    return m, n, k


def _patterns(args) -> list[NM]:
    return [NM.parse(p) for p in (args.pattern or ["dense"])]


def _capture_run(run_dir: Path, args) -> tuple:
    """Load a finished training run and capture it (patterns from its weights): (workload, cfg)."""
    try:
        from ..train.trainer import CONFIG_NAME, example_input, load_trained
    except ModuleNotFoundError as exc:
        raise PgfSimError(f"cannot load run directory {run_dir}: the training part is not installed ({exc})") from None
    from .capture import capture

    if args.pattern or args.qkv_pattern:
        raise ConfigError(f"--pattern/--qkv-pattern cannot be used with a run directory ({run_dir}): "
                          "its N:M patterns are read from the trained weights")
    if args.phase in ("prefill", "decode"):
        raise ConfigError(f"a captured run is simulated as a forward pass or a training run (--phase forward|train), "
                          f"not {args.phase}")
    if not (run_dir / CONFIG_NAME).is_file():
        raise ConfigError(f"{run_dir} is not a training run directory (no {CONFIG_NAME}); --model takes a built-in "
                          f"model name or the directory of a run (pgf-sim train ...)")
    model, cfg = load_trained(run_dir)
    batch = args.batch or (cfg.schedule.batch_size if args.phase == "train" else 1)
    return capture(model, (example_input(cfg, batch),), dtype=args.dtype, name=cfg.name), cfg


def _jobs(args) -> list[tuple]:
    """(workload, training recipe or None, training steps) to simulate: one per --pattern
    (a run directory: one, trained with its own recipe)."""
    from .workloads import build_workload, gemm_workload, list_models, merge_repeats

    train = args.phase == "train"
    if args.gemm:
        if args.phase != "forward":
            raise ConfigError("--gemm simulates one forward GEMM; --phase must be forward")
        m, n, k = _parse_gemm(args.gemm)
        return [(gemm_workload(m, n, k, pattern=p, dtype=args.dtype), None, 0) for p in _patterns(args)]
    path = Path(args.model)
    if args.model not in list_models() and path.is_dir():
        wl, cfg = _capture_run(path, args)
        if not train:
            return [(wl if args.per_block else merge_repeats(wl), None, 0)]
        if args.recipe:
            raise ConfigError(f"--recipe cannot be used with a run directory: it was trained with {cfg.recipe.name}")
        steps = args.steps or cfg.schedule.steps
        if not steps:
            raise ConfigError(f"{path}: the run is defined in epochs; give --steps")
        return [(wl, cfg.recipe, steps)]
    if args.model not in list_models():
        raise ConfigError(f"--model {args.model!r} is neither a built-in model ({', '.join(list_models())}) "
                          f"nor a training run directory")
    qkv = NM.parse(args.qkv_pattern) if args.qkv_pattern else None
    jobs = []
    for p in _patterns(args):
        # training keeps concrete layer names: a recipe's layer globs select real blocks
        wl = build_workload(args.model, batch=args.batch or 1, seq_len=args.seq_len, pattern=p, qkv_pattern=qkv,
                            phase="forward" if train else args.phase, dtype=args.dtype,
                            merge_blocks=not (args.per_block or train))
        recipe = None
        if train:
            from ..train.schedules import RecipeConfig

            recipe = RecipeConfig(name=args.recipe or "sr-ste", pattern=p, qkv_pattern=qkv)
        jobs.append((wl, recipe, args.steps or DEFAULT_TRAIN_STEPS))
    return jobs


def _train(args, jobs, hws) -> str:
    from .simulate import training_step_cost

    costs = [training_step_cost(wl, hw, recipe, steps) for wl, recipe, steps in jobs for hw in hws]
    if args.format == "json":
        from .report_table import to_json

        return to_json([c.to_dict() for c in costs])
    if args.format == "csv":  # one header, then every segment's rows
        return "".join(c.to_csv() if i == 0 else c.to_csv().split("\n", 1)[1] for i, c in enumerate(costs))
    return "\n\n".join(c.format_table() for c in costs)


def run_simulate(args: argparse.Namespace) -> int:
    from .hardware import load_hardware
    from .report_table import rows_to_csv, to_json
    from .simulate import ROW_COLUMNS, format_summary, simulate

    for flag in ("batch", "steps"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    hws = [load_hardware(h) for h in args.hw]
    jobs = _jobs(args)
    if args.phase == "train":
        text = _train(args, jobs, hws)
    else:
        results = [simulate(wl, hw, profile=args.profile) for wl, _, _ in jobs for hw in hws]
        if args.format == "json":
            text = to_json({"results": [r.to_dict() for r in results],
                            "summary": [{"workload": r.workload, "hardware": r.hardware,
                                         "pattern": r.meta.get("pattern"), **r.totals} for r in results]})
        elif args.format == "csv":
            rows = [{"workload": r.workload, "hardware": r.hardware, "model_pattern": r.meta.get("pattern"), **row}
                    for r in results for row in r.rows]
            text = rows_to_csv(rows, ("workload", "hardware", "model_pattern") + ROW_COLUMNS)
        else:
            blocks = [r.format_table() for r in results]
            if len(results) > 1:
                blocks.append("summary\n" + format_summary(results))
            text = "\n\n".join(blocks)
    if args.out:
        Path(args.out).write_text(text if text.endswith("\n") else text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0
