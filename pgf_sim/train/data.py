"""Data sets held as in-memory tensors, and the deterministic batch order of training.

Registered sets: ``digits`` (real: scikit-learn's bundled UCI 8x8 digits, no download),
``majority`` and ``brackets`` (*synthetic algorithmic* sequence tasks: the most frequent
token of a string; is a bracket string balanced? — the latter is hard for a small
bidirectional encoder, which stays at chance on it in a 10-epoch budget),
``cifar10`` (the standard python batches from a local path) and ``image_folder`` (a local
``class/image`` tree); ``text.py`` adds the language-modelling sets (``shakespeare``, ``text``),
``idx.py`` the IDX folders (``fashion_mnist``, ``mnist_idx``), ``factories.py`` the user's own.
Nothing here downloads anything. Every set has a validation split: classification sets carve
it from train (``DataConfig.val_fraction``, ``TensorData.carve_val``).

The batch of step ``t`` is a pure function of (seed, t): the epoch's permutation comes from a
generator seeded with (seed, epoch). A resumed run therefore sees exactly the batches the
uninterrupted run would have seen, and DDP ranks split one global batch between them.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from pgf_sim.core import ConfigError
from pgf_sim.train.experiment import (
    BracketsOptions, Cifar10Options, DataConfig, DigitsOptions, ImageFolderOptions, MajorityOptions,
)


from pgf_sim.train.data_types import DATASETS, EVAL_BATCH, DataSpec, TensorData, _split, batch_indices, steps_per_epoch  # noqa: F401 (re-exported)


def data_spec(cfg: DataConfig) -> DataSpec:
    """The data's shape and class count (used by ``example_input``); built-in sets answer
    without loading the examples, a factory's data is loaded to see it."""
    if cfg.factory is not None:
        return load_data(cfg).spec
    return DATASETS.get(cfg.name)[0](cfg.typed())


def load_data(cfg: DataConfig):
    """``TensorData`` (with a validation split) or ``text.TextData`` for the text sets."""
    if cfg.factory is not None:
        from pgf_sim.train.factories import data_from_factory

        data = data_from_factory(cfg)
    else:
        data = DATASETS.get(cfg.name)[1](cfg.typed())
    return data.carve_val(cfg.val_fraction) if isinstance(data, TensorData) else data


def _digits_spec(opts: DigitsOptions) -> DataSpec:
    return DataSpec("image", (1, 8, 8), 10)


def _digits_load(opts: DigitsOptions) -> TensorData:
    from sklearn.datasets import load_digits

    bunch = load_digits()  # 1797 images, 8x8, integer intensities 0..16
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    y = torch.tensor(bunch.target, dtype=torch.long)
    tr, te = _split(len(y), opts.test_fraction, opts.split_seed)
    return TensorData(_digits_spec(opts), x[tr], y[tr], x[te], y[te], mean=(0.5,), std=(0.5,))


DATASETS.add("digits", (_digits_spec, _digits_load))


# --- brackets (synthetic algorithmic task) ------------------------------------------------
def _brackets_spec(opts: BracketsOptions) -> DataSpec:
    return DataSpec("tokens", (opts.seq_len,), 2, vocab_size=2)


def is_balanced(seqs: np.ndarray) -> np.ndarray:
    """Rows of 0='(' / 1=')' that are Dyck-1 words: depth never negative and ends at 0."""
    depth = np.cumsum(np.where(seqs == 0, 1, -1), axis=1)
    return (depth.min(axis=1) >= 0) & (depth[:, -1] == 0)


