"""explore: the other directions of co-design, beyond one uniform pattern per model.

Questions it answers: which hardware variant suits these models (design-space exploration over
a base target's fields), is supporting a pattern natively worth it, and which pattern per layer
minimises cost under a quality budget (mixed N:M), checked by re-masking, fine-tuning and
training the assignment from scratch. May import: ``decide``, ``run``.

- ``dse.py``: hardware variants, every workload costed on every variant, ``native_pattern_gain``
- ``mixed.py``: per-layer sensitivity and cost, the exact / greedy assignment solvers
- ``mixed_verify.py``: ``run_mixed``: choose an assignment and verify it three ways, recorded in the store
"""
