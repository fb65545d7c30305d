"""``pgf-sim study``: the seed-study analysis of a sweep (``study.py``, docs/study.md)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "study", help="seed statistics of a sweep: mean ± std, Welch intervals vs SR-STE, iso-FLOPs, gradient noise",
        description="Analyse a finished (or partly finished) seed sweep from its result database: per recipe and "
                    "pattern mean ± std over seeds, the difference to the reference recipe with Welch's 95% "
                    "interval and a Holm-corrected verdict, training FLOPs to reach the reference's final quality, "
                    "and the gradient-noise diagnostics. Prints the tables; --out also writes them with PNG figures.")
    p.add_argument("db", type=Path, help="result database of the sweep (e.g. study.sqlite)")
    p.add_argument("--sweep", action="append", default=[],
                   help="sweep name (default: the database's only sweep); repeatable: each sweep's tables, then one "
                        "table of every comparison across them (e.g. the widths of a width arm)")
    p.add_argument("--reference", default="sr-ste", help="recipe label every other is compared with (default: sr-ste)")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate for the Holm verdicts (default 0.05)")
    p.add_argument("--patterns", help="only these patterns (and dense), e.g. 1:16,1:32: the Holm family is then the "
                                       "comparisons at them (default: every pattern of the sweep)")
    p.add_argument("--fix", action="append", default=[], metavar="KEY=VALUE",
                   help="keep only the points of a swept parameter's value, e.g. schedule.lr=0.003 (the untuned "
                        "view: one learning rate for every recipe); repeatable")
    p.add_argument("--tune", metavar="KEY",
                   help="a swept parameter (e.g. schedule.lr) whose best value by mean validation quality is "
                        "picked per recipe and pattern (the tuned view); printed after the --fix view, which it "
                        "keeps beside it (--out writes it to OUT/tuned)")
    p.add_argument("--split", choices=("val", "test"),
                   help="the split whose final metric the tables compare (default: test with --tune, so the lr is "
                        "picked on validation and judged on data the pick never saw, for both views; val otherwise)")
    p.add_argument("--out", type=Path, help="folder for study_tables.md and the figures (PNG)")
    p.set_defaults(func=_cmd_study)


def _cmd_study(args: argparse.Namespace) -> int:
    from ...core.errors import PgfSimError
    from ...store import ResultStore
    from ..decide.study import across_figure, across_markdown, analyse, markdown, write, write_figures

    if not 0.0 < args.alpha < 1.0:
        raise PgfSimError(f"--alpha must be in (0, 1), got {args.alpha}")
    from ...core import NM

    patterns = None
    if args.patterns:
        patterns = [NM.parse(t.strip()) for t in args.patterns.split(",") if t.strip()]
    from ...core.config import safe_yaml

    fix = {}
    for item in args.fix:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PgfSimError(f"--fix {item!r} must look like KEY=VALUE, e.g. schedule.lr=0.003")
        fix[key.strip()] = safe_yaml(raw, f"--fix {item!r}")
    store = ResultStore(args.db, create=False, read_only=True)
    split = args.split or ("test" if args.tune is not None else "val")  # both views on one split: comparable
    sweeps = list(dict.fromkeys(args.sweep)) or [None]
    several = len(sweeps) > 1
    studies = []
    for sweep in sweeps:
        base = args.out if args.out is None or not several else args.out / sweep
        views = []
        if args.tune is None or fix:
            views.append((analyse(store, sweep, reference=args.reference, alpha=args.alpha, patterns=patterns,
                                  fix=fix, split=split), base))
        if args.tune is not None:
            views.append((analyse(store, sweep, reference=args.reference, alpha=args.alpha, patterns=patterns,
                                  fix=fix, tune=args.tune, split=split), None if base is None else base / "tuned"))
        if several:
            print(f"# Sweep {sweep}\n")
        for i, (study, out) in enumerate(views):
            if len(views) > 1:
                print(("## Untuned" if i == 0 else "## Tuned") + "\n")
            print(markdown(study))
            if out is not None:
                for path in write(study, out):
                    print(f"wrote {path}")
        studies += [study for study, _ in views]
    if several:
        text = across_markdown(studies)
        print(text)
        if args.out is not None:
            from ...core.files import atomic_write

            args.out.mkdir(parents=True, exist_ok=True)
            atomic_write(args.out / "across_sweeps.md", text)
            for path in [args.out / "across_sweeps.md", *write_figures([("across_sweeps", across_figure(studies))],
                                                                       args.out)]:
                print(f"wrote {path}")
    return 0
