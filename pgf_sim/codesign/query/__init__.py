"""query: the result store read for the co-design commands, the glue between the store and the
rooms below.

Questions it answers: which cost views a sweep has (trained model or deployment proxy, per
runtime), the candidate table of a sweep (``load_table``), the picks under given limits, the
fronts and pattern costs as text, the report's data bundle, and DSE over the models a sweep
trained. It reads the database through ``pgf_sim.store`` (never creates one) and hands plain
values to ``decide``, ``report`` and ``explore``. May import: ``decide``, ``run``, ``explore``,
``report``.

- ``views.py``: all of the above; library functions take typed arguments (``PickLimits``,
  ``TrainedSource``), which ``cli`` builds from flags
"""
