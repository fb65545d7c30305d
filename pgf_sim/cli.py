"""The ``pgf-sim`` command line. Each part of the package adds its own subcommands.

Subcommand modules (``pgf_sim.<part>.cli``) expose ``add_commands(subparsers)`` and must stay
light at import: heavy modules (torch, plotly) are imported inside the command functions.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from .core import trust
from .core.bounds import check_flags
from .core.errors import PgfSimError, printable

# Order is the order of the help text. ``simulate`` (pgf_sim.sim.cli) is registered by
# pgf_sim.codesign.cli.cli, which gives it the loader of training runs.
_COMMAND_MODULES = ("pgf_sim.train.cli", "pgf_sim.sim.hw_cli", "pgf_sim.codesign.cli.cli",
                    "pgf_sim.codesign.cli.results_cli", "pgf_sim.codesign.cli.study_cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgf-sim",
        description="N:M sparse training (progressive gradient flow) + N:M accelerator cost simulation.",
    )
    from .core.version import VERSION

    parser.add_argument("--version", action="version", version=f"pgf-sim {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part is not built (yet); its commands are simply absent
                continue
            raise
        module.add_commands(sub)
    for command in sub.choices.values():
        _add_trust_flags(command)
    return parser


def _add_trust_flags(parser: argparse.ArgumentParser) -> None:
    """``--trust`` and ``--trust-module`` on every command (and nested command): the trust
    boundary of ``pgf_sim.core.trust`` (docs/security.md)."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    for action in nested:
        for child in action.choices.values():
            _add_trust_flags(child)
    if nested:
        return
    group = parser.add_argument_group("trust (docs/security.md)")
    group.add_argument("--trust", action="store_true",
                       help="trust the run directories and databases given: a model/data factory they name may run")
    group.add_argument("--trust-module", action="append", default=[], metavar="MODULE",
                       help="every function of MODULE (your own package) may be named as a factory; repeatable")


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args``, except that a command taking ``KEY=VALUE`` overrides (``train``,
    ``sweep``) accepts them anywhere on the line, also after its flags
    (``pgf-sim train x.yaml --no-progress seed=1``), in the order given. argparse alone stops
    filling a positional list at the first flag, and ``parse_intermixed_args`` refuses subcommands."""
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list):
        keys = [t for t in extra if not t.startswith("-") and "=" in t and t.index("=") > 0]
        args.overrides += keys
        extra = [t for t in extra if t not in keys]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    previous = _sigterm_as_interrupt()
    try:
        check_flags(args)
        with trust.policy(trust_stored=getattr(args, "trust", False), modules=getattr(args, "trust_module", [])):
            result = args.func(args)
    except PgfSimError as exc:
        print(f"pgf-sim: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not the input: a full disk, a missing or read-only path
        import errno

        where = f"{exc.filename}: " if exc.filename is not None else ""
        reason = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        print(f"pgf-sim: error: {printable(where + reason)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pgf-sim: interrupted; saved progress is kept and the command resumes from it", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(result or 0)


def _sigterm_as_interrupt():
    """SIGTERM (``kill``, a scheduler's time limit, ``docker stop``) is handled like Ctrl-C: the
    sweep checkpoints, marks its runs interrupted and exits 130 with a message, instead of
    dying at once with runs left 'running'. Returns the previous handler (None: not the main thread)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        return None


if __name__ == "__main__":
    sys.exit(main())
