"""Data sets: shapes, determinism, the brackets rule, local CIFAR/image-folder loading, batch order."""
import pickle

import numpy as np
import pytest
import torch

from pgf_sim.core import ConfigError
from pgf_sim.train.data import DATASETS, batch_indices, data_spec, is_balanced, load_data, steps_per_epoch
from pgf_sim.train.experiment import DataConfig


def test_digits_is_the_real_uci_set_with_a_fixed_split():
    d = load_data(DataConfig("digits"))
    # UCI optical digits as shipped by scikit-learn: 1797 images of 8x8, 10 classes.
    assert len(d.train_y) + len(d.val_y) + len(d.test_y) == 1797
    assert len(d.test_y) == round(1797 * 0.2)
    assert len(d.val_y) == round((1797 - 359) * 0.1)  # validation carved from train (data.val_fraction)
    assert d.train_x.shape[1:] == (1, 8, 8) and d.spec.num_classes == 10
    assert set(d.train_y.tolist()) == set(range(10))
    x = d.prepare(d.train_x)
    assert x.min() >= -1 and x.max() <= 1  # intensities 0..16 -> [0, 1] -> normalised to [-1, 1]
    again = load_data(DataConfig("digits"))
    assert torch.equal(d.test_x, again.test_x) and torch.equal(d.train_y, again.train_y)
    other = load_data(DataConfig("digits", {"split_seed": 1}))
    assert not torch.equal(d.test_y, other.test_y)


def _balanced_by_stack(seq):
    depth = 0
    for tok in seq:
        depth += 1 if tok == 0 else -1
        if depth < 0:
            return False
    return depth == 0


def test_brackets_labels_follow_the_rule_and_are_deterministic():
    d = load_data(DataConfig("brackets", {"seq_len": 12, "n_train": 400, "n_test": 100}))
    assert d.train_x.shape == (360, 12) and d.val_x.shape == (40, 12) and d.test_x.shape == (100, 12)
    assert d.spec.vocab_size == 2
    x = torch.cat([d.train_x, d.val_x, d.test_x]).numpy()
    y = torch.cat([d.train_y, d.val_y, d.test_y]).numpy()
    assert [int(_balanced_by_stack(row)) for row in x] == y.tolist()
    assert y.sum() == 250  # exactly half balanced
    neg = x[y == 0]
    equal_counts = (neg == 0).sum(axis=1) == 6
    assert equal_counts.mean() >= 0.7  # most negatives cannot be told apart by counting
    again = load_data(DataConfig("brackets", {"seq_len": 12, "n_train": 400, "n_test": 100}))
    assert torch.equal(d.train_x, again.train_x)


def test_is_balanced_examples():
    seqs = np.array([[0, 1, 0, 1], [0, 0, 1, 1], [1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 1]])
    assert is_balanced(seqs).tolist() == [True, True, False, False, False]


def test_batch_order_is_a_pure_function_of_seed_and_step():
    n, bs = 100, 32  # 3 full batches per epoch, 4 examples dropped each epoch
    assert steps_per_epoch(n, bs) == 3
    epoch0 = torch.cat([batch_indices(n, bs, 7, s) for s in range(3)])
    assert len(set(epoch0.tolist())) == 96  # no repeats inside an epoch
    assert torch.equal(batch_indices(n, bs, 7, 4), batch_indices(n, bs, 7, 4))
    assert not torch.equal(batch_indices(n, bs, 7, 0), batch_indices(n, bs, 7, 3))  # new epoch, new order
    assert not torch.equal(batch_indices(n, bs, 7, 0), batch_indices(n, bs, 8, 0))


def test_ranks_split_the_global_batch():
    full = batch_indices(100, 32, 0, 5)
    parts = [batch_indices(100, 32, 0, 5, rank=r, world=2) for r in range(2)]
    assert all(len(p) == 16 for p in parts)
    assert sorted(torch.cat(parts).tolist()) == sorted(full.tolist())


