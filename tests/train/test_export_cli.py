"""``pgf-sim export RUN_DIR``: per-layer sizes of the compressed file, bit-exact reload check."""
import math

import pytest
import torch

from pgf_sim.cli import main
from pgf_sim.core import NM
from pgf_sim.store import ResultStore
from pgf_sim.train.experiment import experiment_from_dict


@pytest.fixture
def run_dir(tmp_path, one_thread, tiny_dict):
    from pgf_sim.train.trainer import train

    data = tiny_dict(recipe="sr-ste", pattern="2:4")
    data["recipe"]["layer_patterns"] = {"*.fc2": "1:8"}
    summary = train(experiment_from_dict(data), store=ResultStore(tmp_path / "r.db"), workdir=tmp_path / "runs",
                    progress=False)
    return summary.run_dir


def _expected_bytes(shape, pattern: NM) -> int:
    """float32 kept values (N per group of M along the input dim) + ceil(log2 M)-bit indices, packed."""
    kept = math.prod(shape) // pattern.m * pattern.n
    return kept * 4 + math.ceil(kept * pattern.index_bits / 8)


def test_export_prints_per_layer_sizes_and_reloads_exactly(run_dir, capsys):
    from pgf_sim.train.export import read_compressed
    from pgf_sim.train.trainer import load_trained

    assert main(["export", str(run_dir)]) == 0
    out = capsys.readouterr().out
    path = run_dir / "model.nm.safetensors"
    assert path.is_file() and "reloads bit-exactly" in out
    model, _ = load_trained(run_dir)
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("blocks.")}
    w1, w2 = model.blocks[0].mlp.fc1.weight, model.blocks[0].mlp.fc2.weight
    for key, w, pat in (("blocks.0.mlp.fc1.weight", w1, NM(2, 4)), ("blocks.0.mlp.fc2.weight", w2, NM(1, 8))):
        assert rows[key][1] == str(pat)
        assert int(rows[key][3]) == _expected_bytes(w.shape, pat) and int(rows[key][4]) == w.numel() * 4
    assert set(rows) == {"blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight"}  # attention, head stay dense
    state, patterns = read_compressed(path)
    assert patterns == {"blocks.0.mlp.fc1.weight": NM(2, 4), "blocks.0.mlp.fc2.weight": NM(1, 8)}
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)
    total = [line.split() for line in out.splitlines() if line.startswith("total")][0]
    dense_total = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    assert int(total[-2]) == dense_total
    assert int(total[-3]) == dense_total - w1.numel() * 4 - w2.numel() * 4 + _expected_bytes(
        w1.shape, NM(2, 4)) + _expected_bytes(w2.shape, NM(1, 8))

    out_file = run_dir.parent / "elsewhere.safetensors"
    assert main(["export", str(run_dir), "--out", str(out_file)]) == 0 and out_file.is_file()
    capsys.readouterr()
    assert main(["export", str(run_dir), "--check", str(out_file)]) == 0
    assert "reloads bit-exactly" in capsys.readouterr().out


def test_check_catches_a_changed_value_and_a_foreign_file(run_dir, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    assert main(["export", str(run_dir)]) == 0
    path = run_dir / "model.nm.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    values = tensors["blocks.0.mlp.fc2.weight.values"]
    values.view(-1)[0] = -values.view(-1)[0] if values.view(-1)[0] != 0 else 1.0  # one kept value changed
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    capsys.readouterr()
    assert main(["export", str(run_dir), "--check", str(bad)]) == 2
    assert "blocks.0.mlp.fc2.weight differ" in capsys.readouterr().err
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    assert main(["export", str(run_dir), "--check", str(foreign)]) == 2
    assert "not a pgf_sim compressed export" in capsys.readouterr().err
