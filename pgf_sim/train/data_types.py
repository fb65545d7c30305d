"""What every data set hands the trainer: ``DataSpec`` (shapes), ``TensorData`` (in-memory
examples with train / validation / test splits) and the ``DATASETS`` registry the built-in sets
(``data``, ``text``, ``idx``) and user factories (``factories``) fill. Kept apart from
``data.py`` so that those modules import these types without importing each other."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Literal

import numpy as np
import torch

from pgf_sim.core import ConfigError, Registry


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know: ``input_shape`` excludes the batch dim, (C, H, W) or (T,).

    kind: ``image`` (B, C, H, W) floats, ``tokens`` (B, T) ids with one label per sequence,
    ``lm`` (B, T) ids with one next-token target per position (``num_classes`` = vocabulary),
    ``tensor`` anything else a user's factory returns (one label per example).
    """

    kind: Literal["image", "tokens", "lm", "tensor"]
    input_shape: tuple[int, ...]
    num_classes: int
    vocab_size: int = 0


EVAL_BATCH = 512  # examples (or windows) per evaluation forward


@dataclass
class TensorData:
    """Train/validation/test tensors. Images may be stored as uint8 and are normalised per batch.
    ``val_x``/``val_y`` None: ``load_data`` carves validation from train."""

    spec: DataSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...] | None = None  # per channel, applied after scaling uint8 to [0, 1]
    std: tuple[float, ...] | None = None
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    def train_batch(self, batch_size: int, seed: int, step: int, *, rank: int = 0, world: int = 1):
        """(x, y) of training step ``step`` for this rank (``batch_indices``)."""
        idx = batch_indices(self.n_train, batch_size, seed, step, rank=rank, world=world)
        return self.prepare(self.train_x[idx]), self.train_y[idx]

    def eval_batches(self, split: str):
        """(x, y) batches of split ``val`` or ``test``, in order."""
        x, y = (self.val_x, self.val_y) if split == "val" else (self.test_x, self.test_y)
        for i in range(0, len(y), EVAL_BATCH):
            yield self.prepare(x[i:i + EVAL_BATCH]), y[i:i + EVAL_BATCH]

    def carve_val(self, fraction: float, seed: int = 0) -> "TensorData":
        """Move a fixed ``fraction`` of train (a permutation seeded by ``seed``) to validation."""
        if self.val_x is not None:
            return self
        if self.n_train < 2:
            raise ConfigError(f"the training split has {self.n_train} example(s); too few to carve a validation split")
        tr, va = _split(self.n_train, fraction, seed)
        tr_t, va_t = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(va))
        return replace(self, train_x=self.train_x[tr_t], train_y=self.train_y[tr_t],
                       val_x=self.train_x[va_t], val_y=self.train_y[va_t])

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.kind != "image":
            return x
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if self.mean is not None:
            mean = torch.tensor(self.mean).view(1, -1, 1, 1)
            std = torch.tensor(self.std).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x


# name -> (spec function, loader); both take the typed options.
DATASETS: Registry[tuple[Callable, Callable]] = Registry("data set")


def batch_indices(n_train: int, batch_size: int, seed: int, step: int, *, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Example indices of training step ``step`` (0-based) for this rank. Shape (batch_size / world,)."""
    per_epoch = steps_per_epoch(n_train, batch_size)
    epoch, pos = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n_train, generator=gen)
    batch = perm[pos * batch_size:(pos + 1) * batch_size]
    return batch[rank::world]  # strided split: rank r takes every world-th example


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.RandomState(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return perm[n_test:], perm[:n_test]


# --- digits -------------------------------------------------------------------------------


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches only (drop last): every step has the same global batch size, which keeps
    DDP's averaged gradient equal to the single-process one."""
    if batch_size > n_train:
        raise ConfigError(f"schedule.batch_size {batch_size} is larger than the training set ({n_train} examples)")
    return n_train // batch_size
