"""Running sweep points: what one worker does for one grid point, and where it runs
(local worker processes by default, or a Ray cluster).

One point = train (or resume, or skip when finished) + simulate the trained model's real masks
on every hardware target of the sweep. ``execute_point`` is a plain top-level function of a
picklable ``PointTask``, so the same code runs in a ``ProcessPoolExecutor`` worker and as a Ray
task. It is idempotent: a finished run is not retrained, a stored simulation is not redone,
and a run that another live process is training (a second sweep over the same workdir) is
waited for, not trained again (``core.runlock``: a file lock the OS drops when its holder dies).
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ...core import PgfSimError
from ...core.runlock import run_lock

if TYPE_CHECKING:
    from ...sim.hardware import Hardware
    from ...store import ResultStore
    from .deploy import DeploySpec


@dataclass(frozen=True)
class PointTask:
    """One grid point to run; plain frozen values, so it pickles to a worker process or a Ray task."""

    run_id: str
    label: str                      # human description of the grid point
    experiment: Any                 # the resolved pgf_sim.train.experiment.ExperimentConfig
    db_path: Path
    workdir: Path
    hardware: tuple[tuple[str, Hardware], ...]  # (label, loaded target)
    batch: int
    dtype: str
    sim_key: str
    threads: int
    progress: bool = False
    resimulate: bool = False
    deploys: tuple[DeploySpec, ...] = ()  # the deployment-scale proxy cost, one per runtime
    runtimes: tuple[str, ...] = ("eager",)  # sim_key is the first's; the others' keys follow from it


@dataclass(frozen=True)
class PointResult:
    run_id: str
    status: str          # trained | resumed | finished (already, or by another process meanwhile)
    accuracy: float | None
    simulated: tuple[str, ...]   # hardware labels simulated by this call
    seconds: float


def execute_point(task: PointTask) -> PointResult:
    """Train/resume/skip one run, then simulate it on every target not yet stored."""
    t0 = time.time()
    _set_threads(task.threads)
    from ...store import ResultStore

    store = ResultStore(task.db_path)
    workdir = Path(task.workdir)
    # Another live process (a second sweep over this workdir, a `pgf-sim train`) may be training
    # this run: wait for it, then find the run finished (or resume its checkpoint), never train twice.
    with run_lock(workdir, task.run_id, wait=True):
        run = store.get_run(task.run_id)
        status = "finished"
        if run is None or run.status != "finished":
            from ...train.trainer import train

            status = "resumed" if (workdir / task.run_id / "checkpoint.pt").exists() else "trained"
            train(task.experiment, store=store, run_id=task.run_id, workdir=workdir, progress=task.progress)
            run = store.get_run(task.run_id)
        from ...store import sim_key

        todo_by_runtime = {}
        for runtime in task.runtimes:
            key = task.sim_key if runtime == task.runtimes[0] else sim_key(task.batch, task.dtype, runtime)
            done = set() if task.resimulate else {hw for _, hw in store.simulated(key, [task.run_id])}
            todo_by_runtime[runtime] = (key, tuple((label, spec) for label, spec in task.hardware if label not in done))
        if any(todo for _, todo in todo_by_runtime.values()):
            simulate_run(store, task.run_id, workdir / task.run_id, (), batch=task.batch, dtype=task.dtype,
                         key=task.sim_key, train_flops=run.train_flops, replace=task.resimulate,
                         cfg=task.experiment, per_runtime=todo_by_runtime)
        for deploy in task.deploys:  # the proxy reads the patterns stored just above; no torch needed
            from .deploy import simulate_deploy

            have = set() if task.resimulate else {hw for _, hw in store.simulated(deploy.key, [task.run_id])}
            missing = [(label, spec) for label, spec in task.hardware if label not in have]
            if missing:
                simulate_deploy(store, task.run_id, missing, deploy, trained_key=task.sim_key,
                                train_flops=run.train_flops, replace=task.resimulate)
    todo = todo_by_runtime[task.runtimes[0]][1]
    return PointResult(task.run_id, status, run.final_accuracy, tuple(label for label, _ in todo), time.time() - t0)


def simulate_run(store: ResultStore, run_id: str, run_dir: Path, hardware: tuple[tuple[str, Hardware], ...], *,
                 batch: int, dtype: str, key: str, train_flops: float | None, replace: bool = False,
                 cfg: Any = None, runtime: str = "eager",
                 per_runtime: dict[str, tuple[str, tuple[tuple[str, Hardware], ...]]] | None = None) -> None:
    """Capture the trained model (its real per-layer N:M structure) once and store its cost on each
    target: ``hardware`` under ``key`` in ``runtime``, or ``per_runtime`` {runtime: (key, targets)}.
    ``cfg``: the run's experiment from the sweep's own YAML (its ``config.json`` is then not read)."""
    from ...sim.simulate import simulate
    from . import results
    from .trained import capture_run

    jobs = per_runtime if per_runtime is not None else {runtime: (key, hardware)}
    workload, _ = capture_run(run_dir, batch=batch, dtype=dtype, cfg=cfg)
    for rt, (rt_key, targets) in jobs.items():
        for label, hw in targets:
            sim = simulate(workload, hw, runtime=rt)
            totals, layers = results.from_sim_result(sim)
            store.write_simulation(run_id, label, rt_key, batch=batch, dtype=dtype, totals=totals, layers=layers,
                                   train_flops=train_flops, replace=replace)


def _set_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(max(1, threads))


# ------------------------------------------------------------------------------- executors
Outcome = tuple[PointTask, PointResult | None, BaseException | None]
TICK_S = 5.0  # a runner yields None when nothing finished for this long (the driver's progress tick)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_local(tasks: list[PointTask], workers: int) -> Iterator[Outcome | None]:
    """Tasks on ``workers`` spawned processes; yields each outcome as it completes (and
    ``None`` every ``TICK_S`` without one).

    ``spawn`` (not fork): torch's thread pools do not survive a fork, and each worker sets its
    own thread count. A worker exits by itself when the driver dies (even by SIGKILL), so no
    orphan keeps training a run that the next sweep would resume at the same time.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    if not tasks:
        return
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(os.getpid(), tasks[0].threads))
    try:
        futures = {pool.submit(execute_point, t): t for t in tasks}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=TICK_S, return_when=FIRST_COMPLETED)
            if not done:
                yield None
            for fut in done:
                exc = fut.exception()
                if isinstance(exc, BrokenProcessPool):  # a worker was killed (OOM killer, kill -9)
                    exc = PgfSimError(f"a worker process died while {futures[fut].label} was queued or running; "
                                      "checkpoints are kept: rerun the sweep to resume")
                yield futures[fut], (None if exc else fut.result()), exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _init_worker(parent_pid: int, threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    _set_threads(threads)

    def watch() -> None:  # reparenting means the driver is gone: stop now, the checkpoint stays
        while True:
            if os.getppid() != parent_pid:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, name="pgf-sim-parent-watch", daemon=True).start()


