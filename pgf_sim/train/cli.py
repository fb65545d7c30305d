"""``pgf-sim train EXPERIMENT.yaml [key.sub=value ...]`` (torch is imported inside the command).

Under ``torchrun --nproc_per_node N -m pgf_sim train ...`` the same command runs data-parallel.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train one N:M sparsity experiment (training/<experiment>.yaml)",
        description="Train the experiment defined in a YAML file; rerunning the same command resumes "
                    "from the last checkpoint. Overrides: key.sub=value, e.g. recipe.name=mdgf recipe.pattern=1:8.",
    )
    p.add_argument("experiment", type=Path, help="experiment YAML, e.g. training/digits_vit.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. schedule.epochs=5")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="overrides the experiment's device")
    p.add_argument("--workdir", type=Path, default=Path("runs"), help="run directories go here (default: runs)")
    p.add_argument("--db", type=Path, default=Path("pgf_results.sqlite"), help="result database (default: pgf_results.sqlite)")
    p.add_argument("--run-id", help="run name (default: derived from name, recipe, pattern, seed and a config hash)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from pgf_sim.store import ResultStore
    from pgf_sim.train.experiment import load_experiment

    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    cfg = load_experiment(args.experiment, overrides)  # validate before importing torch

    from pgf_sim.train import distributed
    from pgf_sim.train.trainer import train

    store = ResultStore(args.db)
    ctx = distributed.context_from_env()
    try:
        summary = train(cfg, store=store, run_id=args.run_id, workdir=args.workdir, progress=not args.no_progress)
    finally:
        distributed.shutdown(ctx)
    if ctx.is_main:
        sparse = sum(1 for p, _, _ in summary.layer_info.values() if not p.is_dense)
        flops = sum(summary.train_flops.values())
        recipe = "dense" if not cfg.recipe.spec.sparse else f"{cfg.recipe.name} {cfg.recipe.pattern}, {sparse} sparse layers"
        print(f"run {summary.run_id}: final test accuracy {summary.final_accuracy:.4f} "
              f"after {summary.final_step} steps ({recipe}, {flops:.3g} training FLOPs)")
        print(f"results: {args.db} (run_id {summary.run_id}); model: {summary.run_dir}")
    return 0
