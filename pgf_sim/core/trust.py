"""The trust boundary for code a config can name: which factories may run (no torch).

A config names the user's own model and data by import path (``model.factory:
"my_pkg.models:build"``). That path is the only way a config can make pgf-sim run code, so
it is guarded (docs/security.md):

1. A factory is a function that says it is one: decorated with ``@pgf_sim.factory``, listed
   as an entry point in the ``pgf_sim.factories`` group of an installed package, or defined
   in a module the user names on the command line (``--trust-module my_pkg``).
2. The Python standard library and builtins (``os:system``, ``builtins:eval``,
   ``shutil:rmtree``, ``subprocess:getoutput`` ...) are refused by name, before any import.
3. A run directory's ``config.json`` or a database row may have arrived from elsewhere: a
   factory named there is never imported unless the user passes ``--trust``
   (``check_stored``); built-in models need no trust.

The command line sets the policy for one command (``policy``); spawned sweep workers inherit
the trusted modules through ``PGF_SIM_TRUST_MODULES`` in their environment.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator, TypeVar

from .errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__pgf_sim_factory__"
ENV_MODULES = "PGF_SIM_TRUST_MODULES"  # comma-separated, set by the CLI for its worker processes
ENTRY_POINT_GROUP = "pgf_sim.factories"
# Never factories, even when named trusted: the standard library, builtins, and the tools
# most often used to run or fetch code (refused by name, nothing is imported).
_NEVER = frozenset(sys.stdlib_module_names) | {"builtins", "__main__", "pip", "setuptools", "pkg_resources"}

_REGISTERED: dict[str, Callable[..., Any]] = {}  # import path -> factory (decorated, this process)
_trust_stored = False
_trusted_modules: tuple[str, ...] = ()


class UntrustedError(ConfigError):
    """A config named code that is not a declared factory, or came from a run directory or
    database that the user has not said they trust."""


def factory(fn: F) -> F:
    """Mark ``fn`` as a model or data factory that a config may name by import path
    (``module:function``). A second factory under the same path is an error."""
    path = f"{fn.__module__}:{fn.__qualname__}"
    if path in _REGISTERED and _REGISTERED[path] is not fn:
        raise ValueError(f"factory {path!r} is already registered")
    _REGISTERED[path] = fn
    setattr(fn, _MARK, True)
    return fn


def registered_factories() -> list[str]:
    """Import paths of the factories declared so far (decorated in imported modules, or entry points)."""
    return sorted(set(_REGISTERED) | set(_entry_points()))


def _entry_points() -> dict[str, str]:
    """value -> name of each ``pgf_sim.factories`` entry point (package metadata only: no import)."""
    from importlib.metadata import entry_points

    return {ep.value.replace(" ", ""): ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


def trusted_modules() -> tuple[str, ...]:
    env = tuple(m for m in os.environ.get(ENV_MODULES, "").split(",") if m)
    return tuple(dict.fromkeys(_trusted_modules + env))


def trusts_stored() -> bool:
    return _trust_stored


@contextlib.contextmanager
def policy(*, trust_stored: bool = False, modules: tuple[str, ...] | list[str] = ()) -> Iterator[None]:
    """The trust policy of one command: ``--trust`` (stored configs may name factories) and
    ``--trust-module`` (every callable of these modules is a factory). Restored on exit."""
    global _trust_stored, _trusted_modules
    for name in modules:
        check_module_name(name, "--trust-module")
    before = (_trust_stored, _trusted_modules, os.environ.get(ENV_MODULES))
    _trust_stored, _trusted_modules = bool(trust_stored), tuple(modules)
    if modules:
        os.environ[ENV_MODULES] = ",".join(trusted_modules())
    try:
        yield
    finally:
        _trust_stored, _trusted_modules = before[0], before[1]
        if before[2] is None:
            os.environ.pop(ENV_MODULES, None)
        else:
            os.environ[ENV_MODULES] = before[2]


def check_module_name(module: str, field: str, path: str | None = None) -> None:
    """Refuse, by name and before any import, a module that is never a factory's home."""
    top = module.split(".")[0]
    if top in _NEVER:
        what = ("part of the Python standard library" if top in sys.stdlib_module_names or top == "builtins"
                else "an installer, not your code")
        named = f" of {path!r}" if path else ""
        raise UntrustedError(f"{field}: module {module!r}{named} is {what}; a factory must be your own function, "
                             "nothing was imported (see docs/security.md)")


def _in_trusted_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in trusted_modules())


def check_declared(path: str, module: str, obj: Any, field: str) -> None:
    """``obj`` (imported from ``path``) must be a declared factory; see the module docstring."""
    if getattr(obj, _MARK, False) is True or path in _entry_points() or _in_trusted_module(module):
        return
    raise UntrustedError(f"{field}: {path!r} is not a declared factory; decorate it with @pgf_sim.factory, "
                         f"list it under the {ENTRY_POINT_GROUP!r} entry points, or pass --trust-module "
                         f"{module.split('.')[0]} (see docs/security.md)")


def stored_factories(config: Any) -> list[tuple[str, Any]]:
    """(field, import path) of every factory a stored experiment config names."""
    if not isinstance(config, dict):
        return []
    out = []
    for section in ("model", "data"):
        sec = config.get(section)
        if isinstance(sec, dict) and sec.get("factory") is not None:
            out.append((f"{section}.factory", sec["factory"]))
    return out


def check_stored(config: Any, where: str) -> None:
    """A config read from a run directory or a database (``where``) may name a factory only
    when the user passed ``--trust``; nothing is imported before this check."""
    named = stored_factories(config)
    if named and not _trust_stored:
        field, path = named[0]
        raise UntrustedError(f"{where}: {field} {str(path)[:120]!r} would run code named by a file that may "
                             "come from elsewhere; nothing was run. If you trust it, rerun with --trust")
