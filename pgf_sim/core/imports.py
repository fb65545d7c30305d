"""Resolve a user's ``module:function`` factory named in an experiment YAML (no torch).

Importing the module a user names in their own config is the documented purpose of
``model.factory`` / ``data.factory``: the code is the user's, the YAML only names it. Nothing
from the config text is evaluated: the path is split at ``:``, the module is imported with
``importlib.import_module`` and the attribute chain is read with ``getattr``.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any, Callable

from .errors import ConfigError

_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def resolve_factory(path: str, field: str) -> Callable[..., Any]:
    """The callable at ``path`` (``package.module:function`` or ``module:Class.method``).

    ``field`` names the config field for the error (``model.factory``). The current directory
    is searched after ``sys.path``, so ``pgf-sim train exp.yaml`` finds a module beside it.
    """
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise ConfigError(f"{field}: {path!r} is not an import path; expected 'package.module:function'")
    module_name, _, attr_path = path.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{field}: cannot import module {module_name!r} of {path!r} ({exc}); "
                          "put it on PYTHONPATH or in the current directory") from None
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{field}: module {module_name!r} has no attribute {attr_path!r} (from {path!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{field}: {path!r} is a {type(obj).__name__}, not a callable factory")
    return obj
