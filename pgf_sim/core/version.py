"""The installed package's version, read from its metadata (pyproject.toml is the one source)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("pgf_sim")
except PackageNotFoundError:  # a source tree on sys.path that was never pip-installed
    VERSION = "0+unknown"
