"""Apply a recipe to any ``nn.Module`` without touching its forward: ``sparsify(model, cfg, total_steps)``.

Mechanism: ``torch.nn.utils.parametrize``. The selected weight ``W`` stays the trainable
Parameter (moved to ``<module>.parametrizations.<param>.original``) and every read of
``module.weight`` returns the recipe's effective weight. Attribute-level substitution (rather
than forward hooks) also covers code that reads a weight without calling the module's forward:
``nn.MultiheadAttention`` reads ``out_proj.weight`` and its packed ``in_proj_weight`` directly, and
``nn.TransformerEncoderLayer``'s inference fast path reads ``linear1.weight``.

Clock and masks. The controller's step advances by itself: ``sparsify`` registers a global
optimizer step post-hook (``torch.optim.optimizer.register_optimizer_step_post_hook``; NVIDIA's
ASP likewise hooks the optimizer step), and every ``step()`` of an optimizer that updates a
sparsified weight moves the schedule to the next step. A user loop with only ``optimizer.step()``
therefore gets the decayed beta and the moving SDGF frames; ``set_step`` stays for explicit
control (the trainer calls it every step, which the hook makes a no-op). Each clock move marks
the masks stale; the first read of any sparsified weight afterwards recomputes every mask, in
one batched pass, from the weights as the optimizer left them. So a mask is recomputed exactly
once per training step whatever the optimizer (plain, foreach or fused kernels, which update
weights without bumping the tensor version counter) and however often the weight is read
(gradient accumulation, weight tying, diagnostics). A weight written outside an optimizer step
(``p.data.copy_(...)``) is seen at the next ``set_step`` or optimizer step.

``finalize()`` writes W*m into the weights and removes the parametrizations, leaving a plain
model whose zero structure is the N:M pattern; it warns when called before the schedule's end.
"""
from __future__ import annotations

import logging
import warnings
import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..core.errors import ConfigError, ShapeError
from ..core.pattern import DENSE, NM
from ..sparsity.roles import role_of
from ..sparsity.schedules import (RecipeConfig, beta_at, layer_pattern_glob, layer_target, pattern_at,
                                  patterns_used, phase_at)
from .masks import check_divisible, nm_mask, nm_masks
from .recipes import BEHAVIOURS, StepState

log = logging.getLogger(__name__)

__all__ = ["sparsify", "select_layers", "SparseController", "LayerInfo", "infer_roles"]


class LayerInfo(NamedTuple):
    pattern: NM  # current pattern (DENSE in the dense phase / dense recipe)
    shape: tuple[int, ...]
    role: str


@dataclass
class SelectedLayer:
    """A weight layer a recipe sparsifies, with its target pattern (``select_layers``)."""

    name: str
    module: nn.Module
    param: str
    role: str
    target: NM
    reduction_dim: int
    shape: tuple[int, ...]


@dataclass
class _Layer(SelectedLayer):
    """A selected layer and its state at the current step."""

    pattern: NM = DENSE
    beta: float = 1.0
    phase: str = "dense"
    mask: torch.Tensor | None = None  # mask of ``pattern`` for the current step (set by the controller)
    mask_pattern: NM | None = None  # the pattern ``mask`` was chosen for (fixed-mask recipes)
    prev_mask: torch.Tensor | None = field(default=None, repr=False)

    def weight(self) -> torch.Tensor:
        """The trainable dense weight W (the Parameter the optimizer updates)."""
        if parametrize.is_parametrized(self.module, self.param):
            return getattr(self.module.parametrizations, self.param).original
        return getattr(self.module, self.param)


def _traced(weight: torch.Tensor) -> bool:
    """True while a tracer runs the forward on fake/functional tensors: masks computed then must
    not enter the controller's cache (a fake mask would break every later real forward)."""
    from torch._subclasses.fake_tensor import is_fake

    return torch.compiler.is_compiling() or is_fake(weight)


