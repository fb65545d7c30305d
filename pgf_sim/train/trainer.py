"""The training loop: AdamW, warmup + cosine LR, clipping, eval, checkpoint/resume, store.

``train(cfg, store=..., workdir=...)`` trains one experiment into ``workdir/<run_id>/``:
``checkpoint.pt`` (resumable state, rewritten every ``checkpoint_every`` steps),
``final_model.pt`` (the finalised model, its zero structure the N:M pattern) and
``config.json``. Calling it again with the same config and run id resumes from the checkpoint
and continues bit-exactly (same batches, same RNG, same optimiser state); a finished run is
returned as is.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from pgf_sim.core import NM, PgfSimError
from pgf_sim.core.files import atomic_write
from pgf_sim.core.runlock import check_run_id, run_lock
from pgf_sim.store import INTERRUPTED, ResultStore
from pgf_sim.train import distributed as dist
from pgf_sim.train.checkpoint import (CHECKPOINT_NAME, atomic_save, load_checkpoint, safe_torch_load, save_checkpoint,
                                     set_rng_state)
from pgf_sim.train.data import data_spec, load_data, steps_per_epoch
from pgf_sim.train.diagnostics import GradNoiseMonitor
from pgf_sim.train.experiment import ExperimentConfig, experiment_from_dict
from pgf_sim.train.models import build_model
from pgf_sim.train.optim import FrozenVarianceAdamW
from pgf_sim.sparsity.schedules import phases

FINAL_MODEL_NAME = "final_model.pt"
CONFIG_NAME = "config.json"


class TrainingDiverged(PgfSimError):
    """The loss or the gradient became NaN/inf; the last good checkpoint is kept."""


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    final_accuracy: float  # the task metric (cfg.task_metric) of the final model on the VALIDATION split
    layer_info: dict[str, tuple[NM, tuple[int, ...], str]]  # module name -> (pattern, weight shape, role)
    checkpoint_path: Path
    model_name: str
    run_dir: Path
    final_step: int
    train_flops: dict[str, float] = field(default_factory=dict)  # forward / input-grad / weight-grad
    model: torch.nn.Module | None = field(default=None, compare=False, repr=False)  # the finalised model


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warmup from ~0 to 1 over ``warmup_steps``, then half-cosine to 0 at ``total_steps``
    (the timm / nanoGPT schedule shape)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # No weight decay on biases, norms, cls/pos tokens (1-D or token-shaped): the usual ViT recipe.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "token" not in name and "pos_embed" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float, total: int, warmup: int,
                   freeze_after: int | None = None) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no decay on biases, norms and tokens) and its ``lr_factor`` schedule over ``total``
    steps. ``freeze_after``: STEP's AdamW whose second moment freezes after that many steps (the
    dense precondition phase; ``optim.FrozenVarianceAdamW``)."""
    groups = _param_groups(model, weight_decay)
    opt = (torch.optim.AdamW(groups, lr=lr) if freeze_after is None
           else FrozenVarianceAdamW(groups, lr=lr, freeze_after=freeze_after))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup))



def optimizer_for(model: torch.nn.Module, cfg: ExperimentConfig, total: int):
    """An experiment's optimizer and LR schedule over ``total`` steps: AdamW, or for STEP (a recipe
    with ``frozen_variance``) the AdamW whose second moment freezes after the dense phase."""
    freeze = phases(cfg.recipe, total).dense_end if cfg.recipe.spec.frozen_variance else None
    return make_optimizer(model, lr=cfg.schedule.lr, weight_decay=cfg.schedule.weight_decay, total=total,
                          warmup=int(cfg.schedule.warmup_fraction * total), freeze_after=freeze)

@dataclass(frozen=True)
class StepStats:
    """One completed optimiser step: its 0-based index, the (all-reduced) loss and gradient norm
    before clipping, and the learning rate it used."""
    step: int
    loss: float
    grad_norm: float
    lr: float


