"""Write the README's account of the default run from its result database, so it cannot drift.

    pgf-sim run                                        # the default sweep -> pgf_results.sqlite
    python benchmarks/readme_answer.py [--db pgf_results.sqlite] > answer.md

Prints Markdown: per cost view of the deployment proxy (one per runtime the sweep priced), the
latency front of every target (pattern, recipe, validation metric, latency) and the 2:4 vs
dense latency ratio; then the picks of `pgf-sim run` (the default budget, fastest per target).
Every number comes from the database; nothing here is typed in by hand.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def _si(v: float, unit: str) -> str:
    from pgf_sim.sim.report_table import si

    return si(v, unit)


def answer(db: Path) -> str:
    from pgf_sim.codesign.decide.pareto import fronts
    from pgf_sim.codesign.query.views import PickLimits, cost_models, load_table, make_picks

    views = [c for c in cost_models(db, None) if c.name == "deploy"] or cost_models(db, None)
    out = []
    for cost in views:
        table = load_table(db, None, cost)
        m = table.metric
        out += [f"**{cost.label.removeprefix('cost model: ')}**", "",
                "| target | latency front, cheapest first (recipe pattern, validation " + m.name +
                ", latency) | 2:4 speedup over dense (latency) |", "|---|---|---|"]
        fr = fronts(table, ("latency_s",), fits_only=True)
        for hw in table.hardware_names():
            front = [table[i] for i in fr[(hw, "latency_s")].indices] if (hw, "latency_s") in fr else []
            cells = "; ".join(f"{c.label} {m.fmt(c.accuracy_mean, c.accuracy_std if c.n_seeds > 1 else None)}, "
                              f"{_si(c.latency_s, 's')}"
                              for c in sorted(front, key=lambda c: c.latency_s))
            rows = list(table.where(hardware=hw))
            dense = [c.latency_s for c in rows if c.pattern_text == "dense"]
            two_four = [c.latency_s for c in rows if c.pattern_text == "2:4"]
            ratio = (f"{min(dense) / min(two_four):.2f}x" if dense and two_four and min(two_four) > 0
                     else "-")
            out.append(f"| `{hw}` | {cells} | {ratio} |")
        picks, errors = make_picks(table, None, PickLimits(max_drop="auto"), objective="latency_s", cost=cost)
        if picks:
            floor = picks[0].constraints.get("metric_limit")
            sense = ">=" if m.higher_is_better else "<="
            out += ["", f"Picks (fastest with mean validation {m.name} {sense} "
                        f"{m.fmt(floor) if floor is not None and not math.isnan(floor) else '-'}, the default budget): " +
                    "; ".join(f"`{p.hardware}` {p.best.label}" + (f" (runner-up {p.runner_up.label})" if p.runner_up else "")
                              for p in picks) + "."]
        out += [f"- {e}" for e in errors] + [""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", type=Path, default=Path("pgf_results.sqlite"))
    args = p.parse_args(argv)
    if not args.db.is_file():
        print(f"{args.db}: no such result database (run `pgf-sim run` first)", file=sys.stderr)
        return 2
    print(answer(args.db))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