class _RecipeWeight(nn.Module):
    """The parametrization: W -> the recipe's effective weight for the current step."""

    def __init__(self, layer: _Layer, cfg: RecipeConfig, controller: "SparseController") -> None:
        super().__init__()
        self._layer = [layer]  # lists hide these from nn.Module attribute registration
        self._controller = [controller]
        self._cfg = cfg
        self._behaviour = BEHAVIOURS.get(cfg.name)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        layer = self._layer[0]
        if layer.phase == "dense":
            return weight
        if _traced(weight):  # torch.export / make_fx / torch.compile: the mask goes into the graph
            mask = nm_mask(weight, layer.pattern, name=layer.name, reduction_dim=layer.reduction_dim)
        else:
            self._controller[0].refresh_masks()  # no-op unless the clock moved since the last refresh
            mask = layer.mask
        return self._behaviour(weight, StepState(mask, layer.beta, layer.phase), self._cfg)

    def nm_deploy(self, weight: torch.Tensor) -> tuple[torch.Tensor, NM]:
        """(the weight as deployed at this step, its N:M pattern): W*m with the current mask (DENSE
        and W in the dense phase). Read by ``pgf_sim.sim.capture`` to capture a live sparse model."""
        layer = self._layer[0]
        if layer.phase == "dense" or layer.pattern.is_dense:
            return weight.detach(), DENSE
        self._controller[0].refresh_masks()
        return weight.detach().masked_fill(~layer.mask, 0.0), layer.pattern


