"""Resolve a user's ``module:function`` factory named in an experiment YAML (no torch).

Importing the module a user names in their own config is the documented purpose of
``model.factory`` / ``data.factory``: the code is the user's, the YAML only names it. Nothing
from the config text is evaluated: the path is split at ``:``, the module is imported with
``importlib.import_module`` and the attribute chain is read with ``getattr``. The trust
boundary (``pgf_sim.core.trust``, docs/security.md) comes first: the standard library is
refused by name before any import, and the callable must be a declared factory.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any, Callable

from .errors import ConfigError
from .trust import check_declared, check_module_name

_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", re.ASCII)


def check_factory_path(path: Any, field: str) -> tuple[str, str]:
    """(module, attribute path) of ``path``, refused by its text alone (nothing imported)."""
    if not isinstance(path, str) or len(path) > 300 or not _PATH.fullmatch(path):
        shown = repr(path)[:120] if isinstance(path, str) else f"{type(path).__name__} {str(path)[:60]!r}"
        raise ConfigError(f"{field}: {shown} is not an import path; expected 'package.module:function'")
    module_name, _, attr_path = path.partition(":")
    check_module_name(module_name, field, path)
    if any(part.startswith("__") for part in attr_path.split(".")):
        raise ConfigError(f"{field}: {path!r} names a private attribute; a factory is a plain function")
    return module_name, attr_path


def resolve_factory(path: str, field: str) -> Callable[..., Any]:
    """The declared factory at ``path`` (``package.module:function`` or ``module:Class.method``).

    ``field`` names the config field for the error (``model.factory``). The current directory
    is searched after ``sys.path``, so ``pgf-sim train exp.yaml`` finds a module beside it.
    """
    module_name, attr_path = check_factory_path(path, field)
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{field}: cannot import module {module_name!r} of {path!r} ({exc}); "
                          "put it on PYTHONPATH or in the current directory") from None
    except Exception as exc:  # the user's module failed while importing: say which and why, in one line
        raise ConfigError(f"{field}: importing module {module_name!r} of {path!r} raised "
                          f"{type(exc).__name__}: {str(exc)[:200]}") from None
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{field}: module {module_name!r} has no attribute {attr_path!r} (from {path!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{field}: {path!r} is a {type(obj).__name__}, not a callable factory")
    check_declared(path, module_name, obj, field)
    return obj
