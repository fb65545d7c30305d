"""Writing output files so that nothing is lost: atomically, with errors a user can act on.

Every report, export and checkpoint is written to a temporary file in the target's own
directory, flushed to disk, and renamed over the target (``os.replace``, atomic on POSIX).
A crash or a full disk mid-write leaves the previous file as it was, never a truncated one.
A failed write says which path and why ("disk full", "directory ... does not exist") in one
line instead of a traceback.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import PgfSimError

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class FileWriteError(PgfSimError):
    """An output file could not be written; the previous file at that path is unchanged."""


def write_error(exc: OSError, path: str | Path) -> FileWriteError:
    """A one-line error for ``exc`` raised while writing ``path``."""
    path = Path(path)
    if exc.errno in _NO_SPACE:
        try:
            free = f"; {shutil.disk_usage(path.parent).free} bytes free there"
        except OSError:
            free = ""
        return FileWriteError(f"disk full: cannot write {path}{free}; any previous {path.name} is unchanged")
    reason = exc.strerror or str(exc)
    return FileWriteError(f"cannot write {path}: {reason}")


def check_output_dir(path: str | Path) -> Path:
    """``path``'s directory must exist (outputs never create a misspelt directory tree)."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise FileWriteError(f"cannot write {path}: directory {parent} {what}")
    if path.is_dir():
        raise FileWriteError(f"cannot write {path}: it is a directory; give a file name")
    return path


def refuse_overwrite(path: str | Path, *, force: bool, flag: str = "--force") -> None:
    """An existing ``path`` is kept unless the user said ``flag``."""
    path = Path(path)
    if path.exists() and not force:
        raise FileWriteError(f"{path} already exists; not overwriting it (add {flag} to replace it)")


class _Recorder:
    """File wrapper that remembers the OSError of a failed write: writers such as
    ``torch.save`` report a short write as their own RuntimeError ("unexpected pos ...")."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self._fh.flush()

    def __getattr__(self, name: str):
        return getattr(self._fh, name)


def atomic_write(path: str | Path, content: bytes | str | Callable[[BinaryIO], None], *,
                 make_parents: bool = False) -> Path:
    """Write ``content`` (bytes, text as UTF-8, or a function writing to a binary file) to
    ``path`` atomically; see the module docstring. ``make_parents``: create missing
    directories (run directories), otherwise a missing directory is an error."""
    path = Path(path)
    if make_parents:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(exc, path) from None
    check_output_dir(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(exc, path) from None
    recorder = None
    try:
        with os.fdopen(fd, "wb") as fh:
            recorder = _Recorder(fh)
            if callable(content):
                content(recorder)
            else:
                recorder.write(content.encode("utf-8") if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        if recorder is not None and recorder.error is not None:
            raise write_error(recorder.error, path) from None
        raise
    return path
