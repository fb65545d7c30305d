"""report: the co-design report, one self-contained HTML page (plotly inline, works offline).

Questions it answers: what does the page show first (the answer per target and its margin to
the quality budget), how are the Pareto figures, per-layer breakdowns, training curves and the
seed-study section drawn, and how the page is exported (figure files, a PNG screenshot).
May import: ``decide``, ``run``, ``explore`` (it does not import explore today).

- ``report.py``: ``ReportData``, ``render_html``, ``write_report``, the answer tables
- ``report_figures.py``: the shared drawing conventions and units; layer figures
- ``report_pareto.py``: the Pareto figure per target (and memory-footprint marks)
- ``report_curves.py``: training curves and gradient noise from the store, mean over seeds
- ``report_study.py``: the seed-study section
- ``report_png.py``: headless Chromium, the page as a PNG
"""
