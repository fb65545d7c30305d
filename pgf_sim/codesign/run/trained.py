"""Trained runs as simulator workloads: load a finished run directory and capture its real masks.

This is the one place where a training run meets the simulator (``pgf_sim.sim`` never imports
``pgf_sim.train``): the sweep executors, the views (DSE on trained models), the mixed
assignment and ``pgf-sim simulate --model RUN_DIR`` all capture runs through here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.errors import ConfigError


def capture_run(run_dir: str | Path, *, batch: int | None = 1, dtype: str = "fp16",
                name: str | None = None, cfg: Any = None) -> tuple[Any, Any]:
    """(Workload, ExperimentConfig) of the finished run in ``run_dir``: the finalised model traced
    at ``batch`` inputs (None: the run's training batch size), patterns read from its weights;
    the workload is called ``name`` (default: the experiment's name). ``cfg``: the run's
    experiment when the caller holds it (a sweep, from the user's YAML); else the run's
    ``config.json`` is read at the trust boundary (``load_trained``)."""
    from ...sim.capture import capture
    from ...train.trainer import example_input, load_trained

    model, cfg = load_trained(Path(run_dir), cfg)
    rows = cfg.schedule.batch_size if batch is None else batch
    return capture(model, (example_input(cfg, rows),), dtype=dtype, name=name or cfg.name), cfg


def load_run_for_simulation(run_dir: Path, batch: int | None, dtype: str):
    """The ``RunLoader`` of ``pgf-sim simulate --model RUN_DIR`` (see ``pgf_sim.sim.cli``)."""
    from ...sim.cli import CapturedRun
    from ...train.trainer import CONFIG_NAME

    if not (run_dir / CONFIG_NAME).is_file():
        raise ConfigError(f"{run_dir} is not a training run directory (no {CONFIG_NAME}); --model takes a built-in "
                          f"model name or the directory of a run (pgf-sim train ...)")
    workload, cfg = capture_run(run_dir, batch=batch, dtype=dtype)
    return CapturedRun(workload, cfg.recipe, cfg.schedule.steps)