def fit_steps(net: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any,
              batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]], steps: range, *, device: torch.device,
              bf16: bool = False, grad_clip: float | None = None,
              reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
              before_step: Callable[[int], None] | None = None, after_backward: Callable[[int], None] | None = None,
              after_step: Callable[[StepStats], None] | None = None,
              on_diverged: Callable[[StepStats], None] | None = None) -> None:
    """The one training loop (``train`` and the masked fine-tune of ``codesign.explore.mixed_verify`` use it):
    for each step, ``before_step``, cross-entropy of ``net`` on ``batch(step)`` (every position of a
    text window is a target), backward, ``after_backward``, clipping at ``grad_clip``, the
    optimiser and LR steps, then ``after_step``. ``reduce`` averages (loss, grad norm) over DDP
    ranks. A non-finite loss or gradient norm calls ``on_diverged`` (which should raise) before
    the optimiser step, so the bad update is never applied; without it, ``TrainingDiverged``."""
    net.train()
    params = [p for group in opt.param_groups for p in group["params"]]
    clip = grad_clip if grad_clip is not None else float("inf")
    for step in steps:
        if before_step is not None:
            before_step(step)
        x, y = batch(step)
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            # (B, classes) or (B, T, vocab) logits
            loss = F.cross_entropy(net(x).float().flatten(0, -2), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()  # also when not finite: under DDP every rank must join the all-reduce
        if after_backward is not None:
            after_backward(step)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        stats_t = torch.stack([loss.detach().float(), grad_norm.float()]).cpu()
        stats_t = reduce(stats_t) if reduce is not None else stats_t
        stats = StepStats(step, float(stats_t[0]), float(stats_t[1]), opt.param_groups[0]["lr"])
        if not (math.isfinite(stats.loss) and math.isfinite(stats.grad_norm)):
            if on_diverged is not None:
                on_diverged(stats)
            raise TrainingDiverged(f"training diverged at step {step + 1} (loss={stats.loss}, "
                                   f"grad norm={stats.grad_norm}, lr={stats.lr:.3g}); lower the learning rate")
        opt.step()
        sched.step()
        if after_step is not None:
            after_step(stats)


@torch.no_grad()
def evaluate(model: torch.nn.Module, data, device: torch.device, bf16: bool, split: str = "val") -> dict[str, float]:
    """Metrics of ``split`` (``val`` or ``test``): ``accuracy`` in [0, 1] and mean cross-entropy
    ``loss`` (nats) over every scored target (examples; next-token positions for text), and for
    next-token data also ``bpc`` = loss / ln 2 (bits per character) and ``perplexity`` = exp(loss)."""
    was_training = model.training
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    for x, y in data.eval_batches(split):
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        logits, y = logits.float().flatten(0, -2), y.flatten()  # (B[*T], classes), (B[*T],)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(-1) == y).sum())
        n += y.numel()
    model.train(was_training)
    out = {"accuracy": correct / n, "loss": loss_sum / n}
    if data.spec.kind == "lm":
        out["bpc"] = out["loss"] / math.log(2)
        out["perplexity"] = math.exp(out["loss"])
    return out


def _eval_rows(step: int, model, data, device, bf16: bool, splits=("val",)) -> list[tuple[int, str, float]]:
    return [(step, f"{split}_{k}", v) for split in splits for k, v in evaluate(model, data, device, bf16, split).items()]


def example_input(cfg: ExperimentConfig, batch: int = 1, *, spec=None) -> torch.Tensor:
    """A batch shaped like the experiment's inputs (for ``pgf_sim.sim.capture``); built-in
    image/token sets read no data."""
    spec = spec or data_spec(cfg.data)
    if spec.kind in ("tokens", "lm"):
        return torch.zeros((batch, *spec.input_shape), dtype=torch.long)
    return torch.zeros((batch, *spec.input_shape))


def load_trained(run_dir: str | Path, cfg: ExperimentConfig | None = None) -> tuple[torch.nn.Module, ExperimentConfig]:
    """The finalised model of a finished run (plain modules, pruned weights are zeros) + its config.

    ``cfg``: the experiment the caller already holds (from the user's own YAML); else the run's
    ``config.json`` is read, and a factory it names is refused unless the user passed
    ``--trust`` (``pgf_sim.core.trust.check_stored``): a run directory may come from elsewhere."""
    run_dir = Path(run_dir)
    path = run_dir / FINAL_MODEL_NAME
    if not path.is_file():
        raise PgfSimError(f"{run_dir} has no {FINAL_MODEL_NAME}: the run has not finished (train it to the end first)")
    cfg_path = run_dir / CONFIG_NAME
    if cfg is None:
        cfg = read_run_config(cfg_path)
    model = build_model(cfg.model, data_spec(cfg.data))
    state = safe_torch_load(path, "trained model")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise PgfSimError(f"{path}: does not hold the model of {cfg_path} ({first[:160]})") from None
    return model.eval(), cfg


def read_run_config(cfg_path: Path) -> ExperimentConfig:
    """The experiment of a run directory's ``config.json``, checked at the trust boundary first."""
    from pgf_sim.core.files import read_limited
    from pgf_sim.core.trust import check_stored

    try:
        data = json.loads(read_limited(cfg_path, "the run's config"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PgfSimError(f"{cfg_path}: cannot read the run's config ({str(exc)[:160]}); the run directory is damaged") from None
    if not isinstance(data, dict):
        raise PgfSimError(f"{cfg_path}: the run's config is a JSON {type(data).__name__}, not an object; "
                          "the run directory is damaged")
    check_stored(data, str(cfg_path))
    return experiment_from_dict(data, source=str(cfg_path))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _plain_state_dict(trained: torch.nn.Module, cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    """The trained model's *effective* tensors under the plain model's names: whatever way the
    controller wraps a weight, ``getattr`` returns the weight the forward pass uses."""
    plain = build_model(cfg.model, data_spec(cfg.data))
    out = {}
    for key in plain.state_dict():
        mod_name, _, attr = key.rpartition(".")
        out[key] = getattr(trained.get_submodule(mod_name), attr).detach().cpu().clone()
    return out


def train(cfg: ExperimentConfig, *, store: ResultStore, run_id: str | None = None, workdir: str | Path,
          progress: bool = True) -> RunSummary:
    """Train ``cfg`` (resuming when a checkpoint exists); see the module docstring. Holds the run's
    lock (``pgf_sim.core.runlock``) while it trains: another process training the same run id
    (in the same workdir) is waited for, never raced."""
    ctx = dist.context_from_env()
    device = dist.device_for(ctx, cfg.device)
    dist.init(ctx, device)
    dist.check_batch(ctx, cfg.schedule.batch_size)
    run_id = check_run_id(run_id or cfg.default_run_id(ctx.world))

    def waiting(lock_path: Path) -> None:
        print(f"run {run_id} is being trained by another process (lock {lock_path}); waiting for it to finish",
              file=sys.stderr, flush=True)

    # One process per run (the train command, sweep workers, mixed verification, the Python API):
    # a second train() of the same run waits, then finds it finished (or resumes its checkpoint).
    # Under DDP the ranks of one job share the run: rank 0 holds the lock.
    with contextlib.ExitStack() as held:
        if ctx.is_main:
            held.enter_context(run_lock(workdir, run_id, wait=True, on_wait=waiting))
        return _train_locked(cfg, ctx, device, run_id, store=store, workdir=workdir, progress=progress)


def _train_locked(cfg: ExperimentConfig, ctx: Any, device: torch.device, run_id: str, *, store: ResultStore,
                  workdir: str | Path, progress: bool) -> RunSummary:
    """``train`` once the run lock is held."""
    from tqdm import tqdm

    from pgf_sim.sparsity.flops import training_flops
    from pgf_sim.train.activation_matmuls import activation_matmuls
    from pgf_sim.train.sparsify import sparsify

    run_dir = Path(workdir) / run_id
    ckpt_path = run_dir / CHECKPOINT_NAME
    torch.manual_seed(cfg.seed)
    data = load_data(cfg.data)
    total = cfg.schedule.total_steps(data.n_train)
    epoch_steps = steps_per_epoch(data.n_train, cfg.schedule.batch_size)  # validates batch_size <= n_train
    if cfg.recipe.frame_clock == "epoch" and cfg.recipe.steps_per_epoch is None:
        # SDGF frames on epoch boundaries (the authors' code); stored with the run, so the
        # report and the simulator can redraw its schedule from the config alone
        cfg = replace(cfg, recipe=replace(cfg.recipe, steps_per_epoch=epoch_steps))
    config_dict = cfg.to_dict()  # what config.json holds (an experiment)
    identity = run_identity(config_dict, ctx.world)  # what the store and checkpoint compare
    metric = cfg.task_metric
    if metric.name in ("bpc", "perplexity") and data.spec.kind != "lm":
        raise PgfSimError(f"metric {metric.name!r} needs next-token data; data gives {data.spec.kind} data "
                          "(use accuracy or loss)")
    model = build_model(cfg.model, data.spec)
    if cfg.model.factory is not None or cfg.data.factory is not None:
        from pgf_sim.train.datacheck import check_model_output

        check_model_output(model, data, f"model {cfg.model.factory or cfg.model.name!r} on data "
                                        f"{cfg.data.factory or cfg.data.name!r}")
    example = example_input(cfg, 1, spec=data.spec)
    gemms = gemm_layers(model, example, cfg.schedule.batch_size)
    # attention's Q K^T and A V (never weight-sparse); None when the model has none
    attention = activation_matmuls(model, example, cfg.schedule.batch_size) or None
    flops = training_flops(cfg.recipe, gemms, tokens=0, total_steps=total, attention=attention)

    def flops_so_far(step: int) -> float:  # logged with each evaluation: curves vs training FLOPs
        return sum(training_flops(cfg.recipe, gemms, tokens=0, total_steps=total, until=step,
                                  attention=attention).values())
    controller = sparsify(model, cfg.recipe, total)
    model.to(device)
    # the target patterns (what finalize() leaves), not the schedule's pattern at step 0
    targets = controller.target_patterns()
    layer_info = {n: info._replace(pattern=targets[n]) for n, info in controller.layer_info().items()}

    existing = store.get_run(run_id)  # every rank reads it, so all return (or all train) together
    if existing and existing.status == "finished" and (run_dir / FINAL_MODEL_NAME).is_file():
        if existing.config != json.loads(json.dumps(identity, sort_keys=True)):
            raise PgfSimError(_config_differs(run_id, existing.config, identity))
        model, _ = load_trained(run_dir, cfg)
        return RunSummary(run_id, existing.final_accuracy, layer_info, ckpt_path, cfg.model.name,
                          run_dir, existing.final_step, flops, model)

    net = dist.wrap(model, ctx, device)
    opt, sched = optimizer_for(model, cfg, total)

    done = 0
    if ctx.is_main and run_dir.is_dir():  # temp files of a write killed midway (the run lock is held)
        for stale in run_dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, config=identity)  # CPU: RNG states must stay CPU tensors;
        # load_state_dict copies weights and optimiser state onto the parameters' device
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        controller.load_state_dict(state["controller"])
        set_rng_state(state["rng"])
        done = state["step"]
    dist.barrier(ctx)  # every rank has decided whether to resume before rank 0 writes anything

    def checkpoint(step: int) -> None:
        save_checkpoint(ckpt_path, step=step, model=model, optimizer=opt, scheduler=sched,
                        controller=controller, config=identity)

    pending: list[tuple[int, str, float]] = []
    pending_diag: list[tuple[int, str, str, float]] = []
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / CONFIG_NAME, json.dumps(config_dict, indent=2, sort_keys=True))
        if existing is None:
            _note_other_world_sizes(store, cfg.name, run_id, identity)
        store.start_run(run_id, name=cfg.name, config=identity, recipe=cfg.recipe.name,
                        pattern=str(cfg.recipe.pattern), seed=cfg.seed)
        store.truncate_after(run_id, done)
        if not ckpt_path.is_file():
            checkpoint(0)  # a good state to fall back to even if step 1 diverges

    monitor = GradNoiseMonitor(cfg.diagnostics.every, cfg.diagnostics.window) if cfg.diagnostics.every else None
    diag_layers = _diagnostic_layers(model, controller, cfg) if monitor else {}
    bar = tqdm(total=total, initial=done, desc=run_id, dynamic_ncols=True,
               disable=not (progress and ctx.is_main and sys.stderr.isatty()))
    # no terminal (a log file, CI, a pipe): plain lines, about ten per run, instead of a bar
    plain_every = max(1, total // 10) if progress and ctx.is_main and bar.disable else 0
    t_start = time.monotonic()
    beta_v = 0.0
    saved = {"at": done, "step": done}  # the last checkpointed step, the step in progress

    def before_step(step: int) -> None:
        nonlocal beta_v
        saved["step"] = step
        controller.set_step(step)
        beta_v = controller.beta  # MDGF's beta(t) of this step (opt.step's hook advances it)

    def after_backward(step: int) -> None:
        if monitor is not None and monitor.active(step):
            summary = monitor.update(step, *_grads_and_masks(diag_layers, controller, cfg))
            for layer, row in (summary or {}).items():
                pending_diag.extend((step + 1, layer, k, v) for k, v in row.items())

    def after_step(stats: StepStats) -> None:
        nonlocal pending, pending_diag
        s = stats.step + 1  # metrics are keyed by completed steps
        pending += [(s, "train_loss", stats.loss), (s, "lr", stats.lr), (s, "grad_norm", stats.grad_norm)]
        if cfg.recipe.spec.decays:  # MDGF's beta(t) of this step, for the training curves
            pending.append((s, "beta", beta_v))
        if cfg.eval_every and s % cfg.eval_every == 0 and s < total:
            pending += _eval_rows(s, model, data, device, cfg.bf16) + [(s, "train_flops", flops_so_far(s))]
        if s % cfg.checkpoint_every == 0 or s == total:
            if ctx.is_main:
                # Metrics first, then the checkpoint: a crash in between leaves metrics past
                # the checkpoint, which the resume truncates (never a gap or a duplicate).
                store.add_metrics(run_id, pending)
                store.add_diagnostics(run_id, pending_diag)
                checkpoint(s)
            saved["at"] = s
            pending, pending_diag = [], []
        bar.update(1)
        bar.set_postfix(loss=f"{stats.loss:.4f}", refresh=False)
        if plain_every and (s % plain_every == 0 or s == total):
            print(f"{run_id}: step {s}/{total} loss {stats.loss:.4f} ({time.monotonic() - t_start:.0f} s)", flush=True)

    def diverged(stats: StepStats) -> None:
        _diverged(store if ctx.is_main else None, run_id, stats.step, stats.loss, stats.grad_norm, opt, ckpt_path)

    try:
        fit_steps(net, opt, sched,
                  lambda step: data.train_batch(cfg.schedule.batch_size, cfg.seed, step, rank=ctx.rank, world=ctx.world),
                  range(done, total), device=device, bf16=cfg.bf16, grad_clip=cfg.schedule.grad_clip,
                  reduce=lambda t: dist.all_reduce_(t, ctx) / ctx.world, before_step=before_step,
                  after_backward=after_backward, after_step=after_step, on_diverged=diverged)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (the CLI turns it into this): say so in the store
        if ctx.is_main:
            store.mark_interrupted(run_id, f"{INTERRUPTED} {saved['step']} of {total}; the last checkpoint "
                                           f"is step {saved['at']}, and the same command resumes from it")
        raise
    finally:
        bar.close()

    controller.finalize()  # weights *= final mask: the zero structure is now the N:M pattern
    final = _eval_rows(total, model, data, device, cfg.bf16, splits=("val", "test"))
    # the run's headline number is the task metric on the VALIDATION split (picks are made on
    # it); the test split's metrics are stored beside it and never used to choose
    acc = dict((k, v) for _, k, v in final)[f"val_{metric.name}"]
    if ctx.is_main:
        store.add_metrics(run_id, final + [(total, "train_flops", sum(flops.values()))])
        store.set_layers(run_id, {n: (str(p), tuple(s), r) for n, (p, s, r) in layer_info.items()})
        atomic_save(_plain_state_dict(model, cfg), run_dir / FINAL_MODEL_NAME)
        store.finish_run(run_id, final_step=total, final_accuracy=acc, train_flops=flops)
    dist.barrier(ctx)
    return RunSummary(run_id, acc, layer_info, ckpt_path, cfg.model.name, run_dir, total, flops, model)


def gemm_layers(model: torch.nn.Module, example: torch.Tensor, batch: int) -> dict[str, tuple]:
    """Every weight GEMM of ``model`` -> (shape, role, rows per step), for ``flops.py``.

    Rows are measured, not assumed: one forward pass of ``example`` (a single example, batch 1,
    eval mode: no dropout, so no RNG is drawn) with hooks on every weight layer of
    ``sparsify.weight_params``, scaled by ``batch``. Linear / Conv1D: the input's rows (tokens);
    conv: batch x output pixels (the im2col GEMM); MultiheadAttention: query rows for Q and the
    output projection (which it applies without calling ``out_proj``), key rows for K, value rows
    for V (packed ``in_proj_weight``: their mean, as its (3E, E) shape spans all three). Gradients
    stay enabled so that ``nn.TransformerEncoderLayer`` takes its module-by-module path, not the
    fused inference kernel that calls no hook. A layer called twice (weight tying, a shared
    block) counts both calls; one never called counts 0.
    Attention score/AV matmuls (activation x activation, never weight-sparse) are not weight
    GEMMs: ``activation_matmuls`` counts them."""
    from pgf_sim.train.sparsify import infer_roles, weight_params

    params = weight_params(model)
    rows = dict.fromkeys(params, 0)
    by_module: dict[int, list[tuple[str, str]]] = {}
    for name, (module, param, _) in params.items():
        by_module.setdefault(id(module), []).append((name, param))

    def lead(t: torch.Tensor) -> int:  # rows of a (..., features) activation
        return t.numel() // t.shape[-1] if t.dim() else 0

    def hook(module, args, kwargs, output) -> None:
        if isinstance(module, torch.nn.MultiheadAttention):
            q, k, v = (list(args) + [kwargs.get(key) for key in ("query", "key", "value")[len(args):]])[:3]
            per = {"in_proj_weight": (lead(q) + lead(k) + lead(v)) // 3, "q_proj_weight": lead(q),
                   "k_proj_weight": lead(k), "v_proj_weight": lead(v)}
            for name, param in by_module[id(module)]:
                rows[name] += per[param]
            for name, _ in by_module.get(id(module.out_proj), ()):
                rows[name] += lead(q)
            return
        (name, _), = by_module[id(module)]
        if isinstance(module, torch.nn.modules.conv._ConvNd):  # im2col rows: output pixels
            rows[name] += output.numel() // output.shape[-module.weight.dim() + 1]  # / output channels
        else:
            rows[name] += lead(args[0] if args else next(iter(kwargs.values())))

    mods = {id(m): m for m, _, _ in params.values()}
    mods.update({id(m): m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)})
    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in mods.values()]
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            model(example[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    roles = infer_roles(model)
    return {name: (tuple(getattr(module, param).shape), roles[name], batch * rows[name])
            for name, (module, param, _) in params.items()}


def run_identity(config: dict[str, Any], world_size: int) -> dict[str, Any]:
    """The stored identity of a run: its experiment config, plus ``world_size`` when several
    processes train it (DDP reduces gradients in another order, so results differ in the last
    bits, and a torchrun rerun must not be answered with the single-process result)."""
    return dict(config) if world_size == 1 else {**config, "world_size": world_size}


def _experiment_part(identity: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(the experiment config as stored, JSON-normalised; the world size) of a run identity."""
    config = json.loads(json.dumps(identity, sort_keys=True))
    return config, config.pop("world_size", 1)


def _config_differs(run_id: str, stored: dict[str, Any], identity: dict[str, Any]) -> str:
    (old, old_world), (new, world) = _experiment_part(stored), _experiment_part(identity)
    if old == new:
        return (f"run {run_id!r} already exists, trained by {old_world} process(es); this is {world}: "
                "choose another --run-id, or omit it (the default run id includes the world size)")
    return f"run {run_id!r} already exists with a different config; choose another --run-id"


def _note_other_world_sizes(store: ResultStore, name: str, run_id: str, identity: dict[str, Any]) -> None:
    """Say so when the same experiment was already run with another number of processes."""
    import warnings

    mine, world = _experiment_part(identity)
    for run in store.list_runs(name=name):
        config, other = _experiment_part(run.config)
        if run.run_id != run_id and config == mine and other != world:
            warnings.warn(f"run {run_id!r} ({world} process(es)) is a new run: the same experiment was run "
                          f"by {other} process(es) as {run.run_id!r} ({run.status}); results of "
                          "different world sizes are kept apart", UserWarning, stacklevel=3)


def _diverged(store: ResultStore | None, run_id: str, step: int, loss: float, grad_norm: float,
              opt: torch.optim.Optimizer, ckpt_path: Path) -> None:
    kept = load_checkpoint(ckpt_path)["step"] if ckpt_path.is_file() else None
    msg = (f"run {run_id!r}: training diverged at step {step + 1} (loss={loss}, grad norm={grad_norm}, "
           f"lr={opt.param_groups[0]['lr']:.3g}); stopped without saving the bad state. "
           f"The last good checkpoint ({ckpt_path}, step {kept}) is kept; "
           "lower schedule.lr or set schedule.grad_clip, then run again with a new run id.")
    if store is not None:
        store.fail_run(run_id, msg)
    raise TrainingDiverged(msg)


def _diagnostic_layers(model: torch.nn.Module, controller: Any, cfg: ExperimentConfig) -> dict[str, tuple[torch.nn.Parameter, NM]]:
    """Layers to measure -> (trainable weight, target pattern). For the dense baseline: the layers
    the same recipe settings would sparsify at ``cfg.recipe.pattern``."""
    from pgf_sim.sparsity.schedules import layer_target
    from pgf_sim.train.sparsify import infer_roles

    out = {}
    roles = infer_roles(model)
    probe = cfg.recipe if cfg.recipe.spec.sparse else replace(cfg.recipe, name="ste")
    for name, role in roles.items():
        target = layer_target(probe, name, role)
        if target is not None:
            out[name] = (_trainable_weight(model.get_submodule(name)), target)
    return out


def _trainable_weight(module: torch.nn.Module) -> torch.nn.Parameter:
    param = getattr(module, "weight")
    if isinstance(param, torch.nn.Parameter):
        return param
    # torch.nn.utils.parametrize keeps the trainable tensor as parametrizations.weight.original
    return module.parametrizations.weight.original


def _grads_and_masks(layers: dict[str, tuple[torch.nn.Parameter, NM]], controller: Any,
                     cfg: ExperimentConfig) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    from pgf_sim.train.masks import nm_mask

    # Sparse recipes: the mask the step actually used. Dense baseline: the mask the target
    # pattern would select from the current weights (the controller's masks are all ones there).
    masks = controller.masks() if cfg.recipe.spec.sparse else {}
    grads, out_masks = {}, {}
    for name, (w, target) in layers.items():
        if w.grad is None:
            continue
        grads[name] = w.grad
        out_masks[name] = masks[name] if name in masks else nm_mask(w.detach(), target)
    return grads, out_masks
