"""``pgf-sim train EXPERIMENT.yaml [key.sub=value ...]`` and ``pgf-sim export RUN_DIR`` (torch is
imported inside the commands).

Under ``torchrun --nproc_per_node N -m pgf_sim train ...`` the same command runs data-parallel.
"""
from __future__ import annotations

import argparse
from pathlib import Path

EXPORT_NAME = "model.nm.safetensors"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train one N:M sparsity experiment (training/<experiment>.yaml)",
        description="Train the experiment defined in a YAML file; rerunning the same command resumes "
                    "from the last checkpoint. Overrides: key.sub=value, e.g. recipe.name=mdgf recipe.pattern=1:8, "
                    "anywhere on the line (also after the flags).",
    )
    p.add_argument("experiment", type=Path, help="experiment YAML, e.g. training/digits_vit.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. schedule.epochs=5")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="overrides the experiment's device")
    p.add_argument("--workdir", type=Path, default=Path("runs"), help="run directories go here (default: runs)")
    p.add_argument("--db", type=Path, default=Path("pgf_results.sqlite"), help="result database (default: pgf_results.sqlite)")
    p.add_argument("--run-id", help="run name (default: derived from name, recipe, pattern, seed and a config hash)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "export", help="compressed N:M export (safetensors) of a finished run, verified bit-exact",
        description="Write the finished run's model with every N:M weight stored as its kept values + "
                    "ceil(log2 M)-bit in-group indices (format of pgf_sim.train.export), print per-layer "
                    "sizes, and reload the file to check it rebuilds the model bit for bit. "
                    "With --check FILE, only verify an existing export against the run.")
    p.add_argument("run_dir", type=Path, help="a finished run's directory, e.g. runs/<run_id>")
    p.add_argument("--out", type=Path, help=f"output file (default: RUN_DIR/{EXPORT_NAME})")
    p.add_argument("--check", type=Path, metavar="FILE", help="verify FILE against RUN_DIR instead of exporting")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_export)

    p = subparsers.add_parser(
        "generate", help="sample text from a finished character-level language-model run",
        description="Load RUN_DIR's final (N:M-masked) model and continue --prompt by --chars characters, each "
                    "drawn from the model's next-character distribution at --temperature. Reproducible with --seed.")
    p.add_argument("run_dir", type=Path, help="a finished text run's directory, e.g. runs/<run_id>")
    p.add_argument("--chars", type=int, default=300, help="characters to sample (default 300)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (default 1.0; lower: safer)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.set_defaults(func=_generate)


def _train(args: argparse.Namespace) -> int:
    from pgf_sim.core.runlock import check_run_id
    from pgf_sim.store import ResultStore
    from pgf_sim.train.experiment import load_experiment

    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    cfg = load_experiment(args.experiment, overrides)  # validate before importing torch
    run_id = check_run_id(args.run_id) if args.run_id is not None else cfg.default_run_id()

    from pgf_sim.train import distributed
    from pgf_sim.train.models import check_trainable
    from pgf_sim.train.trainer import train

    check_trainable(cfg, source=str(args.experiment))
    store = ResultStore(args.db)
    ctx = distributed.context_from_env()
    # train() holds the run lock: a second `train` of the same run waits, then finds it finished
    try:
        summary = train(cfg, store=store, run_id=run_id, workdir=args.workdir, progress=not args.no_progress)
    finally:
        distributed.shutdown(ctx)
    if ctx.is_main:
        sparse = sum(1 for p, _, _ in summary.layer_info.values() if not p.is_dense)
        flops = sum(summary.train_flops.values())
        recipe = "dense" if not cfg.recipe.spec.sparse else f"{cfg.recipe.name} {cfg.recipe.pattern}, {sparse} sparse layers"
        m = cfg.task_metric
        test = store.run_metrics(summary.run_id, f"test_{m.name}")
        test_text = f", test {m.fmt(test[-1][-1])}" if test else ""
        print(f"run {summary.run_id}: {m.label} validation {m.fmt(summary.final_accuracy)}{test_text} "
              f"after {summary.final_step} steps ({recipe}, {flops:.3g} training FLOPs)")
        print(f"results: {args.db} (run_id {summary.run_id}); model: {summary.run_dir}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from pgf_sim.train.generate import generate

    print(generate(args.run_dir, chars=args.chars, temperature=args.temperature, seed=args.seed, prompt=args.prompt))
    return 0


def _export(args: argparse.Namespace) -> int:
    from pgf_sim.core.errors import PgfSimError
    from pgf_sim.train.data import data_spec
    from pgf_sim.train.export import export_compressed, mismatches, read_compressed, trained_patterns
    from pgf_sim.train.models import build_model
    from pgf_sim.train.trainer import load_trained

    if args.check is not None and args.out is not None:
        raise PgfSimError("export: give --out FILE (write an export) or --check FILE (verify one), not both")
    if args.check is not None and not args.check.is_file():
        raise PgfSimError(f"export --check {args.check}: no such file")
    if args.out is not None:
        _check_export_out(args.out, args.run_dir, force=args.force)
    model, cfg = load_trained(args.run_dir)
    path = args.check or args.out or args.run_dir / EXPORT_NAME
    if args.check is None:
        report = export_compressed(model, path, trained_patterns(model, cfg.recipe))
        print(f"{'layer':<40} {'pattern':>8} {'shape':>14} {'compressed B':>13} {'dense B':>10} {'ratio':>7}")
        for layer in report.layers:
            shape = "x".join(map(str, layer.shape))
            print(f"{layer.key:<40} {str(layer.pattern):>8} {shape:>14} {layer.compressed_bytes:>13} "
                  f"{layer.dense_bytes:>10} {layer.compressed_bytes / layer.dense_bytes:>7.1%}")
        print(f"{'N:M weights':<40} {'':>8} {'':>14} {report.sparse_weight_bytes:>13} "
              f"{report.sparse_weight_dense_bytes:>10} {report.sparse_weight_bytes / max(report.sparse_weight_dense_bytes, 1):>7.1%}")
        print(f"{'total (all tensors)':<40} {'':>8} {'':>14} {report.compressed_bytes:>13} "
              f"{report.dense_bytes:>10} {report.ratio:>7.1%}")
    bad = mismatches(path, model, build_model(cfg.model, data_spec(cfg.data)))
    if bad:
        raise PgfSimError(f"{path} does not rebuild {args.run_dir} exactly: tensors {', '.join(bad)} differ")
    per_layer = f" + {len(cfg.recipe.layer_patterns)} per-layer targets" if cfg.recipe.layer_patterns else ""
    print(f"{path}: reloads bit-exactly ({len(read_compressed(path)[1])} N:M weights, {cfg.recipe.name} "
          f"{cfg.recipe.pattern}{per_layer}); file {path.stat().st_size} bytes")
    return 0


def _check_export_out(out: Path, run_dir: Path, *, force: bool) -> None:
    """``--out`` never replaces one of the run's own files, and another existing file only with ``--force``."""
    from pgf_sim.core.files import check_output_dir, refuse_overwrite
    from pgf_sim.core.errors import PgfSimError
    from pgf_sim.train.checkpoint import CHECKPOINT_NAME
    from pgf_sim.train.trainer import CONFIG_NAME, FINAL_MODEL_NAME

    check_output_dir(out)
    own = {(run_dir / name).resolve() for name in (FINAL_MODEL_NAME, CHECKPOINT_NAME, CONFIG_NAME)}
    if out.resolve() in own:
        raise PgfSimError(f"export --out {out} is one of the run's own files; it is never overwritten "
                          f"(the default output is {run_dir / EXPORT_NAME})")
    refuse_overwrite(out, force=force)
