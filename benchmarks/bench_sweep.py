"""Sweep machinery overhead, measured in one run against baselines measured in the same run.

1. Store writes: ``ResultStore.write_simulation`` (one WAL transaction per run x target, with its
   per-layer rows) per second, by one process and by two processes at once (the concurrent
   case a parallel sweep produces), against the same rows written with plain ``sqlite3`` in
   one long transaction (the fastest possible, but neither durable per result nor shareable).
2. Point overhead: a tiny sweep (N runs) through ``run_sweep`` with one local worker process,
   against the same runs trained + simulated in this process by direct calls (no process pool,
   no store checks): the ratio is what the executor, the locks and the resumability cost.

Usage: ``python benchmarks/bench_sweep.py [--runs 3] [--steps 40] [--writes 300]``.
"""
from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

from pgf_sim.store import sim_key

KEY = sim_key(1, "fp16")
# Written as source so that the two concurrent writer processes run exactly this code.
_WRITE_MANY = textwrap.dedent("""
    from pgf_sim.store import TOTAL_METRICS, ResultStore, sim_key
    ROW = {"layer": "blocks.0.mlp.fc1", "kind": "gemm", "role": "fc1", "pattern": "1:8", "exec_pattern": "2:4",
           "dense_flops": 1.0, "exec_flops": 0.5, "weight_bytes": 1.0, "dram_bytes": 1.0, "latency_s": 1e-6,
           "energy_j": 1e-9, "bound": "compute"}
    TOTALS = {k: 1.0 for k in TOTAL_METRICS}

    def write_many(db, prefix, n, layers=30):
        store = ResultStore(db)
        for i in range(n):
            store.write_simulation(f"{prefix}-{i}", "a100_80gb", sim_key(1, "fp16"), batch=1,
                                   dtype="fp16", totals=TOTALS, layers=[ROW] * layers)
""")


def bench_store(n: int, tmp: Path) -> None:
    scope: dict = {}
    exec(_WRITE_MANY, scope)  # noqa: S102 - our own constant source, shared with the subprocesses
    t = time.perf_counter()
    scope["write_many"](str(tmp / "one.sqlite"), "r", n)
    one = n / (time.perf_counter() - t)

    code = _WRITE_MANY + "\nimport sys\nwrite_many(sys.argv[1], sys.argv[2], int(sys.argv[3]))\n"
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp / "two.sqlite"), who, str(n)]) for who in ("a", "b")]
    assert all(p.wait() == 0 for p in procs)
    two = 2 * n / (time.perf_counter() - t)

    con = sqlite3.connect(tmp / "plain.sqlite")
    con.execute("CREATE TABLE t (run_id, hw, idx, layer, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11)")
    t = time.perf_counter()
    with con:
        for i in range(n):
            con.executemany("INSERT INTO t VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                            [(f"r-{i}", "a100", j, "l", 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1) for j in range(30)])
    plain = n / (time.perf_counter() - t)
    print(f"store: {one:8.0f} results/s (1 process), {two:8.0f} results/s (2 processes at once, incl. their start); "
          f"baseline plain sqlite3 in one transaction {plain:8.0f}/s; ratio baseline/ours {plain / one:.1f}x "
          "(the price of one durable transaction per result)")


def bench_points(runs: int, steps: int, tmp: Path) -> None:
    import torch

    from pgf_sim.codesign.run.sweep import expand, load_sweep, run_sweep
    from pgf_sim.sim.capture import capture
    from pgf_sim.sim.simulate import simulate
    from pgf_sim.store import ResultStore
    from pgf_sim.train.experiment import experiment_from_dict
    from pgf_sim.train.trainer import example_input, load_trained, train

    sweep = {"name": "bench", "experiment": {"name": "bench", "schedule": {"steps": steps, "batch_size": 32},
                                             "model": {"name": "vit", "options": {"dim": 32, "depth": 1, "heads": 2}}},
             "grid": {"recipes": ["sr-ste"], "patterns": ["2:4"], "seeds": list(range(runs))},
             "hardware": ["a100_80gb"], "workers": 1}
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump(sweep))
    torch.set_num_threads(1)  # the sweep's worker below gets threads=1 too: like for like
    # baseline: the same runs, trained and simulated by direct calls in this process
    store = ResultStore(tmp / "direct.sqlite")
    t = time.perf_counter()
    for p in expand(load_sweep(path)):
        cfg = experiment_from_dict(p.experiment)
        train(cfg, store=store, run_id=p.run_id, workdir=tmp / "direct", progress=False)
        model, cfg = load_trained(tmp / "direct" / p.run_id)
        simulate(capture(model, (example_input(cfg, 1),)), "a100_80gb")
    direct = time.perf_counter() - t
    t = time.perf_counter()
    out = run_sweep(load_sweep(path), db=tmp / "sweep.sqlite", workdir=tmp / "sweep", workers=1, threads=1,
                    echo=lambda s: None)
    swept = time.perf_counter() - t
    assert out.ok and len(out.completed) == runs
    t = time.perf_counter()
    run_sweep(load_sweep(path), db=tmp / "sweep.sqlite", workdir=tmp / "sweep", workers=1, echo=lambda s: None)
    rerun = time.perf_counter() - t
    print(f"points: {runs} runs x {steps} steps: run_sweep (1 worker process) {swept:.1f} s vs direct calls in one "
          f"process {direct:.1f} s: ratio {swept / direct:.2f}x; rerun of the finished sweep {rerun:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--writes", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bench_store(args.writes, Path(d))
        bench_points(args.runs, args.steps, Path(d))


if __name__ == "__main__":
    main()