def run_ray(tasks: list[PointTask], address: str | None) -> Iterator[Outcome | None]:
    """Tasks as Ray tasks (``num_cpus`` = the task's thread count) on the cluster at ``address``
    (``None``: start a local Ray instance). Workdir and DB must be paths every node can reach
    (one machine, or a shared filesystem)."""
    try:
        import ray
    except ImportError:
        raise PgfSimError("--executor ray needs Ray: pip install 'pgf_sim[ray]' (or pip install ray)") from None
    if not tasks:
        return
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
    remote = ray.remote(num_cpus=tasks[0].threads, max_retries=0)(execute_point)
    try:
        pending = {remote.remote(t): t for t in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=TICK_S)
            if not done:
                yield None
                continue
            ref = done[0]
            task = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                yield task, None, exc.as_instanceof_cause()
            except ray.exceptions.RayError as exc:  # the worker process died (killed, out of memory, node lost)
                yield task, None, PgfSimError(
                    f"the Ray worker running {task.label} died ({type(exc).__name__}); its last checkpoint is "
                    "kept: rerun the sweep to resume it")
            else:
                yield task, result, None
    finally:
        if started_here:
            ray.shutdown()


def error_text(exc: BaseException) -> str:
    """One line for a user error, the traceback for a bug."""
    if isinstance(exc, PgfSimError):
        return str(exc)
    return "".join(traceback.format_exception(exc)).rstrip()


RUNNERS: dict[str, Callable[..., Iterator[Outcome | None]]] = {"local": run_local, "ray": run_ray}
