"""Experiment definitions: model, data, recipe, schedule, run settings (no torch).

One experiment is one YAML file in ``training/``; ``load_experiment`` reads it strictly
(unknown key: error listing the valid keys) and applies command-line overrides
``key.sub=value`` first, so an override is validated exactly like the file.

Model and data hyper-parameters are typed too: each registered model/data name has an
options dataclass here (torch-free), so ``model.options.dim: "abc"`` fails at load time,
not in the middle of a run.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pgf_sim.core import ConfigError, Registry, apply_overrides, from_dict, load_yaml, to_dict
from pgf_sim.core.imports import resolve_factory
from pgf_sim.core.metric import Metric, get_metric
from pgf_sim.sparsity.schedules import RecipeConfig

# name -> options dataclass. ``models.py`` / ``data.py`` register the builders under the same
# names; a test checks the two registries agree.
MODEL_OPTIONS: Registry[type] = Registry("model")
DATA_OPTIONS: Registry[type] = Registry("data set")


# --- model hyper-parameters ---------------------------------------------------------------
@dataclass(frozen=True)
class TransformerOptions:
    """What every built-in transformer shares: width, blocks, heads, MLP width, attention layout."""

    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    qkv: Literal["fused", "separate"] = "fused"  # one qkv Linear (timm) or q/k/v Linears

    def __post_init__(self) -> None:
        if self.dim < 1 or self.depth < 1 or self.heads < 1:
            raise ConfigError(f"dim, depth and heads must be >= 1, got dim={self.dim}, depth={self.depth}, heads={self.heads}")
        if self.dim % self.heads:
            raise ConfigError(f"dim={self.dim} is not divisible by heads={self.heads}")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


@MODEL_OPTIONS.register("vit")
@dataclass(frozen=True)
class ViTOptions(TransformerOptions):
    """A pre-norm ViT (Dosovitskiy et al. 2021) sized for small images."""

    patch_size: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patch_size < 1:
            raise ConfigError(f"patch_size must be >= 1, got {self.patch_size}")


@MODEL_OPTIONS.register("seq_transformer")
@dataclass(frozen=True)
class SeqTransformerOptions(TransformerOptions):
    """A pre-norm transformer encoder over token ids, classifying from a cls token."""

    depth: int = 2


@MODEL_OPTIONS.register("char_gpt")
@dataclass(frozen=True)
class CharGPTOptions(TransformerOptions):
    """A GPT-style causal decoder (pre-norm blocks, causal self-attention) over character ids;
    the context length is the data's ``block_size``. ``tie_embeddings``: the output head
    reuses the token embedding table (Press & Wolf 2017), as GPT-2 does."""

    depth: int = 2
    tie_embeddings: bool = False


# --- data options -------------------------------------------------------------------------
@DATA_OPTIONS.register("digits")
@dataclass(frozen=True)
class DigitsOptions:
    """scikit-learn's bundled UCI 8x8 handwritten digits (1797 images, 10 classes)."""

    test_fraction: float = 0.2
    split_seed: int = 0  # the split is fixed by this seed, independent of the training seed

    def __post_init__(self) -> None:
        _check_fraction("test_fraction", self.test_fraction)
        _check_seed("split_seed", self.split_seed)


@dataclass(frozen=True)
class GeneratedSequenceOptions:
    """A token task generated deterministically from ``split_seed``."""

    seq_len: int = 24
    n_train: int = 4000
    n_test: int = 1000
    split_seed: int = 0

    def __post_init__(self) -> None:
        _check_seed("split_seed", self.split_seed)
        if self.seq_len < 2:
            raise ConfigError(f"seq_len must be >= 2, got {self.seq_len}")
        if self.n_train < 2 or self.n_test < 2:
            raise ConfigError(f"n_train and n_test must be >= 2, got {self.n_train}, {self.n_test}")


