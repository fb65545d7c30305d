"""Co-design: train N:M recipes, cost the trained models on hardware, and decide which pattern and
recipe to train for which target (and which hardware suits the models).

The code lives in rooms, one job each, listed here lowest first: a room may import only the
rooms listed before it, never one after it (``tests/test_architecture.py`` checks it from the
imports, lazy ones included), and this folder holds nothing but this file and the rooms:

    decide/    which candidate wins, and why: Pareto fronts, the pick and its explanation, the
               task's quality metric and the limit on it, seed statistics and the seed study,
               the machine-readable records (``--format json|csv``)
    run/       producing the results: sweeps (grid, driver), executors (local processes, Ray),
               trained runs captured as simulator workloads, the deployment-scale proxy cost,
               a sweep's stored rows as candidates
    explore/   the other directions: hardware design-space exploration, per-layer mixed N:M
               assignment and its verification
    report/    the HTML report: the page, its figures, Pareto drawings, training curves, the
               seed-study section, PNG export
    query/     the result store read for the commands: the candidate table of a sweep, the
               picks, fronts as text, the report's data, DSE over trained runs
    cli/       the command line: ``run``, ``sweep``, ``simulate``, ``pick``, ``report``, ``dse``,
               ``mixed``, ``results`` and ``study``

Where to start: "why was this picked?" is ``decide/pick.py`` (``pick``, ``explain``); "what did a
sweep run?" is ``run/sweep.py``; "what does the report show?" is ``report/report.py``; "where do
the commands' numbers come from?" is ``query/views.py``.

The rooms' ``__init__.py`` hold only a docstring: importing one module loads only what it imports
(``pgf-sim --help`` loads neither torch nor plotly).
"""