def test_batch_larger_than_the_data_is_an_error():
    with pytest.raises(ConfigError, match="batch_size 64 is larger than the training set"):
        steps_per_epoch(10, 64)


def _write_cifar(root, n_per_batch=4):
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n_per_batch).tolist(), b"batch_label": name.encode()}
        with open(root / name, "wb") as fh:
            pickle.dump(batch, fh)
    return root


def test_cifar10_reads_the_python_batches(tmp_path):
    root = _write_cifar(tmp_path / "cifar-10-batches-py")
    d = load_data(DataConfig("cifar10", {"path": str(tmp_path)}))  # parent dir works too
    assert d.train_x.shape == (18, 3, 32, 32) and d.val_x.shape == (2, 3, 32, 32) and d.test_x.shape == (4, 3, 32, 32)
    d = DATASETS.get("cifar10")[1](DataConfig("cifar10", {"path": str(tmp_path)}).typed())  # before the validation carve
    with open(root / "data_batch_1", "rb") as fh:
        first = pickle.load(fh)
    # a row is the R plane (1024 values), then G, then B, each row-major 32x32
    assert torch.equal(d.train_x[0, 1, 0], torch.from_numpy(first[b"data"][0, 1024:1056]))
    assert d.train_y[:4].tolist() == first[b"labels"]
    x = d.prepare(d.train_x[:2])
    assert x.dtype == torch.float32 and x.shape == (2, 3, 32, 32)
    small = load_data(DataConfig("cifar10", {"path": str(root), "max_train": 5, "max_test": 2}))
    assert len(small.train_y) + len(small.val_y) == 5 and len(small.test_y) == 2
    assert data_spec(DataConfig("cifar10", {"path": "/nowhere"})).input_shape == (3, 32, 32)


def test_cifar10_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no CIFAR-10 python batches at .*does not download"):
        load_data(DataConfig("cifar10", {"path": str(tmp_path / "nope")}))


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    root = _write_cifar(tmp_path / "c")
    with open(root / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": []}, fh)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_data(DataConfig("cifar10", {"path": str(root)}))


def test_image_folder_from_npy(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            np.save(tmp_path / cls / f"{i}.npy", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    cfg = DataConfig("image_folder", {"path": str(tmp_path), "image_size": 8, "test_fraction": 0.2})
    d = load_data(cfg)
    assert data_spec(cfg).num_classes == 2
    assert d.train_x.shape == (7, 3, 8, 8) and d.val_x.shape == (1, 3, 8, 8) and d.test_x.shape == (2, 3, 8, 8)
    x = d.prepare(torch.cat([d.train_x, d.val_x]))  # statistics of the loader's training split (before the carve)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)  # train-split statistics


def test_image_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="is not a directory"):
        load_data(DataConfig("image_folder", {"path": str(tmp_path / "missing")}))
    (tmp_path / "only").mkdir()
    with pytest.raises(ConfigError, match="at least two class sub-directories"):
        load_data(DataConfig("image_folder", {"path": str(tmp_path)}))


def test_majority_labels_are_the_unique_mode():
    d = load_data(DataConfig("majority", {"seq_len": 9, "vocab": 4, "n_train": 300, "n_test": 50}))
    assert d.train_x.shape == (270, 9) and d.val_x.shape == (30, 9) and d.spec.num_classes == 4 and d.spec.vocab_size == 4
    for row, label in zip(d.train_x.tolist(), d.train_y.tolist()):
        counts = sorted(((row.count(t), t) for t in range(4)), reverse=True)
        assert counts[0][0] > counts[1][0] and counts[0][1] == label
    assert set(d.train_y.tolist()) == set(range(4))
    again = load_data(DataConfig("majority", {"seq_len": 9, "vocab": 4, "n_train": 300, "n_test": 50}))
    assert torch.equal(d.test_x, again.test_x)
