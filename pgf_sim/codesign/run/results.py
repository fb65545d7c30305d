"""A sweep's stored results as Pareto candidates, and simulator results in the store's columns.

The database itself (tables, connections, typed rows) is ``pgf_sim.store``; this module joins
its rows: a sweep's points, their runs and their simulated costs, one candidate row per (run,
hardware target), for ``pareto.aggregate_seeds``.
"""
from __future__ import annotations

from typing import Any

from ...store import LAYER_FIELDS, OPTIONAL_TOTALS, TOTAL_METRICS, ResultStore


def candidate_rows(store: ResultStore, sweep: str, key: str | None = None) -> list[dict[str, Any]]:
    """Per-seed rows of a sweep for ``pareto.aggregate_seeds``: one per (run, hardware).

    Finished runs carry their accuracy and simulated costs; failed runs (e.g. NaN loss) are
    included with accuracy ``None`` on every target of the sweep, so their candidate's mean is
    NaN and is reported off the front instead of a lucky seed standing for an unstable recipe.
    Runs not started or still running are left out (their sweep is not finished).
    ``inference_flops`` is the executed FLOPs (hardware-aware: a pattern the hardware cannot
    skip costs its dense FLOPs). ``footprint_bytes`` is the inference memory footprint and
    ``dram_capacity_bytes`` the target's memory (None for simulations stored before the footprint
    was). ``key``: the simulation settings whose costs are joined
    (default: the sweep's trained-model key; ``deploy.DeploySpec.key`` for the proxy cost).
    """
    info = store.sweep_info(sweep)
    points = store.sweep_points(info.sweep)
    totals = {(t.run_id, t.hw): t for t in store.sim_totals(key or info.sim_key, [p.run_id for p in points])}
    out = []
    for p in points:
        run = store.get_run(p.run_id)
        if run is None or run.status not in ("finished", "failed"):
            continue
        for hw in info.hardware:
            t = totals.get((p.run_id, hw))
            if run.status == "finished" and t is None:
                continue  # simulation not stored yet (sweep interrupted after training)
            out.append({
                "hardware": hw, "model": p.model, "recipe": recipe_label(p.recipe, p.params),
                "pattern": p.pattern,
                "run_id": p.run_id,
                "accuracy": run.final_accuracy if run.status == "finished" else None,
                "inference_flops": t.exec_flops if t else None,
                "latency_s": t.latency_s if t else None,
                "energy_j": t.energy_j if t else None,
                "weight_bytes": t.weight_bytes if t else None,
                "footprint_bytes": t.footprint_bytes if t else None,
                "dram_capacity_bytes": t.dram_capacity_bytes if t else None,
                "train_flops": run.train_flops,
            })
    return out


def recipe_label(recipe: str, params: dict[str, Any]) -> str:
    """The recipe label with its swept parameters, so each parameter value is its own candidate:
    ``mdgf(dense_fraction=0.1)`` (the last part of each dotted key)."""
    if not params:
        return recipe
    parts = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in sorted(params.items())]
    return f"{recipe}({', '.join(parts)})"


def from_sim_result(sim: Any) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """(totals, layer rows) in the store's column names from a ``pgf_sim.sim.simulate.SimResult``."""
    t = sim.totals
    totals = {k: t[k] for k in (*TOTAL_METRICS, *OPTIONAL_TOTALS)}
    layers = [{k: r[k] for k in LAYER_FIELDS} for r in sim.rows]
    return totals, layers
