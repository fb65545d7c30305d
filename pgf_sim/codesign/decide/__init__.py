"""decide: which candidate wins, and why. The lowest room of co-design (it imports no other room).

Questions it answers: what is on the accuracy-vs-cost Pareto front; what to train for this target
under these limits, the runner-up, and whether the two differ beyond seed noise ("why was this
picked?"); which quality metric a sweep is judged by and what a limit on it means; is a recipe
really better than the reference over seeds.

- ``pareto.py``: ``Candidate``, ``ResultTable``, seed aggregation, domination, ``fronts``
- ``pick.py``: ``pick`` under constraints, its tie rules and ``explain`` (the answer in words)
- ``quality.py``: the task metric of a sweep, the limit a user gives on it, test-split numbers
- ``stats.py``: mean ± std, Welch intervals, bootstrap, Holm correction (torch-free)
- ``study.py``: the seed study of a sweep (``pgf-sim study``, docs/study.md)
- ``records.py``: the answers of ``pick``, ``dse``, ``mixed`` and ``results`` as JSON/CSV records
"""
