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
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import PgfSimError

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


MAX_INPUT_BYTES = 64 * 2**20  # a config, hardware, measurement or run-config file; far above any real one


class FileReadError(PgfSimError):
    """An input file is not a regular file, too large, or unreadable."""


def read_limited(path: str | Path, what: str, *, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (``what`` names it in errors), at most ``limit``.

    A device (``/dev/zero``), FIFO or directory is refused before reading, so an input can
    neither hang nor fill memory; the size is checked on the open file, not on its name."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise FileReadError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileReadError(f"{path}: {what} must be a regular file, not {_kind(st.st_mode)}")
    with os.fdopen(fd, "rb") as fh:
        if st.st_size > limit:
            raise FileReadError(f"{path}: {what} is {st.st_size} bytes, over the {limit} byte limit")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FileReadError(f"{path}: {what} is over the {limit} byte limit")
    return data


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "a special file"


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
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise write_error(exc, path) from None
    if stat.S_ISDIR(st.st_mode):
        raise FileWriteError(f"cannot write {path}: it is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        # replacing a device, FIFO or symbolic link with a regular file is never what was meant
        # (as root this once replaced /dev/full); the target must be a plain file or absent
        raise FileWriteError(f"cannot write {path}: it is {_kind(st.st_mode)}, not a regular file; "
                             "not replacing it (give a regular file's path)")
    return path


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


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
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 -> what open() would give
            os.fsync(fh.fileno())
        check_output_dir(path)  # still not a device, FIFO or link that appeared meanwhile
        os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(exc, path) from None
    except FileWriteError:
        Path(tmp).unlink(missing_ok=True)
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        if recorder is not None and recorder.error is not None:
            raise write_error(recorder.error, path) from None
        raise
    return path
