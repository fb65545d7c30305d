"""run: producing the results. Sweeps train a grid of runs and simulate each on every target.

Questions it answers: which runs does a sweep make, where do they run (local worker processes
or Ray), how is a finished run turned into a simulator workload (its real masks captured), what
would its N:M patterns cost on a deployment-scale model, and how are a sweep's stored rows read
back as candidates. May import: ``decide`` (it does not today).

- ``sweep.py``: the sweep YAML, the grid expansion, ``run_sweep``
- ``executors.py``: one point (train + simulate, idempotent), local processes and Ray
- ``trained.py``: a run directory as a workload (``capture_run``), the loader of ``simulate --model``
- ``deploy.py``: the deployment-scale proxy cost (per-role patterns on a built-in architecture)
- ``results.py``: a sweep's stored points, runs and costs as candidate rows; simulator results as store rows
"""
