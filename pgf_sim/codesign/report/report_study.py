"""The seed-study section of the co-design report: the analysis ``pgf-sim study`` prints
(``study.py``), shown in the HTML page of a sweep with several seeds per cell.

It opens with the verdicts against the reference recipe (which comparisons hold after Holm's
correction, which are undecided), then the tables (quality per cell, differences with
Welch intervals, iso-FLOPs, gradient noise by pattern and in full) and the four figures of ``study.figures``.
"""
from __future__ import annotations

import html
from typing import Any, Callable, Mapping, Sequence

from ..decide.study import (Study, caption, comparison_rows, figures, headings, iso_rows, noise_rows, noise_trend_rows,
                            quality_rows, verdicts)

SECTION_ID = "study"
#: With fewer seeds than this in its best-covered cell the section is folded: two seeds give an
#: interval, but one too wide to decide most comparisons (the embedded default sweep has 2).
FOLD_BELOW_SEEDS = 3


def _grouped(items: Sequence[str]) -> str:
    """["mdgf 1:16", "mdgf 1:32", "gmp 1:32"] -> "mdgf (1:16, 1:32), gmp (1:32)"; "none" for none."""
    by_label: dict[str, list[str]] = {}
    for item in items:
        label, _, pattern = item.rpartition(" ")
        by_label.setdefault(label, []).append(pattern)
    return ", ".join(f"{label} ({', '.join(pats)})" for label, pats in by_label.items()) or "none"


def study_section(study: Study, add_figure: Callable[[Any, str], str],
                  html_table: Callable[[Sequence[Mapping[str, Any]]], str]) -> list[str]:
    """HTML blocks of the section; ``add_figure(fig, name)`` embeds a plotly figure and returns its
    HTML, ``html_table(rows)`` renders a list of dicts (both from ``report.py``)."""
    e = html.escape
    head = headings(study)
    v = verdicts(study)
    n = len(study.comparisons)
    seeds = max((len(c.runs) for c in study.cells.values()), default=0)
    folded = seeds < FOLD_BELOW_SEEDS
    out = [f"<section id='{SECTION_ID}'><h2>Recipe comparison over seeds</h2>"]
    if n:
        out.append(f"<p>Against <b>{e(study.reference)}</b> at the same pattern, {n} comparisons, Holm-corrected "
                   f"(family-wise error {study.alpha:g}): "
                   f"<b>better</b>: {e(_grouped(v['better']))}; "
                   f"<b>worse</b>: {e(_grouped(v['worse']))}; "
                   f"{len(v['undecided'])} undecided (the seeds cannot tell them from {e(study.reference)}).</p>")
    else:
        out.append(f"<p class='empty'>No comparison with {e(study.reference)}: it needs at least 2 finished seeds "
                   f"in both cells of a pattern.</p>")
    if folded:
        out.append(f"<details><summary>Only {seeds} seeds per cell: intervals are wide. Click to show the "
                   f"tables and figures</summary>")
    out.append(f"<p class='note'>{e(caption(study).replace('`', ''))}</p>")
    figs = dict(figures(study))
    out += [f"<h3>{e(head['quality'])}</h3>", html_table(quality_rows(study)),
            add_figure(figs["quality"], "study_quality"),
            f"<h3>{e(head['difference'])}</h3>", html_table(comparison_rows(study)),
            add_figure(figs["difference"], "study_difference"),
            f"<h3>{e(head['iso'])}</h3>",
            "<p>The learning-rate schedule is set by each run's full length, so reaching the target earlier is a "
            "point on a longer run, not the result of a shorter one.</p>",
            html_table(iso_rows(study)), add_figure(figs["iso_flops"], "study_iso_flops")]
    noise = noise_rows(study)
    trend = noise_trend_rows(study)
    if trend:
        out += [f"<h3>{e(head['trend'])}</h3>", html_table(trend)]
    out += [f"<details><summary><b>{e(head['noise'])}</b> (click to show)</summary>",
            html_table(noise) if noise else "<p class='empty'>no gradient-noise diagnostics</p>",
            add_figure(figs["grad_noise"], "study_grad_noise") if noise else "", "</details>"]
    return out + (["</details>"] if folded else []) + ["</section>"]
