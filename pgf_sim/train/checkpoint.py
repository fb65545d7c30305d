"""Checkpoint files: written atomically, read with ``weights_only=True``.

A checkpoint holds everything a resumed run needs to continue *bit-exactly* as if it had not
stopped: model, optimiser, LR scheduler, sparsity controller, RNG states and the number of
completed steps. The file is written to a temporary name in the same directory and renamed
over the old one, so a crash mid-write never leaves a truncated checkpoint: the previous one
stays valid.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from pgf_sim.core import PgfSimError

CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(PgfSimError):
    """A checkpoint file is unreadable or belongs to a different run."""


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file in ``path``'s directory, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, *, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, controller: Any, config: dict[str, Any]) -> None:
    atomic_save({
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "controller": controller.state_dict(),
        "rng": rng_state(),
        "config": config,
    }, path)


def load_checkpoint(path: Path, *, config: dict[str, Any] | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; if ``config`` is given it must equal the one saved with it."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if config is not None and state.get("config") != config:
        raise CheckpointError(
            f"checkpoint {path} was written by a different experiment config; "
            "use another --run-id (or --workdir) for the new config, or delete the old run directory"
        )
    return state
