"""pgf_sim: N:M sparse training with progressive gradient flow + an N:M accelerator cost simulator.

Importing this package loads no torch: the simulator core is pure NumPy, and the public names
below are imported on first use (``pgf_sim.sparsify`` loads torch, ``pgf_sim.simulate`` does
not). ``docs/api.md`` walks through them with a complete example.
"""
from __future__ import annotations

import importlib
from typing import Any

from .core import NM, ConfigError, PgfSimError, ShapeError, UnknownNameError

from .core.version import VERSION as __version__

# public name -> module that defines it (imported lazily by __getattr__)
_PUBLIC = {
    # the trust boundary: a function a config may name as model.factory / data.factory
    "factory": "pgf_sim.core.trust",
    # training backend (torch)
    "RecipeConfig": "pgf_sim.sparsity.schedules",
    "sparsify": "pgf_sim.train.sparsify",
    "SparseController": "pgf_sim.train.sparsify",
    "export_compressed": "pgf_sim.train.export",
    "load_compressed": "pgf_sim.train.export",
    "trained_patterns": "pgf_sim.train.export",
    "to_semi_structured": "pgf_sim.train.semi_structured",
    "semi_structured_problems": "pgf_sim.train.semi_structured",
    # simulator (NumPy; capture needs torch)
    "capture": "pgf_sim.sim.capture",
    "simulate": "pgf_sim.sim.simulate",
    "load_hardware": "pgf_sim.sim.hardware",
    "build_workload": "pgf_sim.sim.workloads",
    # results and co-design
    "ResultStore": "pgf_sim.store",
    "Candidate": "pgf_sim.codesign.decide.pareto",
    "ResultTable": "pgf_sim.codesign.decide.pareto",
    "pareto_front": "pgf_sim.codesign.decide.pareto",
    "fronts": "pgf_sim.codesign.decide.pareto",
    "pick": "pgf_sim.codesign.decide.pick",
    "load_sweep": "pgf_sim.codesign.run.sweep",
    "run_sweep": "pgf_sim.codesign.run.sweep",
    "load_table": "pgf_sim.codesign.query.views",
    "ReportData": "pgf_sim.codesign.report.report",
    "write_report": "pgf_sim.codesign.report.report",
}

__all__ = ["NM", "ConfigError", "PgfSimError", "ShapeError", "UnknownNameError", "__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'pgf_sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
