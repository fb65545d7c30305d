"""``pgf-sim study``: the seed-study analysis of a sweep (``study.py``, docs/study.md)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "study", help="seed statistics of a sweep: mean ± std, Welch intervals vs SR-STE, iso-FLOPs, gradient noise",
        description="Analyse a finished (or partly finished) seed sweep from its result database: per recipe and "
                    "pattern mean ± std over seeds, the difference to the reference recipe with Welch's 95%% "
                    "interval and a Holm-corrected verdict, training FLOPs to reach the reference's final quality, "
                    "and the gradient-noise diagnostics. Prints the tables; --out also writes them with PNG figures.")
    p.add_argument("db", type=Path, help="result database of the sweep (e.g. study.sqlite)")
    p.add_argument("--sweep", help="sweep name (default: the database's only sweep)")
    p.add_argument("--reference", default="sr-ste", help="recipe label every other is compared with (default: sr-ste)")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate for the Holm verdicts (default 0.05)")
    p.add_argument("--patterns", help="only these patterns (and dense), e.g. 1:16,1:32: the Holm family is then the "
                                       "comparisons at them (default: every pattern of the sweep)")
    p.add_argument("--out", type=Path, help="folder for study_tables.md and the figures (PNG)")
    p.set_defaults(func=_cmd_study)


def _cmd_study(args: argparse.Namespace) -> int:
    from ..core.errors import PgfSimError
    from ..store import ResultStore
    from .study import analyse, markdown, write

    if not 0.0 < args.alpha < 1.0:
        raise PgfSimError(f"--alpha must be in (0, 1), got {args.alpha}")
    from ..core import NM

    patterns = None
    if args.patterns:
        patterns = [NM.parse(t.strip()) for t in args.patterns.split(",") if t.strip()]
    study = analyse(ResultStore(args.db, create=False, read_only=True), args.sweep, reference=args.reference, alpha=args.alpha,
                    patterns=patterns)
    print(markdown(study))
    if args.out is not None:
        for path in write(study, args.out):
            print(f"wrote {path}")
    return 0
