"""IDX files (the MNIST format, LeCun et al.) from a local folder: Fashion-MNIST, MNIST, ...

Format (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): two zero bytes, a type byte
(0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64),
the number of dimensions, then each dimension as a big-endian uint32, then the data in C order,
big-endian. Files may be gzip-compressed (recognised by their magic bytes, whatever the name).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from pgf_sim.core import ConfigError
from pgf_sim.train.data_types import DATASETS, DataSpec, TensorData
from pgf_sim.train.experiment import IdxOptions

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}
FILES = {  # split -> (images, labels) base names of the standard distribution
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in one IDX file (gzip or raw), in native byte order."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ConfigError(f"{path}: not an IDX file (magic bytes {raw[:4].hex()}; expected 0000 + type + ndim)")
    dtype, ndim = np.dtype(_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ConfigError(f"{path}: header says shape {shape} ({count * dtype.itemsize} bytes of data), "
                          f"the file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header, count=count).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool = False) -> None:
    """Write ``array`` as an IDX file (the inverse of ``read_idx``; gzip when ``compress``)."""
    arr = np.asarray(array)
    code = _CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ConfigError(f"IDX cannot store dtype {arr.dtype}; valid: uint8, int8, int16, int32, float32, float64")
    body = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body += arr.astype(np.dtype(_DTYPES[code])).tobytes()
    Path(path).write_bytes(gzip.compress(body) if compress else body)


def _find(root: Path, base: str, name: str) -> Path:
    for cand in (root / base, root / f"{base}.gz", root / base.replace("-idx", ".idx")):
        if cand.is_file():
            return cand
    raise ConfigError(
        f"data {name!r}: {root} has no {base}[.gz] (expected the four standard IDX files "
        f"{', '.join(b for pair in FILES.values() for b in pair)}). "
        + ("On Debian/Ubuntu: apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist); "
           if name == "fashion_mnist" else "")
        + "or set data.options.path to a folder holding them; pgf-sim does not download data")


def load_idx_folder(root: str | Path, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (images (N, H, W) uint8, labels (N,) int64), checked against each other."""
    root = Path(root).expanduser()
    if not root.is_dir():
        _find(root, FILES["train"][0], name)  # raises the error naming the folder and how to get the files
    out = {}
    for split, (img_name, lab_name) in FILES.items():
        images, labels = read_idx(_find(root, img_name, name)), read_idx(_find(root, lab_name, name))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ConfigError(f"data {name!r}: {root} {split} images {images.shape} and labels {labels.shape} "
                              "do not match (expected (N, H, W) and (N,))")
        out[split] = (images, labels.astype(np.int64))
    return out


def _idx_spec(opts: IdxOptions, name: str) -> DataSpec:
    train = load_idx_folder(opts.path, name)["train"]
    return DataSpec("image", (1, *train[0].shape[1:]), int(train[1].max()) + 1)


def _idx_load(opts: IdxOptions, name: str) -> TensorData:
    splits = load_idx_folder(opts.path, name)
    (tr_x, tr_y), (te_x, te_y) = splits["train"], splits["test"]
    tr_x, tr_y, te_x, te_y = tr_x[:opts.max_train], tr_y[:opts.max_train], te_x[:opts.max_test], te_y[:opts.max_test]
    spec = DataSpec("image", (1, *tr_x.shape[1:]), int(max(tr_y.max(), te_y.max())) + 1)
    x_tr = torch.from_numpy(tr_x.copy()).unsqueeze(1)  # (N, 1, H, W) uint8, scaled per batch
    mean = float(tr_x.mean()) / 255.0
    std = float(tr_x.std()) / 255.0
    return TensorData(spec, x_tr, torch.from_numpy(tr_y), torch.from_numpy(te_x.copy()).unsqueeze(1),
                      torch.from_numpy(te_y), (mean,), (max(std, 1e-6),))


for _name in ("fashion_mnist", "mnist_idx"):
    DATASETS.add(_name, (lambda o, n=_name: _idx_spec(o, n), lambda o, n=_name: _idx_load(o, n)))
