"""cli: co-design's command line, in one place; the top room (it may import every other).

Each module adds its subcommands to ``pgf-sim`` through ``add_commands(subparsers)`` (listed in
``pgf_sim/cli.py``) and turns flags into the typed arguments of the rooms below. Light at
import: torch and plotly are imported inside the command functions.

- ``cli.py``: ``run`` (the whole loop on the embedded default), ``sweep``, ``simulate`` (with the
  loader of training runs), ``pick``, ``report``, ``dse``, ``mixed``
- ``results_cli.py``: ``results``: what the result database holds
- ``study_cli.py``: ``study``: the seed-study analysis of a sweep
"""