class SparseController:
    """Owns the schedule position and masks of a sparsified model. Weights live in the model."""

    def __init__(self, model: nn.Module, cfg: RecipeConfig, total_steps: int,
                 layers: list[_Layer], skipped: list[tuple[str, tuple[int, ...], str]]) -> None:
        self.model = model
        self.cfg = cfg
        self.total_steps = int(total_steps)
        self.skipped = skipped  # (name, shape, reason) of layers left dense by skip_indivisible
        self._layers = {layer.name: layer for layer in layers}
        self.step = -1
        self.finalized = False
        self._stale = True  # masks must be recomputed before the next read of a sparsified weight
        self._hooked = False  # the last clock move came from the optimizer hook
        self._hook = None
        self.set_step(0)
        if cfg.spec.sparse and layers:
            self._hook_optimizers()

    # ------------------------------------------------------------------ schedule
    def set_step(self, step: int) -> None:
        """Move to training step ``step`` (before the forward of that step). Optimizer steps advance
        the clock by themselves; an explicit call to the step the optimizer hook just moved to is a
        no-op, any other call also recomputes the masks from the current weights."""
        if self.finalized:
            raise ConfigError("this sparse model was finalized; set_step is no longer meaningful")
        if self._hooked and step == self.step:
            self._hooked = False
            return
        self._move(step)

    def _move(self, step: int) -> None:
        phase = phase_at(self.cfg, step, self.total_steps)
        beta = beta_at(self.cfg, step, self.total_steps)
        for layer in self._layers.values():
            layer.phase = phase
            layer.beta = beta
            layer.pattern = pattern_at(self.cfg, step, self.total_steps, layer.target)
        self.step = step
        self._stale = True
        self._hooked = False

    def _hook_optimizers(self) -> None:
        """Advance the clock after every step of an optimizer that updates a sparsified weight.

        A global hook, so that an optimizer built after ``sparsify`` (the usual order) needs no
        registration the user could forget. It holds the controller weakly and is removed by
        ``finalize`` or when the controller is garbage-collected."""
        ref = weakref.ref(self)
        ids = frozenset(id(layer.weight()) for layer in self._layers.values())

        def hook(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
            ctl = ref()
            if ctl is None or ctl.finalized:
                return
            if any(id(p) in ids for group in optimizer.param_groups for p in group["params"]):
                ctl._move(ctl.step + 1)
                ctl._hooked = True

        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._hook = register_optimizer_step_post_hook(hook)
        weakref.finalize(self, self._hook.remove)

    def refresh_masks(self) -> None:
        """Recompute every mask from the current weights if the clock moved since the last refresh:
        layers sharing a pattern and device in one batched pass."""
        if not self._stale:
            return
        self._stale = False
        if not self.cfg.spec.sparse or self.phase == "dense":
            return
        groups: dict[tuple, list[tuple[_Layer, torch.Tensor]]] = {}
        for layer in self._layers.values():
            w = layer.weight()
            groups.setdefault((layer.pattern, w.device), []).append((layer, w))
        if self.cfg.spec.fixed_mask:
            self._refresh_fixed(groups)
            return
        for (pattern, _), items in groups.items():
            with torch.no_grad():
                masks = nm_masks([w for _, w in items], pattern, names=[l.name for l, _ in items],
                                 reduction_dims=[l.reduction_dim for l, _ in items])
            for (layer, _), mask in zip(items, masks):
                layer.mask = mask

    def _refresh_fixed(self, groups: dict[tuple, list[tuple[_Layer, torch.Tensor]]]) -> None:
        """Fixed-mask recipes (one-shot, gmp): a layer keeps its mask while its pattern holds; when
        the pattern changes (the prune of one-shot, each kept-N step of gmp) the new mask keeps the
        largest |W| among the weights the old mask kept (pruned W are 0, and the AND guards an
        exactly-zero kept weight). Then pruned W are set to 0: they get no gradient, but AdamW's
        momentum from before the prune would otherwise move them."""
        with torch.no_grad():
            for (pattern, _), items in groups.items():
                todo = [(l, w) for l, w in items if l.mask_pattern != pattern or l.mask is None]
                if todo:
                    masks = nm_masks([w for _, w in todo], pattern, names=[l.name for l, _ in todo],
                                     reduction_dims=[l.reduction_dim for l, _ in todo])
                    for (layer, _), mask in zip(todo, masks):
                        if layer.mask is not None and layer.mask_pattern is not None:
                            mask = mask & layer.mask
                        layer.mask, layer.mask_pattern = mask, pattern
                for layer, w in items:
                    w.masked_fill_(~layer.mask, 0.0)

    @property
    def beta(self) -> float:
        return beta_at(self.cfg, max(self.step, 0), self.total_steps)

    @property
    def phase(self) -> str:
        return phase_at(self.cfg, max(self.step, 0), self.total_steps)

    # ------------------------------------------------------------------ views
    def layer_names(self) -> list[str]:
        return list(self._layers)

    def layer_info(self) -> dict[str, LayerInfo]:
        return {n: LayerInfo(l.pattern, l.shape, l.role) for n, l in self._layers.items()}

    def target_patterns(self) -> dict[str, NM]:
        return {n: l.target for n, l in self._layers.items()}

    def masks(self) -> dict[str, torch.Tensor]:
        """Current bool masks (all True in the dense phase / dense recipe), one per tracked layer."""
        out = {}
        for name, layer in self._layers.items():
            if self.finalized:
                out[name] = layer.mask
            elif layer.pattern.is_dense:
                out[name] = torch.ones(layer.shape, dtype=torch.bool, device=layer.weight().device)
            else:
                self.refresh_masks()
                out[name] = layer.mask
        return out

    def dense_weights(self) -> dict[str, torch.Tensor]:
        """The trainable Parameters W (their ``.grad`` is the gradient each recipe delivers)."""
        return {n: l.weight() for n, l in self._layers.items()}

    def effective_weights(self) -> dict[str, torch.Tensor]:
        """Detached forward weights W_eff of the current step."""
        with torch.no_grad():
            return {n: getattr(l.module, l.param).detach() for n, l in self._layers.items()}

    def flip_counts(self) -> dict[str, int]:
        """Mask positions flipped since the previous call (0 on the first call), per layer."""
        out = {}
        for name, mask in self.masks().items():
            layer = self._layers[name]
            prev = layer.prev_mask
            out[name] = 0 if prev is None or prev.shape != mask.shape else int((prev.to(mask.device) != mask).sum())
            layer.prev_mask = mask.clone()
        return out

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        """Schedule position and current masks; plain types + tensors (``torch.load(weights_only=True)``)."""
        return {
            "recipe": self.cfg.name,
            "total_steps": self.total_steps,
            "step": self.step,
            "finalized": self.finalized,
            "layers": {n: {"pattern": str(l.pattern), "target": str(l.target), "mask": self.masks()[n].cpu()}
                       for n, l in self._layers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        if state["recipe"] != self.cfg.name or int(state["total_steps"]) != self.total_steps:
            raise ConfigError(
                f"controller state is for recipe {state['recipe']!r} over {state['total_steps']} steps, "
                f"this run is {self.cfg.name!r} over {self.total_steps} steps")
        if set(state["layers"]) != set(self._layers):
            raise ConfigError(f"controller state layers {sorted(state['layers'])} differ from {sorted(self._layers)}")
        if state["finalized"]:
            raise ConfigError("controller state comes from a finalized model; load its weights without sparsify")
        self.set_step(int(state["step"]))
        for name, entry in state["layers"].items():
            layer = self._layers[name]
            if str(layer.pattern) != entry["pattern"]:
                raise ConfigError(f"layer {name!r}: saved pattern {entry['pattern']} != scheduled {layer.pattern}")
            # The mask is a pure function of the weights; keep the saved one as the flip-rate
            # reference so the first flip count after resume compares with the saved step.
            layer.prev_mask = entry["mask"].to(layer.weight().device)
            if self.cfg.spec.fixed_mask and not layer.pattern.is_dense:  # a fixed mask is state, not a function
                layer.mask, layer.mask_pattern = layer.prev_mask.clone(), layer.pattern

    # ------------------------------------------------------------------ end of training
    def finalize(self, *, early: bool = False) -> dict[str, torch.Tensor]:
        """W <- W * m (target pattern, mask from the current weights), remove the parametrizations;
        returns the final masks.

        Before the schedule's end (``step < total_steps``) this prunes in one shot what the recipe
        would have removed gradually, which costs accuracy (MDGF at beta ~ 1 loses most of it), so
        it warns (``UserWarning``). It warns rather than raises because pruning early is sometimes
        meant (one-shot magnitude pruning, early stopping); ``early=True`` says so and silences it.
        """
        if self.finalized:
            return {n: l.mask for n, l in self._layers.items()}
        if self.cfg.spec.sparse and self._layers and self.step < self.total_steps and not early:
            warnings.warn(
                f"finalize() at step {self.step} of {self.total_steps} ({self.phase} phase, "
                f"beta={self.beta:.3g}): the {self.cfg.name} schedule has not reached its end, so the "
                "target masks are applied in one shot; train to the end (optimizer steps advance the "
                "clock), or pass finalize(early=True) if one-shot pruning is intended",
                UserWarning, stacklevel=2)
        for layer in self._layers.values():
            sparse = self.cfg.spec.sparse
            layer.pattern = layer.target if sparse else DENSE
            w = layer.weight()
            if sparse:
                with torch.no_grad():
                    mask = nm_mask(w, layer.pattern, name=layer.name, reduction_dim=layer.reduction_dim)
                    if self.cfg.spec.fixed_mask and layer.mask is not None and layer.mask_pattern is not None:
                        mask = layer.mask if layer.mask_pattern == layer.pattern else mask & layer.mask
            else:
                mask = torch.ones(layer.shape, dtype=torch.bool, device=w.device)
            if parametrize.is_parametrized(layer.module, layer.param):
                parametrize.remove_parametrizations(layer.module, layer.param, leave_parametrized=False)
            with torch.no_grad():  # masked_fill writes +0.0 (mul_ would leave -0.0 for negative W)
                getattr(layer.module, layer.param).masked_fill_(~mask, 0.0)
            layer.mask, layer.phase, layer.beta = mask, "finetune", 0.0
        self.finalized = True
        if self._hook is not None:
            self._hook.remove()
        return {n: l.mask for n, l in self._layers.items()}


def select_layers(model: nn.Module, cfg: RecipeConfig) -> tuple[list[SelectedLayer], list[tuple[str, tuple[int, ...], str]]]:
    """The layers ``cfg`` selects (``layers``/``exclude`` globs, ``roles``, ``qkv_pattern``,
    ``layer_patterns``) with their targets, each checked against every pattern its schedule
    meets; and the layers ``skip_indivisible`` leaves dense, as (name, shape, reason). An
    indivisible layer is a ``ShapeError`` without ``skip_indivisible``; a ``layer_patterns`` glob
    that matches no weight layer is a ``ConfigError``."""
    roles = infer_roles(model)
    params = weight_params(model)
    unmatched = [g for g in cfg.layer_patterns if not any(layer_pattern_glob(cfg, n) == g for n in params)]
    if unmatched:  # a typo would silently train the layer at the shared pattern
        raise ConfigError(f"layer_patterns glob(s) {unmatched} match no weight layer (an earlier glob may "
                          f"take every match); weight layers: {', '.join(params)}")
    layers, skipped = [], []
    for name, (module, param, reduction_dim) in params.items():
        target = layer_target(cfg, name, roles[name])
        if target is None:
            continue
        shape = tuple(getattr(module, param).shape)
        try:
            for pattern in patterns_used(cfg, target):
                check_divisible(shape, pattern, name=name, reduction_dim=reduction_dim)
        except ShapeError as exc:
            if cfg.spec.moving_pattern and shape[reduction_dim] % target.m == 0:
                exc = ShapeError(f"{exc} (an SDGF {cfg.sdgf_schedule} frame of target {target} needs it)")
            glob = layer_pattern_glob(cfg, name)
            if glob is not None:
                exc = ShapeError(f"{exc}; the target {target} comes from layer_patterns[{glob!r}]")
            if not cfg.skip_indivisible:
                raise exc from None
            skipped.append((name, shape, str(exc)))
            continue
        layers.append(SelectedLayer(name, module, param, roles[name], target, reduction_dim, shape))
    if not layers and cfg.spec.sparse:
        raise ConfigError(
            f"recipe {cfg.name!r} selected no layer (layers={list(cfg.layers)}, roles={list(cfg.roles)}); "
            f"roles found: {sorted(set(roles.values()))}")
    return layers, skipped


def sparsify(model: nn.Module, cfg: RecipeConfig, total_steps: int) -> SparseController:
    """Select layers (``select_layers``), check shapes against every pattern they will meet,
    install the recipe, and return the controller at step 0."""
    selected, skipped = select_layers(model, cfg)
    for name, shape, reason in skipped:
        log.warning("sparsify: layer %s %s left dense: %s", name, shape, reason)
    layers = []
    for sel in selected:
        if parametrize.is_parametrized(sel.module, sel.param):
            raise ConfigError(f"layer {sel.name!r} is already parametrized (sparsified twice?); "
                              "sparsify a fresh model, or finalize() the previous controller first")
        layers.append(_Layer(**vars(sel)))
    controller = SparseController(model, cfg, total_steps, layers, skipped)
    if cfg.spec.sparse:
        for layer in layers:
            parametrize.register_parametrization(layer.module, layer.param, _RecipeWeight(layer, cfg, controller),
                                                 unsafe=True)
    return controller


# ------------------------------------------------------------------------------ layers and roles
# The role rules and vocabulary are torch-free (pgf_sim.sparsity.roles); this walks the modules.
def weight_params(model: nn.Module) -> dict[str, tuple[nn.Module, str, int]]:
    """Every GEMM-like weight: name -> (module, parameter name, reduction dim).

    name = the module name for a ``weight``, ``<module>.<param>`` for MultiheadAttention's
    packed ``in_proj_weight`` (a Parameter, not a Linear: rows are q|k|v, the reduction is
    along dim 1 like a Linear). Transposed-convolution and embedding tables are not GEMM
    weights with an input-feature reduction and are not listed.
    """
    out: dict[str, tuple[nn.Module, str, int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            out[name] = (module, "weight", 1)
        elif type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
            out[name] = (module, "weight", 0)  # Hugging Face GPT-2 Conv1D stores (in, out)
        elif isinstance(module, nn.MultiheadAttention):
            for param in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
                if getattr(module, param, None) is not None:
                    out[f"{name}.{param}" if name else param] = (module, param, 1)
    return out


def infer_roles(model: nn.Module) -> dict[str, str]:
    """Role of every GEMM-like weight (keys as ``weight_params``): fc1, fc2, q, k, v, qkv, proj,
    patch_embed, head or other (no rule matched; select those with ``roles: ['*']`` or globs)."""
    return {name: role_of(name) for name in weight_params(model)}
