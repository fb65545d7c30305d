"""The deployment-scale proxy cost: a trained run's recipe/pattern costed on a built-in architecture.

The models a sweep trains in minutes (the default: a 64-wide, 2-block ViT on 8x8 digits) are
so small that every hardware target is bound by kernel launch overhead and under-filled
arrays: their latency is the same for every N:M pattern, so their own cost cannot say which
pattern to train for a target. The proxy keeps the accuracy of the small trained model and
takes the cost of the *same per-role N:M patterns* on a deployment-scale built-in architecture
of ``pgf_sim.sim.workloads`` (e.g. ``vit_b`` at batch 32). It is labelled as a proxy wherever
it appears: the accuracy was not measured on that architecture.

Per-role patterns come from the run's captured layers (the ``sim_layers`` rows of its trained
simulation: weight zero structure read from the real masks):

- MLP roles (fc1, fc2; SwiGLU's gate/up are fc1, down fc2) -> ``build_workload(pattern=...)``;
- attention input projections (q, k, v, qkv) -> ``qkv_pattern`` (``None`` when dense).

``build_workload`` takes ONE pattern for all MLP layers and one for all q/k/v layers, so a run
whose layers of a role group differ (e.g. only some blocks sparsified, or fc1 at 2:4 and fc2
at 1:8), or that sparsified a role the built-in keeps dense (proj, head, patch_embed), cannot be
carried over faithfully: that is a ``ConfigError`` naming the layers, not a silent guess.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from ...core import DENSE, NM, ConfigError
from ...sparsity.roles import MLP_ROLES, QKV_ROLES, ROLES, role_group
from ...store import ResultStore, SimLayerRow

if TYPE_CHECKING:
    from ...sim.hardware import Hardware


@dataclass(frozen=True)
class DeploySpec:
    """The built-in architecture and inference setting of the proxy cost."""

    model: str
    batch: int
    seq_len: int | None
    dtype: str
    phase: str = "forward"  # forward (every token, every logit), or a decoder's prefill / decode step
    runtime: str = "eager"  # sim.cost.RUNTIMES

    @property
    def key(self) -> str:
        """The ``sim_key`` of the proxy rows (distinct from every trained-model key)."""
        return deploy_key(self.model, self.batch, self.seq_len, self.dtype, self.phase, self.runtime)

    def describe(self) -> str:
        seq = "" if self.seq_len is None else (f", context {self.seq_len}" if self.phase == "decode"
                                                else f", sequence length {self.seq_len}")
        phase = "" if self.phase == "forward" else f" {self.phase}"
        return f"{self.model}{phase} at batch {self.batch}{seq}, {self.dtype}, {self.runtime} runtime"


def deploy_key(model: str, batch: int, seq_len: int | None, dtype: str, phase: str = "forward",
               runtime: str = "eager") -> str:
    """Forward-phase eager keys are those stored before phases and runtimes existed."""
    return (f"deploy={model},batch={batch},seq_len={'default' if seq_len is None else seq_len},dtype={dtype}"
            + ("" if phase == "forward" else f",phase={phase}") + ("" if runtime == "eager" else f",runtime={runtime}"))


def check_model(spec: DeploySpec) -> None:
    """Fail before any training when the proxy architecture or its setting is invalid."""
    from ...sim.workloads import build_workload

    build_workload(spec.model, batch=spec.batch, seq_len=spec.seq_len, dtype=spec.dtype, phase=spec.phase)


def role_patterns(layers: Iterable[SimLayerRow], *, run_id: str = "") -> tuple[NM, NM | None]:
    """(MLP pattern, q/k/v pattern or None) of a run's captured layers (the stored rows of its
    trained simulation; only weight GEMMs count); ``ConfigError`` when a group is not uniform."""
    groups: dict[str, dict[NM, list[str]]] = {"mlp": {}, "qkv": {}, "other": {}}
    for row in layers:
        if row.kind != "gemm":
            continue
        groups[role_group(row.role)].setdefault(row.pattern, []).append(row.layer)
    where = f"run {run_id}: " if run_id else ""
    other_sparse = {p: names for p, names in groups["other"].items() if not p.is_dense}
    if other_sparse:
        shown = "; ".join(f"{p}: {', '.join(n[:4])}" for p, n in other_sparse.items())
        raise ConfigError(f"{where}the deployment proxy keeps all but the MLP and q/k/v layers dense, but this run "
                          f"sparsified {shown}; its proxy cost would understate the run's sparsity. Remove "
                          f"simulate.deploy_model or restrict recipe.roles to fc1/fc2/q/k/v")
    out = []
    for group, members in (("mlp", MLP_ROLES), ("qkv", QKV_ROLES)):
        names = [r for r in ROLES if r in members]
        found = groups[group]
        if len(found) > 1:
            shown = "; ".join(f"{p}: {', '.join(n[:4])}{' ...' if len(n) > 4 else ''}" for p, n in found.items())
            raise ConfigError(f"{where}layers of roles {'/'.join(names)} have different N:M patterns ({shown}); "
                              f"the deployment proxy (pgf_sim.sim.workloads.build_workload) takes one pattern per "
                              f"role group, so this run cannot be costed on it")
        out.append(next(iter(found), DENSE))
    mlp, qkv = out
    return mlp, (None if qkv.is_dense else qkv)


def simulate_deploy(store: ResultStore, run_id: str, hardware: Iterable[tuple[str, Hardware]], spec: DeploySpec, *,
                    trained_key: str, train_flops: float | None, replace: bool = False) -> list[str]:
    """Cost run ``run_id``'s per-role patterns on ``spec``'s architecture on every target, stored
    under ``spec.key``; the patterns come from the run's stored trained simulation (any target:
    the captured weight pattern does not depend on the hardware). Returns the targets written."""
    from ...sim.simulate import simulate
    from ...sim.workloads import build_workload
    from . import results

    hardware = list(hardware)
    stored = sorted(hw for _, hw in store.simulated(trained_key, [run_id]))
    if not stored:
        raise ConfigError(f"run {run_id} has no trained-model simulation under {trained_key} to read its patterns from")
    pattern, qkv = role_patterns(store.sim_layers(run_id, stored[0], trained_key), run_id=run_id)
    workload = build_workload(spec.model, batch=spec.batch, seq_len=spec.seq_len, pattern=pattern,
                              qkv_pattern=qkv, dtype=spec.dtype, phase=spec.phase)
    written = []
    for label, hw in hardware:
        totals, layers = results.from_sim_result(simulate(workload, hw, runtime=spec.runtime))
        if store.write_simulation(run_id, label, spec.key, batch=spec.batch, dtype=spec.dtype,
                                    totals=totals, layers=layers, train_flops=train_flops, replace=replace):
            written.append(label)
    return written
