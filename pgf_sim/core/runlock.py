"""One process at a time per training run: run ids as safe directory names, and a run lock.

A run lives in ``workdir/<run_id>/``. Two processes training the same run (two ``pgf-sim
train`` commands, two sweeps over one workdir) would both train it in full and race on its
checkpoint and metrics, so each holds ``workdir/.locks/<run_id>.lock`` (``fcntl.flock``,
advisory, exclusive) while it trains and simulates the run. The OS drops the lock when its
holder exits, even by SIGKILL, so a stale lock never blocks a resume. ``trainer.train()`` takes
it itself (so every caller does: the ``train`` command, sweep workers, ``mixed`` verification,
the Python API); a caller that already holds it (a sweep worker, which also simulates the run)
re-enters it in the same thread without blocking on itself.
"""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Callable, Iterator

from .errors import ConfigError

_HELD: dict[tuple[Path, int], int] = {}  # (lock path, thread id) -> depth, for re-entry

def check_run_id(run_id: str) -> str:
    """A run id names one directory inside the workdir: no path separator, no leading dot
    (``.``, ``..``, hidden names), no control characters, at most 200 characters."""
    if (not run_id or len(run_id) > 200 or run_id.startswith(".") or any(c in run_id for c in "/\\")
            or any(ord(c) < 32 for c in run_id)):
        raise ConfigError(f"run id {run_id!r} is not a plain directory name inside the workdir: no '/' or '\\', "
                          "no leading '.' (so not '..'), no control characters, 1 to 200 characters")
    return run_id


@contextlib.contextmanager
def run_lock(workdir: str | Path, run_id: str, *, wait: bool,
             on_wait: Callable[[Path], None] | None = None) -> Iterator[bool]:
    """Hold the exclusive lock of ``run_id``; yields whether it is held.

    ``wait=False``: yields False at once if another process holds it. ``wait=True``: calls
    ``on_wait(lock_path)`` (e.g. to say so), then blocks until the holder is done.
    """
    import fcntl

    lock_dir = Path(workdir) / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{check_run_id(run_id)}.lock"
    key = (path.resolve(), threading.get_ident())
    if key in _HELD:  # this thread holds it already: a nested take is free
        _HELD[key] += 1
        try:
            yield True
        finally:
            _HELD[key] -= 1
        return
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if on_wait is not None:
                on_wait(path)
            fcntl.flock(fh, fcntl.LOCK_EX)
        _HELD[key] = 1
        try:
            yield True
        finally:
            del _HELD[key]
            fcntl.flock(fh, fcntl.LOCK_UN)
