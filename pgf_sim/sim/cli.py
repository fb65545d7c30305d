"""``pgf-sim simulate``: per-layer cost of a model or a single GEMM on one or more hardware targets.

Light at import (argparse only). Built-in models never load torch. The simulator does not know
about training runs: a run directory (``--model RUN_DIR``) is loaded and captured by a
``RunLoader`` the caller passes in (``pgf_sim.codesign.cli.cli`` registers the command with
``pgf_sim.codesign.run.trained.load_run_for_simulation``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

from ..core.errors import ConfigError
from ..core.pattern import NM

if TYPE_CHECKING:
    from ..sparsity.schedules import RecipeConfig
    from .ops import Workload

PHASES = ("forward", "prefill", "decode", "train")
FORMATS = ("table", "csv", "json")
DEFAULT_TRAIN_STEPS = 1000


class CapturedRun(NamedTuple):
    """A trained run captured for simulation: its workload (patterns read from the weights), the
    recipe it was trained with and its length in steps (None: defined in epochs)."""

    workload: "Workload"
    recipe: "RecipeConfig"
    steps: int | None


# (run directory, batch or None for the run's own training batch, dtype) -> CapturedRun;
# raises ConfigError when the directory is not a finished training run.
RunLoader = Callable[[Path, "int | None", str], CapturedRun]


RUNTIME_HELP = ("execution runtime the costs assume: eager (framework eager mode: per-op host cost, overlapped "
                "with the GPU), graph (CUDA graphs / torch.compile reduce-overhead: no host cost), fused (a serving "
                "engine: graph replay, fused epilogues, FlashAttention); docs/simulator.md, 'Runtimes'")


def add_runtime_flag(p: argparse.ArgumentParser, *, default: str | None = "eager", help_suffix: str = "") -> None:
    """``--runtime`` (and its former name ``--profile``) on a command that prices ops."""
    from .cost import RUNTIMES

    p.add_argument("--runtime", "--profile", dest="runtime", choices=RUNTIMES, default=default,
                   help=RUNTIME_HELP + (f" (default {default})" if default else "") + help_suffix)


def add_simulate_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``simulate`` subcommand's arguments; the caller sets ``func`` (see ``run_simulate``)."""
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
    add_runtime_flag(p)
    p.add_argument("--recipe", help="training recipe for --phase train (default sr-ste; a run directory: its own)")
    p.add_argument("--steps", type=int, help=f"training steps for --phase train (default {DEFAULT_TRAIN_STEPS}; "
                                             "a run directory: its own when given in steps)")
    p.add_argument("--per-block", action="store_true", help="one row per block instead of merged repeats")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--out", metavar="FILE", help="write the output here instead of stdout")
    return p


def _parse_gemm(text: str) -> tuple[int, int, int]:
    from .workloads import MAX_DIM

    parts = text.split(",")
    try:
        m, n, k = (int(x) for x in parts)
    except ValueError:
        raise ConfigError(f"--gemm {text!r}: expected three integers M,N,K (e.g. 1024,4096,4096)") from None
    if not all(1 <= v <= MAX_DIM for v in (m, n, k)):
        raise ConfigError(f"--gemm {text!r}: M, N and K must be integers in [1, {MAX_DIM}]")
    return m, n, k


def _check_flags(args) -> None:
    """Flags that would be silently ignored in this combination are errors instead."""
    from .workloads import MAX_DIM

    for flag in ("batch", "steps", "seq_len"):
        value = getattr(args, flag)
        if value is not None and not 1 <= value <= MAX_DIM:
            raise ConfigError(f"--{flag.replace('_', '-')} must be in [1, {MAX_DIM}], got {value}")
    if args.phase != "train":
        for flag in ("recipe", "steps"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag} applies to --phase train only (this is --phase {args.phase})")
    if args.gemm:
        for flag in ("qkv_pattern", "seq_len"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')} does not apply to --gemm (one weight GEMM: "
                                  "its pattern is --pattern, its rows M)")
        if args.batch is not None or args.per_block:
            raise ConfigError("--batch/--per-block do not apply to --gemm (M,N,K gives the rows)")


def _patterns(args) -> list[NM]:
    return [NM.parse(p) for p in (args.pattern or ["dense"])]


def _capture_run(run_dir: Path, args, load_run: RunLoader | None) -> CapturedRun:
    """Capture a finished training run (patterns from its weights) through ``load_run``."""
    if load_run is None:
        raise ConfigError(f"--model {run_dir}: this simulate command cannot load training runs; give a built-in "
                          f"model name")
    if args.pattern or args.qkv_pattern:
        raise ConfigError(f"--pattern/--qkv-pattern cannot be used with a run directory ({run_dir}): "
                          "its N:M patterns are read from the trained weights")
    if args.phase in ("prefill", "decode"):
        raise ConfigError(f"a captured run is simulated as a forward pass or a training run (--phase forward|train), "
                          f"not {args.phase}")
    return load_run(run_dir, args.batch or (None if args.phase == "train" else 1), args.dtype)


def _jobs(args, load_run: RunLoader | None) -> list[tuple]:
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
        run = _capture_run(path, args, load_run)
        if not train:
            return [(run.workload if args.per_block else merge_repeats(run.workload), None, 0)]
        if args.recipe:
            raise ConfigError(f"--recipe cannot be used with a run directory: it was trained with {run.recipe.name}")
        steps = args.steps or run.steps
        if not steps:
            raise ConfigError(f"{path}: the run is defined in epochs; give --steps")
        return [(run.workload, run.recipe, steps)]
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
            from ..sparsity.schedules import RecipeConfig

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


def run_simulate(args: argparse.Namespace, *, load_run: RunLoader | None = None) -> int:
    """Run ``pgf-sim simulate``; ``load_run`` captures a run directory given as ``--model``."""
    from .hardware import load_hardware
    from .report_table import rows_to_csv, to_json
    from .simulate import ROW_COLUMNS, format_summary, simulate

    _check_flags(args)
    hws = [load_hardware(h) for h in args.hw]
    jobs = _jobs(args, load_run)
    if args.phase == "train":
        text = _train(args, jobs, hws)
    else:
        results = [simulate(wl, hw, runtime=args.runtime) for wl, _, _ in jobs for hw in hws]
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
        from ..core.files import atomic_write

        atomic_write(args.out, text if text.endswith("\n") else text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0
