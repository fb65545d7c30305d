"""Recipe configuration and the pure schedules behind it: phases, MDGF's beta(t), SDGF's patterns.

No torch here: the simulator (``pgf_sim.sim``) and the FLOPs accounting (``flops.py``) read the
same schedule the trainer runs. Every function is a pure function of ``(cfg, step, total_steps)``.

Clock (docs/method.md, "Phases"): steps ``[0, D)`` are the dense phase, ``[D, T - F)`` the
sparse phase, ``[T - F, T)`` the fine-tune phase, with ``D = round(dense_fraction * T)`` and
``F = round(finetune_fraction * T)``. The sparse clock ``t = step - D`` starts at 0 on the first
sparse step, so beta(first sparse step) = 1. (The reference code divides the dense offset by 100
twice, so its beta clock starts almost at once; we do not copy that.)

``beta`` convention: the forward weight of every recipe is ``W * (m + beta * (1 - m))``; beta = 1
is dense (dense recipe, dense phase), beta = 0 is a binary mask (STE, SR-STE, SDGF, fine-tune).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Callable, Literal

from ..core.errors import ConfigError, UnknownNameError
from ..core.pattern import DENSE, NM
from ..core.registry import Registry
from .roles import QKV_ROLES, ROLES

Phase = Literal["dense", "sparse", "finetune"]


# --------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class RecipeSpec:
    """What a recipe does, torch-free. ``recipes.py`` supplies the autograd behaviour by name."""

    name: str
    sparse: bool  # False only for the dense baseline
    decays: bool  # MDGF: pruned weights fade out with beta(t) instead of being cut at once
    moving_pattern: bool  # SDGF: the pattern steps through frames toward the target
    default_dense_fraction: float = 0.0
    default_finetune_fraction: float = 0.0
    # Fixed-mask baselines (one-shot, gmp): pruned weights are zeroed, get no gradient and stay
    # pruned; a new mask is only ever chosen among the weights the previous mask kept.
    fixed_mask: bool = False
    gradual: bool = False  # gmp: the kept N shrinks on Zhu & Gupta's cubic (``gmp_n``)
    frozen_variance: bool = False  # STEP: Adam's second moment frozen at the end of the dense phase


RECIPES: Registry[RecipeSpec] = Registry("recipe")


def _add(spec: RecipeSpec) -> None:
    RECIPES.add(spec.name, spec)


# Default phases. STE/SR-STE/SDGF masks are binary throughout, so a fine-tune phase would change
# nothing for STE/SR-STE; SDGF gets its "target holds for the last 30%" from
# ``sdgf_frames_fraction`` (docs/method.md: frames compressed into the first 70% of the sparse
# phase beat frames spread over the whole run by ~9 points on digits). MDGF's beta never reaches
# 0 exactly with the exponential decay, so MDGF ends with 10% of binary-mask fine-tuning: the
# model is then trained with exactly the mask ``finalize()`` applies.
_add(RecipeSpec("dense", sparse=False, decays=False, moving_pattern=False))  # the baseline: W
_add(RecipeSpec("ste", sparse=True, decays=False, moving_pattern=False))  # W*m, straight-through gradient
_add(RecipeSpec("sr-ste", sparse=True, decays=False, moving_pattern=False))  # STE + lambda*(1-m)*W in the gradient
_add(RecipeSpec("mdgf", sparse=True, decays=True, moving_pattern=False,  # W*(m + beta(t)(1-m)), beta decays
                default_finetune_fraction=0.1))
_add(RecipeSpec("sdgf", sparse=True, decays=False, moving_pattern=True))  # binary mask, its N:M moves to the target
_add(RecipeSpec("mdgf+sdgf", sparse=True, decays=True, moving_pattern=True,  # beta decay on the SDGF frames (ours)
                default_finetune_fraction=0.1))
# Reviewers' baselines (docs/method.md, "Baselines"). one-shot: NVIDIA ASP's workflow in one fixed
# budget: half the steps dense, prune once by magnitude, the other half fine-tunes the fixed mask.
_add(RecipeSpec("one-shot", sparse=True, decays=False, moving_pattern=False, fixed_mask=True,
                default_dense_fraction=0.5))
# gmp: Zhu & Gupta's cubic over the SDGF window (first sdgf_frames_fraction of the sparse phase).
_add(RecipeSpec("gmp", sparse=True, decays=False, moving_pattern=False, fixed_mask=True, gradual=True))
# step: STEP (Lu et al. 2023) with a fixed switch point (10% dense precondition), then SR-STE.
_add(RecipeSpec("step", sparse=True, decays=False, moving_pattern=False, frozen_variance=True,
                default_dense_fraction=0.1))


# ---------------------------------------------------------------------------------------- decays
@dataclass(frozen=True)
class Decay:
    """beta(alpha, t) for t >= 0 sparse steps, and the alpha at which beta(t_steps) == beta_end."""

    beta: Callable[[float, int], float]
    alpha_for: Callable[[float, float], float]
    min_beta_end: float  # beta_end must be >= this (exponential never reaches 0)
    source: str


def _snap(beta: float) -> float:
    # alpha derived from "beta reaches 0 at step S" gives 1 - (1/S)*S = 1e-16, not 0, in floating
    # point; a stray 1e-16 would keep the forward dense (and the FLOPs count dense) for a step.
    return 0.0 if beta < 1e-12 else beta


DECAYS: Registry[Decay] = Registry("decay")
DECAYS.add("linear", Decay(  # docs/method.md: beta(t) = max(1 - alpha*t, 0)
    beta=lambda a, t: _snap(1.0 - a * t),
    alpha_for=lambda x, steps: (1.0 - x) / steps,
    min_beta_end=0.0, source="paper / reference code"))
DECAYS.add("exponential", Decay(  # docs/method.md: beta(t) = exp(-alpha*t), no floor
    beta=lambda a, t: math.exp(-a * t),
    alpha_for=lambda x, steps: -math.log(x) / steps,
    min_beta_end=1e-300, source="paper / reference code"))
DECAYS.add("cosine", Decay(  # OUR EXTENSION (not in the paper or its code): half cosine to 0 at t = 1/alpha
    beta=lambda a, t: _snap(0.5 * (1.0 + math.cos(math.pi * min(a * t, 1.0)))),
    alpha_for=lambda x, steps: math.acos(2.0 * x - 1.0) / math.pi / steps,
    min_beta_end=0.0, source="pgf_sim extension"))

_DEFAULT_BETA_END = {"linear": 0.0, "exponential": 0.01, "cosine": 0.0}


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class RecipeConfig:
    """One training recipe. ``None`` fields take the recipe's documented default (``resolved``).

    - ``name``: a registered recipe (``RECIPES.names()``).
    - ``pattern``: target N:M of the selected layers; ``qkv_pattern``: target of Q/K/V layers
      (when set, Q/K/V/packed-qkv layers are sparsified with it even if ``roles`` omits them).
    - ``dense_fraction`` / ``finetune_fraction``: fractions of all steps (see module docstring).
    - MDGF decay: ``decay`` (linear | exponential | cosine), and either ``alpha`` per step
      (transfers badly across run lengths) or "beta reaches ``beta_end`` at fraction
      ``beta_end_fraction`` of the sparse phase" (default: linear/cosine 0 at 0.7,
      exponential 0.01 at 0.7).
    - ``grad``: MDGF gradient mode. ``ste`` (default, the authors' code): every weight gets the
      full dL/dW_eff. ``scaled``: plain autograd of W*(m + beta(1-m)), pruned gradients * beta.
    - SDGF: ``sdgf_schedule`` (stepwise | geometric | densify); the frames fill the first
      ``sdgf_frames_fraction`` of the sparse phase, the target pattern holds for the rest.
      GMP's cubic ramp uses the same window (the fixed-mask twin of SDGF).
      ``sdgf_target``: ``in_window`` (default, the paper's frame count): the target is the
      window's last frame; ``after_window`` (the authors' code): the denser frames share the
      window and the target holds only from its end (with ``sdgf_frames_fraction: 1.0``, from
      the end of the sparse phase). ``frame_clock``: ``step`` (default) or ``epoch`` (the
      authors' code: frames change on epoch boundaries only; the window is counted in whole
      epochs of ``steps_per_epoch`` steps, which the trainer fills from the data and batch size).
    - ``srste_lambda``: SR-STE decay strength (reference default 2e-4).
    - Layers: weight layers whose name matches a glob of ``layers`` and none of ``exclude``, and
      whose role is in ``roles`` ("*" = every role).
    - ``skip_indivisible``: skip (and report) layers whose reduction size is not divisible by a
      pattern's M instead of raising ``ShapeError``.
    - ``layer_patterns``: per-layer targets, module-name glob -> N:M (YAML: ``{"blocks.0.mlp.fc1":
      "2:4", "*.fc2": "1:8"}``). For a layer kept by ``layers``/``exclude``, the first matching glob
      (in the mapping's order) sets its target, over ``qkv_pattern`` and ``pattern``, and selects
      the layer even if ``roles`` omits its role; ``"dense"`` (1:1) leaves the matched layer dense.
      Every schedule runs per layer toward that layer's own target (SDGF: each layer's own frames,
      all sharing the same window). A glob that matches no weight layer is an error (sparsify).
    """

    name: str = "sr-ste"
    pattern: NM = NM(2, 4)
    qkv_pattern: NM | None = None
    dense_fraction: float | None = None
    finetune_fraction: float | None = None
    decay: str = "exponential"
    alpha: float | None = None
    beta_end: float | None = None
    beta_end_fraction: float = 0.7
    grad: Literal["ste", "scaled"] = "ste"
    sdgf_schedule: Literal["stepwise", "geometric", "densify"] = "stepwise"
    sdgf_frames_fraction: float = 0.7
    sdgf_target: Literal["in_window", "after_window"] = "in_window"
    frame_clock: Literal["step", "epoch"] = "step"
    steps_per_epoch: int | None = None
    srste_lambda: float = 2e-4
    layers: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    roles: tuple[str, ...] = ("fc1", "fc2")
    skip_indivisible: bool = False
    layer_patterns: dict[str, NM] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = self.spec  # raises on an unknown name
        # Python callers may pass "1:16": parse here, not at first use deep inside training
        object.__setattr__(self, "pattern", _field_pattern(self.pattern, "recipe.pattern"))
        if self.qkv_pattern is not None:
            object.__setattr__(self, "qkv_pattern", _field_pattern(self.qkv_pattern, "recipe.qkv_pattern"))
        self._check_layer_patterns()
        if self.decay not in DECAYS:
            raise ConfigError(f"unknown decay {self.decay!r}; valid: {', '.join(DECAYS.names())}")
        for field in ("dense_fraction", "finetune_fraction"):
            value = getattr(self, field)
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError(f"{field} must be in [0, 1), got {value}")
        if spec.frozen_variance and self.dense_fraction_ <= 0.0:
            raise ConfigError(f"recipe {self.name!r} freezes Adam's second moment at the end of the dense "
                              f"phase, so dense_fraction must be > 0, got {self.dense_fraction_}")
        if self.dense_fraction_ + self.finetune_fraction_ >= 1.0 and spec.sparse:
            raise ConfigError(
                f"dense_fraction ({self.dense_fraction_}) + finetune_fraction ({self.finetune_fraction_}) "
                "must be < 1 so that a sparse phase remains")
        for field in ("beta_end_fraction", "sdgf_frames_fraction"):
            if not 0.0 < getattr(self, field) <= 1.0:
                raise ConfigError(f"{field} must be in (0, 1], got {getattr(self, field)}")
        if self.alpha is not None and (self.alpha <= 0 or self.beta_end is not None):
            raise ConfigError("give either alpha > 0 (per step) or beta_end (+ beta_end_fraction), not both")
        end = self.beta_end_
        if not DECAYS.get(self.decay).min_beta_end <= end < 1.0:
            raise ConfigError(f"beta_end={end} is out of range for the {self.decay} decay "
                              f"(exponential never reaches 0; use 0 < beta_end < 1)")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        if self.srste_lambda < 0:
            raise ConfigError(f"srste_lambda must be >= 0, got {self.srste_lambda}")
        bad = [r for r in self.roles if r != "*" and r not in ROLES]
        if bad:
            raise ConfigError(f"unknown role(s) {bad}; valid: *, {', '.join(ROLES)}")

    # Fields added after runs were stored: left out of the config dict (and so of run ids) while
    # at their default, so the runs of earlier sweeps keep their identity (core.config.to_dict).
    OMIT_AT_DEFAULT = ("sdgf_target", "frame_clock", "steps_per_epoch")

    def __hash__(self) -> int:  # frozen, but layer_patterns is a dict: hash its items in order
        return hash(tuple((f, tuple(v.items()) if f == "layer_patterns" else v)
                          for f, v in self.__dict__.items()))

    def _check_layer_patterns(self) -> None:
        if not isinstance(self.layer_patterns, dict):
            raise ConfigError(f"layer_patterns must map module-name globs to N:M patterns, got {self.layer_patterns!r}")
        parsed = {}
        for glob, pat in self.layer_patterns.items():
            if not isinstance(glob, str) or not glob:
                raise ConfigError(f"layer_patterns: key {glob!r} must be a non-empty module-name glob")
            parsed[glob] = _field_pattern(pat, f"layer_patterns[{glob!r}]")
        object.__setattr__(self, "layer_patterns", parsed)  # Python callers may pass "2:4" strings

    @property
    def spec(self) -> RecipeSpec:
        try:
            return RECIPES.get(self.name)
        except UnknownNameError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def dense_fraction_(self) -> float:
        return self.spec.default_dense_fraction if self.dense_fraction is None else self.dense_fraction

    @property
    def finetune_fraction_(self) -> float:
        return self.spec.default_finetune_fraction if self.finetune_fraction is None else self.finetune_fraction

    @property
    def beta_end_(self) -> float:
        return _DEFAULT_BETA_END[self.decay] if self.beta_end is None else self.beta_end


def _field_pattern(value: object, field_name: str) -> NM:
    """``value`` (an ``NM``, ``"2:4"``, ``"dense"`` or ``(2, 4)``) as an ``NM``; errors name the field."""
    try:
        return NM.parse(value)
    except (ConfigError, ValueError, TypeError) as exc:
        raise ConfigError(f"{field_name}: {value!r} is not an N:M pattern ({exc})") from None


# ----------------------------------------------------------------------------------------- clock
@dataclass(frozen=True)
class Phases:
    """Step boundaries: dense ``[0, dense_end)``, sparse ``[dense_end, sparse_end)``, fine-tune after."""

    total_steps: int
    dense_end: int
    sparse_end: int

    @property
    def sparse_steps(self) -> int:
        return self.sparse_end - self.dense_end


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def phases(cfg: RecipeConfig, total_steps: int) -> Phases:
    if total_steps < 1:
        raise ConfigError(f"total_steps must be >= 1, got {total_steps}")
    if not cfg.spec.sparse:
        return Phases(total_steps, total_steps, total_steps)
    dense_end = _round(cfg.dense_fraction_ * total_steps)
    sparse_end = total_steps - _round(cfg.finetune_fraction_ * total_steps)
    sparse_end = max(sparse_end, dense_end + 1)  # at least one sparse step on tiny runs
    return Phases(total_steps, dense_end, min(sparse_end, total_steps))


def phase_at(cfg: RecipeConfig, step: int, total_steps: int) -> Phase:
    p = phases(cfg, total_steps)
    if step < 0:
        raise ConfigError(f"step must be >= 0, got {step}")
    if step < p.dense_end:
        return "dense"
    return "sparse" if step < p.sparse_end else "finetune"


def alpha_of(cfg: RecipeConfig, total_steps: int) -> float:
    """Per-step alpha: given, or derived so beta(F * sparse_steps) == beta_end."""
    if cfg.alpha is not None:
        return cfg.alpha
    steps = max(cfg.beta_end_fraction * phases(cfg, total_steps).sparse_steps, 1.0)
    return DECAYS.get(cfg.decay).alpha_for(cfg.beta_end_, steps)


def beta_at(cfg: RecipeConfig, step: int, total_steps: int) -> float:
    """beta in the forward weight W*(m + beta(1-m)): 1 dense, 0 binary mask, decay for MDGF."""
    if not cfg.spec.sparse:
        return 1.0
    phase = phase_at(cfg, step, total_steps)
    if phase == "dense":
        return 1.0
    if phase == "finetune" or not cfg.spec.decays:
        return 0.0
    t = step - phases(cfg, total_steps).dense_end  # 0 on the first sparse step
    return DECAYS.get(cfg.decay).beta(alpha_of(cfg, total_steps), t)


# -------------------------------------------------------------------------------------- patterns
def sdgf_patterns(target: NM, schedule: str = "stepwise") -> tuple[NM, ...]:
    """The SDGF frame patterns toward ``target`` (docs/method.md, "SDGF: frames").

    stepwise: (M-1):M, M/2:M, M/4:M, ... N:M (keep M, halve N); frames = log2(M/N) + 1 when M/N
    is a power of two. For other N the halving stops at the first value <= N and the last frame
    is N:M (3:8 -> 7:8, 4:8, 3:8), our generalisation.
    geometric: 8N:8M, 4N:4M, 2N:2M, N:M (keep the density, shrink the block).
    densify: N:8M, N:4M, N:2M, N:M (keep N, M shrinks toward the target; the reference's option).
    """
    n, m = target.n, target.m
    if target.is_dense:
        return (target,)
    if schedule == "stepwise":
        out = [NM(m - 1, m)]
        k = m // 2
        while k > n:
            if k < out[-1].n:
                out.append(NM(k, m))
            k //= 2
        if out[-1] != target:
            out.append(target)
        return tuple(out)
    if schedule == "geometric":
        return tuple(NM(n * f, m * f) for f in (8, 4, 2, 1))
    if schedule == "densify":
        return tuple(NM(n, m * f) for f in (8, 4, 2, 1))
    raise ConfigError(f"unknown sdgf_schedule {schedule!r}; valid: stepwise, geometric, densify")


def frame_at(cfg: RecipeConfig, step: int, total_steps: int, target: NM | None = None) -> int:
    """Index of the SDGF frame at ``step`` (docs/method.md, "Frame timing").

    ``sdgf_target: in_window``: the first ``sdgf_frames_fraction`` of the sparse phase (the
    window) is cut into equal frames; the last frame (the target) holds from the window's last
    step on, so even a run shorter than the number of frames ends at the target.
    ``after_window`` (the authors' code): the frames before the target share the window and the
    target holds from the window's end. ``frame_clock: epoch``: the sparse clock and the window
    are counted in whole epochs, so frames change on epoch boundaries only."""
    frames = len(sdgf_patterns(target or cfg.pattern, cfg.sdgf_schedule))
    p = phases(cfg, total_steps)
    unit = _frame_unit(cfg)
    window = _frame_window(cfg, p, unit)
    t = max(step - p.dense_end, 0) // unit
    if cfg.sdgf_target == "after_window" and frames > 1:
        return frames - 1 if t >= window else t * (frames - 1) // window
    if t >= window - 1:  # the window's last step is at the target even when window < frames
        return frames - 1
    return t * frames // window


def _frame_unit(cfg: RecipeConfig) -> int:
    """Steps per tick of the frame clock: 1, or an epoch's steps for ``frame_clock: epoch``."""
    if cfg.frame_clock == "step":
        return 1
    if cfg.steps_per_epoch is None:
        raise ConfigError("frame_clock: epoch needs steps_per_epoch (the trainer fills it from the training "
                          "set and the batch size; a Python caller gives it)")
    return cfg.steps_per_epoch


def _frame_window(cfg: RecipeConfig, p: Phases, unit: int) -> int:
    """The SDGF window in ticks of the frame clock (steps, or whole epochs)."""
    return max(_round(cfg.sdgf_frames_fraction * p.sparse_steps / unit), 1)


def pattern_at(cfg: RecipeConfig, step: int, total_steps: int, target: NM | None = None) -> NM:
    """The N:M pattern at ``step`` for a layer whose target is ``target`` (default ``cfg.pattern``).
    DENSE (1:1) for the dense recipe and in the dense phase."""
    target = target or cfg.pattern
    if not cfg.spec.sparse or phase_at(cfg, step, total_steps) == "dense":
        return DENSE
    if cfg.spec.moving_pattern and phase_at(cfg, step, total_steps) == "sparse":
        return sdgf_patterns(target, cfg.sdgf_schedule)[frame_at(cfg, step, total_steps, target)]
    if cfg.spec.gradual and phase_at(cfg, step, total_steps) == "sparse":
        return NM(gmp_n(cfg, step, total_steps, target), target.m)
    return target


def _window(cfg: RecipeConfig, p: Phases) -> int:
    """Steps of the SDGF frames / GMP ramp: the first ``sdgf_frames_fraction`` of the sparse phase."""
    return max(_round(cfg.sdgf_frames_fraction * p.sparse_steps), 1)


def gmp_n(cfg: RecipeConfig, step: int, total_steps: int, target: NM | None = None) -> int:
    """GMP's kept N at ``step`` of the sparse phase (docs/method.md, "Baselines").

    Zhu & Gupta (2017) raise sparsity on a cubic, s(t) = s_f + (s_i - s_f)(1 - t/W)^3; in N:M
    terms the kept fraction is d(t) = d_f + (1 - d_f)(1 - t/W)^3 with d_f = N/M, from d(0) = 1
    to d(W) = N/M over the window W. N must be an integer: N(t) = ceil(M d(t)) (never prunes ahead
    of the cubic), at most M - 1 (the first sparse step prunes one weight per group, like SDGF's
    first frame) and N from the window's last step on."""
    target = target or cfg.pattern
    p = phases(cfg, total_steps)
    window = _window(cfg, p)
    t = max(step - p.dense_end, 0)
    if t >= window - 1:
        return target.n
    d_f = target.density
    d = d_f + (1.0 - d_f) * (1.0 - t / window) ** 3
    return max(target.n, min(target.m - 1, math.ceil(target.m * d - 1e-9)))


def _gmp_cuts(cfg: RecipeConfig, total_steps: int, target: NM) -> set[int]:
    """First step of every kept-N level of GMP: the cubic inverted per level, O(M) work."""
    p = phases(cfg, total_steps)
    window = _window(cfg, p)
    d_f = target.density
    cuts = set()
    for k in range(target.n, target.m - 1):  # first t with gmp_n <= k
        frac = max((k / target.m - d_f) / (1.0 - d_f), 0.0)
        t = min(max(math.ceil(window * (1.0 - frac ** (1.0 / 3.0))), 0), window - 1)
        while t > 0 and gmp_n(cfg, p.dense_end + t - 1, total_steps, target) <= k:
            t -= 1  # floating-point guard on the inversion: step to the exact first t
        while gmp_n(cfg, p.dense_end + t, total_steps, target) > k:
            t += 1
        cuts.add(p.dense_end + t)
    return cuts


def patterns_used(cfg: RecipeConfig, target: NM | None = None) -> tuple[NM, ...]:
    """Every sparse pattern a layer with ``target`` meets during training (for shape checks)."""
    target = target or cfg.pattern
    if not cfg.spec.sparse:
        return ()
    if cfg.spec.moving_pattern:
        return sdgf_patterns(target, cfg.sdgf_schedule)
    if cfg.spec.gradual:
        return tuple(NM(k, target.m) for k in range(target.m - 1, target.n - 1, -1))
    return (target,)


# ------------------------------------------------------------------------------ layer selection
def layer_target(cfg: RecipeConfig, name: str, role: str) -> NM | None:
    """Target pattern of layer ``name`` with ``role`` if the recipe's selection picks it, else None.

    Selection ignores whether the recipe is sparse, so the dense baseline tracks the same layers
    (diagnostics compare like with like); ``pattern_at`` is DENSE for the dense recipe. A Q/K/V
    layer uses ``qkv_pattern`` when set (and is then selected even if ``roles`` omits it). The
    first glob of ``layer_patterns`` matching ``name`` wins over both (a dense entry: None).
    """
    if not any(fnmatchcase(name, g) for g in cfg.layers) or any(fnmatchcase(name, g) for g in cfg.exclude):
        return None
    glob = layer_pattern_glob(cfg, name)
    if glob is not None:
        target = cfg.layer_patterns[glob]
        return None if target.is_dense else target
    if role in QKV_ROLES and cfg.qkv_pattern is not None:
        return cfg.qkv_pattern
    if "*" in cfg.roles or role in cfg.roles:
        return cfg.pattern
    return None


def layer_pattern_glob(cfg: RecipeConfig, name: str) -> str | None:
    """The first ``layer_patterns`` glob matching ``name`` (None: the layer uses the shared targets)."""
    return next((g for g in cfg.layer_patterns if fnmatchcase(name, g)), None)


def all_targets(cfg: RecipeConfig) -> tuple[NM, ...]:
    """Every target the config can give a layer (shared, Q/K/V and per-layer), sparse ones only."""
    pats = [cfg.pattern, cfg.qkv_pattern, *cfg.layer_patterns.values()]
    return tuple(dict.fromkeys(p for p in pats if p is not None and not p.is_dense))


# ------------------------------------------------------------------------------------- segments
@dataclass(frozen=True)
class Segment:
    """Steps ``[start, stop)`` over which pattern, phase and beta's sign do not change."""

    start: int
    stop: int
    phase: Phase
    pattern: NM
    beta_positive: bool  # MDGF: the forward weight is still dense (pruned weights scaled by beta > 0)

    @property
    def steps(self) -> int:
        return self.stop - self.start


def segments(cfg: RecipeConfig, total_steps: int, target: NM | None = None) -> list[Segment]:
    """The schedule as constant pieces, computed from O(frames) boundaries, not per step."""
    p = phases(cfg, total_steps)
    cuts = {0, p.dense_end, p.sparse_end, total_steps}
    if cfg.spec.gradual and p.sparse_steps > 0:
        cuts |= _gmp_cuts(cfg, total_steps, target or cfg.pattern)
    if cfg.spec.moving_pattern and p.sparse_steps > 0:
        frames = len(sdgf_patterns(target or cfg.pattern, cfg.sdgf_schedule))
        for k in range(1, frames):  # frame_at never decreases: bisect the first step of frame >= k
            lo, hi = p.dense_end, p.sparse_end
            while lo < hi:
                mid = (lo + hi) // 2
                if frame_at(cfg, mid, total_steps, target) >= k:
                    hi = mid
                else:
                    lo = mid + 1
            cuts.add(lo)
    if cfg.spec.decays and p.sparse_steps > 0:
        lo, hi = p.dense_end, p.sparse_end  # beta is non-increasing: bisect its first zero
        while lo < hi:
            mid = (lo + hi) // 2
            if beta_at(cfg, mid, total_steps) > 0.0:
                lo = mid + 1
            else:
                hi = mid
        cuts.add(lo)
    edges = sorted(c for c in cuts if 0 <= c <= total_steps)
    out: list[Segment] = []
    for a, b in zip(edges, edges[1:]):
        if b <= a:
            continue
        seg = Segment(a, b, phase_at(cfg, a, total_steps), pattern_at(cfg, a, total_steps, target),
                      beta_at(cfg, a, total_steps) > 0.0)
        if out and (out[-1].phase, out[-1].pattern, out[-1].beta_positive) == (seg.phase, seg.pattern, seg.beta_positive):
            out[-1] = Segment(out[-1].start, b, seg.phase, seg.pattern, seg.beta_positive)
        else:
            out.append(seg)
    return out
