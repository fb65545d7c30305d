"""The IDX reader (MNIST format): round trip of files the test writes, the folder loader, errors."""
import numpy as np
import pytest

from pgf_sim.core import ConfigError
from pgf_sim.train.data import data_spec, load_data
from pgf_sim.train.experiment import DataConfig
from pgf_sim.train.idx import read_idx, write_idx


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_round_trip(tmp_path, compress, dtype):
    arr = (np.arange(2 * 3 * 5) * 7 % 251).astype(dtype).reshape(2, 3, 5)
    path = tmp_path / "a.idx"
    write_idx(path, arr, compress=compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 5) and np.array_equal(back, arr)


def test_header_bytes_follow_the_published_format(tmp_path):
    # LeCun's MNIST page: 0x00000803 then the sizes as big-endian int32, e.g. 60000, 28, 28
    write_idx(tmp_path / "x", np.zeros((2, 3, 4), np.uint8))
    raw = (tmp_path / "x").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03" and raw[4:16] == bytes([0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4])
    assert len(raw) == 16 + 24


def _write_mnist_folder(root, n_train=50, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(root / (name + suffix), arr, compress=gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_folder_keeps_the_official_split_and_carves_validation_from_train(tmp_path, gz):
    arrays = _write_mnist_folder(tmp_path / "mnist", gz=gz)
    cfg = DataConfig("mnist_idx", {"path": str(tmp_path / "mnist")}, val_fraction=0.2)
    d = load_data(cfg)
    assert data_spec(cfg).input_shape == (1, 28, 28) and d.spec.num_classes == 10
    assert len(d.train_y) == 40 and len(d.val_y) == 10 and len(d.test_y) == 10  # test = the t10k files
    assert np.array_equal(d.test_x[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    everything = np.concatenate([d.train_x[:, 0].numpy(), d.val_x[:, 0].numpy()])
    assert sorted(map(bytes, everything)) == sorted(map(bytes, arrays["train-images-idx3-ubyte"]))
    x = d.prepare(d.train_x[:4])
    assert x.dtype.is_floating_point and x.shape == (4, 1, 28, 28)


def test_missing_files_name_the_folder_and_how_to_get_them(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path / 'none'} has no train-images-idx3-ubyte.*apt-get install "
                                          "dataset-fashion-mnist"):
        load_data(DataConfig("fashion_mnist", {"path": str(tmp_path / "none")}))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(ConfigError, match="not an IDX file"):
        read_idx(tmp_path / "bad" / "train-images-idx3-ubyte")


FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not (__import__("pathlib").Path(FASHION) / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_installed_fashion_mnist_is_the_published_set():
    d = load_data(DataConfig("fashion_mnist"))
    # Xiao et al. 2017: 60,000 training and 10,000 test 28x28 images, 10 classes
    assert len(d.train_y) + len(d.val_y) == 60_000 and len(d.test_y) == 10_000 and d.spec.num_classes == 10
    # the first test labels of the official files: ankle boot, pullover, trouser, trouser, shirt
    assert d.test_y[:5].tolist() == [9, 2, 1, 1, 6]
    assert d.mean[0] == pytest.approx(0.2860, abs=1e-4) and d.std[0] == pytest.approx(0.3530, abs=1e-4)