@DATA_OPTIONS.register("brackets")
@dataclass(frozen=True)
class BracketsOptions(GeneratedSequenceOptions):
    """Synthetic algorithmic task: is a '(' / ')' string balanced (a Dyck-1 word)?"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seq_len % 2:
            raise ConfigError(f"seq_len must be even for balanced strings, got {self.seq_len}")


@DATA_OPTIONS.register("majority")
@dataclass(frozen=True)
class MajorityOptions(GeneratedSequenceOptions):
    """Synthetic algorithmic task: which of ``vocab`` tokens occurs most often (unique mode)?"""

    vocab: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vocab < 2:
            raise ConfigError(f"vocab must be >= 2, got {self.vocab}")


@dataclass(frozen=True)
class TextOptions:
    """Next-character prediction on a text corpus. Each document is split in order into
    train / validation / test (the last ``test_fraction`` of every document is test, the
    ``val_fraction`` before it validation), so every split sees every document and no window
    crosses a split boundary. ``eval_chars`` caps the characters scored per evaluation split
    (the first ones, in fixed non-overlapping windows; null: the whole split)."""

    block_size: int = 64            # context length T of training and evaluation windows
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    eval_chars: int | None = 65536
    tokenizer: Literal["char", "byte"] = "char"  # char: vocabulary of the training split; byte: 256 ids

    def __post_init__(self) -> None:
        if self.block_size < 2:
            raise ConfigError(f"block_size must be >= 2, got {self.block_size}")
        _check_fraction("val_fraction", self.val_fraction)
        _check_fraction("test_fraction", self.test_fraction)
        if self.val_fraction + self.test_fraction >= 0.5:
            raise ConfigError(f"val_fraction + test_fraction must be < 0.5, got {self.val_fraction + self.test_fraction}")
        if self.eval_chars is not None and self.eval_chars < self.block_size + 1:
            raise ConfigError(f"eval_chars must be >= block_size + 1 ({self.block_size + 1}) or null, got {self.eval_chars}")


@DATA_OPTIONS.register("shakespeare")
@dataclass(frozen=True)
class ShakespeareOptions(TextOptions):
    """Shakespeare's 42 plays (Project Gutenberg texts, public domain), shipped inside the
    package (docs/data.md: provenance and checksum). No download."""


@DATA_OPTIONS.register("text")
@dataclass(frozen=True)
class TextFileOptions(TextOptions):
    """Any local text: a file, or a folder whose ``*.txt`` files (sorted, recursive) are the documents."""

    path: str = ""
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise ConfigError("path is required: a text file or a folder of .txt files")


@dataclass(frozen=True)
class IdxOptions:
    """Images and labels in the IDX format of MNIST (``train-images-idx3-ubyte[.gz]`` and
    friends) from a local folder. The official train/test split is kept; validation is carved
    from train (``DataConfig.val_fraction``)."""

    path: str = ""
    max_train: int | None = None  # keep the first N training images (quick experiments)
    max_test: int | None = None


@DATA_OPTIONS.register("fashion_mnist")
@dataclass(frozen=True)
class FashionMnistOptions(IdxOptions):
    """Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey images, 10 classes. Debian:
    ``apt-get install dataset-fashion-mnist`` puts it in the default path."""

    path: str = "/usr/share/datasets/fashion-mnist"


@DATA_OPTIONS.register("mnist_idx")
@dataclass(frozen=True)
class MnistIdxOptions(IdxOptions):
    """Any MNIST-format IDX folder (MNIST, KMNIST, ...): ``path`` is required."""

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("path is required: a folder with train-images-idx3-ubyte[.gz] and the other IDX files")


@DATA_OPTIONS.register("cifar10")
@dataclass(frozen=True)
class Cifar10Options:
    """CIFAR-10 from the standard python batches on disk (``cifar-10-batches-py``); no download."""

    path: str
    max_train: int | None = None  # keep the first N training images (quick experiments)
    max_test: int | None = None


@DATA_OPTIONS.register("image_folder")
@dataclass(frozen=True)
class ImageFolderOptions:
    """``path/<class name>/<image>`` with .npy arrays (always) or .png/.jpg (needs Pillow)."""

    path: str
    image_size: int = 32
    channels: Literal[1, 3] = 3
    test_fraction: float = 0.2
    split_seed: int = 0

    def __post_init__(self) -> None:
        _check_fraction("test_fraction", self.test_fraction)
        _check_seed("split_seed", self.split_seed)
        if self.image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {self.image_size}")


MAX_STEPS = 100_000_000  # optimiser steps (or epochs) of one run
MAX_SEED = 2**32 - 1  # NumPy's RandomState and the per-epoch batch generators take seeds up to this


def _check_seed(name: str, value: int) -> None:
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{name} must be an integer in [0, {MAX_SEED}], got {value}")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be in (0, 1), got {value}")


# --- the experiment -----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    """A registered model ``name`` with typed ``options``, or the user's own model:
    ``factory: "package.module:function"`` called with ``options`` as keyword arguments (plus
    ``spec``, the data's ``DataSpec``, when the function has a ``spec`` parameter); it must
    return an ``nn.Module``. ``name`` is then only a label."""

    name: str = "vit"
    options: dict[str, Any] = field(default_factory=dict)
    factory: str | None = None

    def __post_init__(self) -> None:
        if self.factory is not None:
            resolve_factory(self.factory, "model.factory")  # a wrong path fails at load, before training
            return
        self.typed()  # validate now: unknown name or option is a load-time error

    def typed(self) -> Any:
        """The options as the model's own frozen dataclass (defaults filled in); a factory's
        options stay a plain mapping (its keyword arguments)."""
        if self.factory is not None:
            return dict(self.options)
        return from_dict(MODEL_OPTIONS.get(self.name), dict(self.options), source=f"model {self.name!r}", field_path="options")


@dataclass(frozen=True)
class DataConfig:
    """A registered data set ``name`` with typed ``options``, or the user's own data:
    ``factory: "package.module:function"`` called with ``options`` as keyword arguments. It
    returns a mapping ``{"train": ..., "test": ..., "val": ... (optional)}`` of torch
    ``Dataset``s / ``DataLoader``s / ``(x, y)`` tensor pairs, read once into memory (see
    ``pgf_sim.train.data.from_factory``). ``val_fraction``: the validation split carved from
    train when a set has none of its own (the text sets have their own split options)."""

    name: str = "digits"
    options: dict[str, Any] = field(default_factory=dict)
    factory: str | None = None
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_fraction("val_fraction", self.val_fraction)
        if self.factory is not None:
            resolve_factory(self.factory, "data.factory")
            return
        self.typed()

    def typed(self) -> Any:
        if self.factory is not None:
            return dict(self.options)
        return from_dict(DATA_OPTIONS.get(self.name), dict(self.options), source=f"data {self.name!r}", field_path="options")

    @property
    def is_text(self) -> bool:
        """Next-token prediction over a text corpus (a built-in text set)."""
        return self.factory is None and issubclass(DATA_OPTIONS.get(self.name), TextOptions)


@dataclass(frozen=True)
class ScheduleConfig:
    """Length and optimiser. Give ``steps`` or ``epochs`` (not both); ``batch_size`` is global."""

    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    warmup_fraction: float = 0.05  # linear warmup over this fraction of steps, then cosine to 0
    weight_decay: float = 0.05
    grad_clip: float | None = 1.0  # max global grad norm; null = no clipping

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ConfigError(f"give exactly one of steps or epochs (got steps={self.steps}, epochs={self.epochs})")
        if (self.steps is not None and self.steps < 1) or (self.epochs is not None and self.epochs < 1):
            raise ConfigError("steps / epochs must be >= 1")
        # beyond these, a schedule is built for days before step 1 (and no run could finish)
        if (self.steps or 0) > MAX_STEPS or (self.epochs or 0) > MAX_STEPS:
            raise ConfigError(f"steps / epochs must be <= {MAX_STEPS}, got {self.steps or self.epochs}")
        if not 1 <= self.batch_size <= 2**31 - 1:
            raise ConfigError(f"batch_size must be in [1, 2147483647], got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 or null, got {self.grad_clip}")

    def total_steps(self, n_train: int) -> int:
        """Optimiser steps of the whole run for a training set of ``n_train`` examples
        (full batches only, see ``data.steps_per_epoch``)."""
        if self.steps is not None:
            return self.steps
        return self.epochs * max(1, n_train // self.batch_size)


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Gradient-noise diagnostics (see ``pgf_sim.train.diagnostics``): a window of ``window``
    consecutive steps is measured every ``every`` steps; ``every: 0`` turns them off."""

    every: int = 0
    window: int = 8

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ConfigError(f"diagnostics.every must be >= 0, got {self.every}")
        if self.window < 2:
            raise ConfigError(f"diagnostics.window must be >= 2 (variance needs two steps), got {self.window}")
        if self.every and self.window > self.every:
            raise ConfigError(f"diagnostics.window ({self.window}) must be <= diagnostics.every ({self.every})")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    schedule: ScheduleConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    bf16: bool = False  # bf16 autocast of forward/backward; weights and optimiser stay fp32
    eval_every: int = 0  # evaluate every N steps (0: only at the end)
    checkpoint_every: int = 200  # steps; metrics are committed to the store at each checkpoint
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    # The quality metric picks and fronts use (pgf_sim.core.metric): accuracy, loss, bpc or
    # perplexity. Default: bpc for the text sets, accuracy otherwise.
    metric: str | None = None

    def __post_init__(self) -> None:
        if self.metric is not None:
            get_metric(self.metric)
            if self.metric in ("bpc", "perplexity") and not self.data.is_text and self.data.factory is None:
                raise ConfigError(f"metric {self.metric!r} needs next-token data (a text set), "
                                  f"data {self.data.name!r} is classification; use accuracy or loss")
        if not self.name or any(c in self.name for c in "/\\"):
            raise ConfigError(f"name must be a non-empty string without slashes, got {self.name!r}")
        _check_seed("seed", self.seed)
        if self.eval_every < 0 or self.checkpoint_every < 1:
            raise ConfigError(
                f"eval_every must be >= 0 and checkpoint_every >= 1, got {self.eval_every}, {self.checkpoint_every}"
            )

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @property
    def task_metric(self) -> Metric:
        return get_metric(self.metric or ("bpc" if self.data.is_text else "accuracy"))

    def fingerprint(self) -> str:
        """Short stable hash of the full config; part of the default run id."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def default_run_id(self, world_size: int = 1) -> str:
        """Name, recipe, pattern, seed, config hash, and ``-w<world_size>`` for a multi-process
        (DDP) run: a torchrun rerun of a single-process run is a different run, not its result."""
        pattern = str(self.recipe.pattern).replace(":", "of")
        world = f"-w{world_size}" if world_size > 1 else ""
        return f"{self.name}-{self.recipe.name}-{pattern}-s{self.seed}-{self.fingerprint()}{world}"


def experiment_from_dict(data: dict[str, Any], *, source: str = "<config>") -> ExperimentConfig:
    return from_dict(ExperimentConfig, data, source=source)


def load_experiment(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> ExperimentConfig:
    """Read ``path`` strictly, after applying ``key.sub=value`` overrides to the raw mapping."""
    data = load_yaml(path)
    data = apply_overrides(data, list(overrides), source=f"{path} (command-line override)")
    return experiment_from_dict(data, source=str(path))


def metric_of(config: dict[str, Any]) -> Metric:
    """The task metric of a stored experiment config (a run's ``config``), read without building
    the experiment (no factory is imported): its ``metric``, else bpc for a built-in text set,
    else accuracy. Equals ``ExperimentConfig.task_metric`` of the same config."""
    data = config.get("data") or {}
    if config.get("metric"):
        return get_metric(config["metric"])
    name = data.get("name", "digits")
    text = data.get("factory") is None and name in DATA_OPTIONS and issubclass(DATA_OPTIONS.get(name), TextOptions)
    return get_metric("bpc" if text else "accuracy")