def make_brackets(n: int, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` strings, half balanced. Three quarters of the unbalanced ones have as many '(' as
    ')' (so counting alone cannot solve the task; the model must track the running depth)."""
    n_pos = n // 2
    n_neg_equal = (3 * (n - n_pos)) // 4
    n_neg_random = n - n_pos - n_neg_equal
    half = np.array([0] * (seq_len // 2) + [1] * (seq_len // 2))
    pos, neg = [], []
    have_pos = have_neg = 0
    while have_pos < n_pos or have_neg < n_neg_equal:
        # Random shuffles of an equal-count string; about 1/(seq_len/2 + 1) are balanced (Catalan).
        cand = half[np.argsort(rng.random((4 * n + 64, seq_len)), axis=1)]
        ok = is_balanced(cand)
        pos.append(cand[ok])
        neg.append(cand[~ok])
        have_pos += int(ok.sum())
        have_neg += int((~ok).sum())
    rand = rng.integers(0, 2, size=(4 * n_neg_random + 64, seq_len))
    rand = rand[~is_balanced(rand) & (rand.sum(axis=1) != seq_len // 2)][:n_neg_random]
    x = np.concatenate([np.concatenate(pos)[:n_pos], np.concatenate(neg)[:n_neg_equal], rand])
    y = np.concatenate([np.ones(n_pos, np.int64), np.zeros(n - n_pos, np.int64)])
    order = rng.permutation(n)
    return x[order], y[order]


def _brackets_load(opts: BracketsOptions) -> TensorData:
    rng = np.random.default_rng(opts.split_seed)
    x, y = make_brackets(opts.n_train + opts.n_test, opts.seq_len, rng)
    x_t, y_t = torch.from_numpy(x).long(), torch.from_numpy(y).long()
    n = opts.n_train
    return TensorData(_brackets_spec(opts), x_t[:n], y_t[:n], x_t[n:], y_t[n:])


DATASETS.add("brackets", (_brackets_spec, _brackets_load))


# --- majority (synthetic algorithmic task) ------------------------------------------------
def _majority_spec(opts: MajorityOptions) -> DataSpec:
    return DataSpec("tokens", (opts.seq_len,), opts.vocab, vocab_size=opts.vocab)


def make_majority(n: int, seq_len: int, vocab: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform random token strings whose most frequent token is unique; label = that token.
    The mode often wins by a single occurrence, so the model must count, not glance."""
    xs, have = [], 0
    while have < n:
        cand = rng.integers(0, vocab, size=(2 * n + 64, seq_len))
        counts = (cand[:, :, None] == np.arange(vocab)).sum(axis=1)  # (rows, vocab)
        top2 = np.sort(counts, axis=1)[:, -2:]
        cand = cand[top2[:, 1] > top2[:, 0]]
        xs.append(cand)
        have += len(cand)
    x = np.concatenate(xs)[:n]
    y = (x[:, :, None] == np.arange(vocab)).sum(axis=1).argmax(axis=1)
    return x, y


def _majority_load(opts: MajorityOptions) -> TensorData:
    rng = np.random.default_rng(opts.split_seed)
    x, y = make_majority(opts.n_train + opts.n_test, opts.seq_len, opts.vocab, rng)
    x_t, y_t = torch.from_numpy(x).long(), torch.from_numpy(y).long()
    n = opts.n_train
    return TensorData(_majority_spec(opts), x_t[:n], y_t[:n], x_t[n:], y_t[n:])


DATASETS.add("majority", (_majority_spec, _majority_load))


# --- CIFAR-10 from disk -------------------------------------------------------------------
# Per-channel mean/std of the CIFAR-10 training set, the values used by torchvision/timm recipes.
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)


class _ArrayUnpickler(pickle.Unpickler):
    """The CIFAR batches are pickles; allow only what a dict of numpy arrays needs, so a
    tampered file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def _cifar_dir(path: str) -> Path:
    root = Path(path).expanduser()
    for cand in (root, root / "cifar-10-batches-py"):
        if (cand / "data_batch_1").is_file():
            return cand
    raise ConfigError(
        f"data 'cifar10': no CIFAR-10 python batches at {root} (expected data_batch_1..5 and test_batch, "
        "as unpacked from cifar-10-python.tar.gz); pgf-sim does not download data"
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        batch = _ArrayUnpickler(fh, encoding="bytes").load()
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # rows are R, G, B planes
    return data, np.asarray(batch[b"labels"], dtype=np.int64)


def _cifar_spec(opts: Cifar10Options) -> DataSpec:
    return DataSpec("image", (3, 32, 32), 10)


def _cifar_load(opts: Cifar10Options) -> TensorData:
    root = _cifar_dir(opts.path)
    missing = [n for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if not (root / n).is_file()]
    if missing:
        raise ConfigError(f"data 'cifar10': {root} lacks {', '.join(missing)}")
    parts = [_read_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    tr_x, tr_y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    te_x, te_y = _read_cifar_batch(root / "test_batch")
    tr_x, tr_y = tr_x[:opts.max_train], tr_y[:opts.max_train]
    te_x, te_y = te_x[:opts.max_test], te_y[:opts.max_test]
    return TensorData(_cifar_spec(opts), torch.from_numpy(tr_x), torch.from_numpy(tr_y),
                      torch.from_numpy(te_x), torch.from_numpy(te_y), _CIFAR_MEAN, _CIFAR_STD)


DATASETS.add("cifar10", (_cifar_spec, _cifar_load))


# --- image folder -------------------------------------------------------------------------
_IMAGE_SUFFIXES = {".npy", ".png", ".jpg", ".jpeg", ".bmp"}


def _folder_classes(opts: ImageFolderOptions) -> tuple[Path, list[str]]:
    root = Path(opts.path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data 'image_folder': {root} is not a directory (expected {root}/<class>/<image>)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise ConfigError(f"data 'image_folder': {root} needs at least two class sub-directories, found {classes}")
    return root, classes


def _read_image(path: Path) -> np.ndarray:
    """(H, W, C) float in [0, 1]."""
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        try:
            from PIL import Image
        except ModuleNotFoundError:
            raise ConfigError(
                f"data 'image_folder': reading {path.suffix} files needs Pillow (pip install pillow); "
                ".npy images need nothing"
            ) from None
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    arr = arr[..., None] if arr.ndim == 2 else arr
    if arr.ndim != 3:
        raise ConfigError(f"data 'image_folder': {path} has shape {arr.shape}; expected (H, W) or (H, W, C)")
    return arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)


def _folder_spec(opts: ImageFolderOptions) -> DataSpec:
    _, classes = _folder_classes(opts)
    return DataSpec("image", (opts.channels, opts.image_size, opts.image_size), len(classes))


def _folder_load(opts: ImageFolderOptions) -> TensorData:
    root, classes = _folder_classes(opts)
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            img = torch.from_numpy(_read_image(path)).permute(2, 0, 1)  # (C, H, W)
            if img.shape[0] != opts.channels:  # grey <-> RGB by averaging / repeating channels
                img = img.mean(0, keepdim=True) if opts.channels == 1 else img[:1].repeat(3, 1, 1)
            if img.shape[1:] != (opts.image_size, opts.image_size):
                img = torch.nn.functional.interpolate(img[None], size=(opts.image_size,) * 2,
                                                      mode="bilinear", antialias=True, align_corners=False)[0]
            images.append(img)
            labels.append(label)
    if not images:
        raise ConfigError(f"data 'image_folder': no images ({', '.join(sorted(_IMAGE_SUFFIXES))}) under {root}")
    x, y = torch.stack(images), torch.tensor(labels)
    tr, te = _split(len(y), opts.test_fraction, opts.split_seed)
    mean = tuple(x[tr].mean(dim=(0, 2, 3)).tolist())  # statistics of the training split only
    std = tuple(x[tr].std(dim=(0, 2, 3)).clamp_min(1e-6).tolist())
    return TensorData(_folder_spec(opts), x[tr], y[tr], x[te], y[te], mean, std)


DATASETS.add("image_folder", (_folder_spec, _folder_load))


# The text (language-modelling) and IDX sets live in their own modules and register themselves.
from pgf_sim.train import idx as _idx  # noqa: E402,F401
from pgf_sim.train import text as _text  # noqa: E402,F401
