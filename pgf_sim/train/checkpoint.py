"""Checkpoint files: written atomically, read with ``weights_only=True``.

A checkpoint holds everything a resumed run needs to continue *bit-exactly* as if it had not
stopped: model, optimiser, LR scheduler, sparsity controller, RNG states and the number of
completed steps. The file is written to a temporary name in the same directory and renamed
over the old one, so a crash mid-write never leaves a truncated checkpoint: the previous one
stays valid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pgf_sim.core import PgfSimError
from pgf_sim.core.files import atomic_write

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
    """``torch.save`` to a temp file in ``path``'s directory, fsync, then rename over ``path``
    (``core.files.atomic_write``: a full disk is a one-line "disk full" error, the old file stays)."""
    atomic_write(path, lambda fh: torch.save(obj, fh), make_parents=True)


def safe_torch_load(path: Path, what: str, *, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with one-line errors naming ``path``.

    A file holding anything but tensors and plain containers (a corrupt file, or a malicious
    pickle whose objects would run code) is refused. PyTorch's own message for that case
    suggests ``weights_only=False``, which would execute the file's code, so it is not shown.
    """
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle protocol before refusing it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused to load this {what}: it holds objects other than tensors "
                              "(corrupt, or not written by pgf-sim); it is never unpickled with code execution. "
                              "Delete it (or retrain the run) if you did not expect this") from None
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such {what}") from None
    except (PermissionError, IsADirectoryError) as exc:
        raise CheckpointError(f"{path}: cannot read this {what}: {exc.strerror or exc}") from None
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, AttributeError, IndexError, TypeError) as exc:
        # a cut-short zip archive surfaces as OSError(EINVAL) or RuntimeError from torch's reader
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: not a readable {what} (corrupt or truncated: {reason[:160]})") from None


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
    state = safe_torch_load(path, "checkpoint", map_location=map_location)
    if not isinstance(state, dict) or not {"step", "model", "config"} <= set(state):
        raise CheckpointError(f"{path}: not a pgf-sim checkpoint (expected a mapping with step, model, config)")
    if config is not None and state.get("config") != config:
        raise CheckpointError(
            f"checkpoint {path} was written by a different experiment config; "
            "use another --run-id (or --workdir) for the new config, or delete the old run directory"
        )
    return state
