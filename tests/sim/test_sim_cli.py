"""``pgf-sim simulate``: output formats parse, several targets/patterns, errors exit 2 with a message."""
import csv
import io
import json

import pytest

from pgf_sim.cli import main


def run(capsys, *argv):
    rc = main(["simulate", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_table_with_several_patterns_and_summary(capsys):
    rc, out, _ = run(capsys, "--model", "vit_b", "--hw", "a100_80gb", "--pattern", "2:4", "--pattern", "1:8",
                     "--qkv-pattern", "2:4")
    assert rc == 0
    assert out.count("TOTAL") == 2 and "summary" in out
    assert "blocks.*.mlp.fc1" in out and "blocks.*.attn.qkv" in out


def test_csv_and_json_parse(capsys, tmp_path):
    rc, out, _ = run(capsys, "--model", "gpt2", "--seq-len", "256", "--phase", "decode", "--hw", "a100_80gb",
                     "--hw", "a100_80gb", "--pattern", "2:4", "--format", "csv")
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    layers = [r["layer"] for r in rows if r["hardware"] == "a100_80gb"]
    assert "blocks.*.attn.kv_cache_write" in layers and all(float(r["latency_s"]) > 0 for r in rows)
    out_file = tmp_path / "r.json"
    rc, _, err = run(capsys, "--gemm", "1024,4096,4096", "--hw", "a100_80gb", "--pattern", "dense",
                     "--pattern", "2:4", "--format", "json", "--out", str(out_file))
    assert rc == 0 and "wrote" in err
    data = json.loads(out_file.read_text())
    assert [r["rows"][0]["pattern"] for r in data["results"]] == ["dense", "2:4"]
    assert data["results"][0]["rows"][0]["dense_flops"] == 2 * 1024 * 4096 * 4096
    assert len(data["summary"]) == 2 and data["summary"][1]["speedup_vs_dense"] >= 1.0


def test_hardware_given_as_yaml_file(capsys, tmp_path):
    from pgf_sim.sim.hardware import hardware_dir

    custom = tmp_path / "my_chip.yaml"
    custom.write_text((hardware_dir() / "h100_sxm.yaml").read_text())
    rc, out, _ = run(capsys, "--gemm", "4096,4096,4096", "--hw", str(custom), "--hw", "a100_80gb", "--format", "json")
    assert rc == 0
    results = json.loads(out)["results"]
    assert len(results) == 2 and results[0]["totals"]["latency_s"] < results[1]["totals"]["latency_s"]  # H100 faster


def test_per_block_rows(capsys):
    rc, out, _ = run(capsys, "--model", "vit_ti", "--hw", "a100_80gb", "--per-block", "--format", "csv")
    assert rc == 0
    layers = [r["layer"] for r in csv.DictReader(io.StringIO(out))]
    assert "blocks.11.mlp.fc2" in layers and not any("*" in name for name in layers)


def test_train_phase(capsys):
    rc, out, _ = run(capsys, "--model", "vit_ti", "--hw", "a100_80gb", "--phase", "train", "--recipe", "sdgf",
                     "--pattern", "1:4", "--steps", "100", "--batch", "8")
    assert rc == 0 and "1:4->3:4" in out and "1:4->1:4" in out and "speedup vs dense training" in out


@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet_9000", "--hw", "a100_80gb"], "bert_base, gpt2, llama_7b"),  # lists the valid names
    (["--model", "vit_b", "--hw", "no_such_chip"], "no_such_chip"),
    (["--model", "vit_b", "--hw", "a100_80gb", "--pattern", "5:4"], "5:4"),
    (["--model", "vit_ti", "--hw", "a100_80gb", "--pattern", "1:256"], "K=192"),
    (["--model", "bert_base", "--hw", "a100_80gb", "--phase", "decode"], "encoder-only"),
    (["--gemm", "10,10", "--hw", "a100_80gb"], "M,N,K"),
    (["--gemm", "8,8,10", "--hw", "a100_80gb", "--pattern", "2:4"], "K=10"),
])
def test_errors_exit_2(capsys, argv, message):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and err.startswith("pgf-sim: error:") and message in err


def test_directory_that_is_not_a_run(capsys, tmp_path):
    rc, _, err = run(capsys, "--model", str(tmp_path), "--hw", "a100_80gb")
    assert rc == 2 and "not a training run directory (no config.json)" in err
    (tmp_path / "config.json").write_text("{}")  # started but unfinished: the trainer's own message
    rc, _, err = run(capsys, "--model", str(tmp_path), "--hw", "a100_80gb")
    assert rc == 2 and "final_model.pt" in err


def test_trained_run_directory(capsys, tmp_path):
    """A run directory as the trainer writes it: patterns come from the saved (pruned) weights."""
    import torch

    from pgf_sim.train.data import data_spec
    from pgf_sim.train.experiment import load_experiment
    from pgf_sim.train.models import build_model
    from pgf_sim.core import NM
    from pgf_sim.train.masks import nm_mask
    from pgf_sim.train.trainer import CONFIG_NAME, FINAL_MODEL_NAME

    cfg = load_experiment("training/digits_vit.yaml")
    model = build_model(cfg.model, data_spec(cfg.data))
    fc = [(name, mod) for name, mod in model.named_modules() if name.endswith(("fc1", "fc2"))]
    assert fc, "the digits ViT has fc1/fc2 layers"
    with torch.no_grad():
        for i, (_, mod) in enumerate(fc):
            mod.weight.mul_(nm_mask(mod.weight, NM(2, 4) if i % 2 else NM(1, 8)))
    torch.save(model.state_dict(), tmp_path / FINAL_MODEL_NAME)
    (tmp_path / CONFIG_NAME).write_text(json.dumps(cfg.to_dict()))
    rc, out, err = run(capsys, "--model", str(tmp_path), "--hw", "a100_80gb", "--format", "json", "--per-block")
    assert rc == 0, err
    rows = {r["layer"]: r for r in json.loads(out)["results"][0]["rows"]}
    for i, (name, _) in enumerate(fc):
        assert rows[name]["pattern"] == ("2:4" if i % 2 else "1:8")
        assert rows[name]["exec_pattern"] == "2:4"
    rc, _, err = run(capsys, "--model", str(tmp_path), "--hw", "a100_80gb", "--pattern", "2:4")
    assert rc == 2 and "read from the trained weights" in err


def test_trained_run_directory_training_cost(capsys, tmp_path):
    """--phase train on a run directory uses the run's own recipe; --recipe is refused."""
    import torch

    from pgf_sim.train.data import data_spec
    from pgf_sim.train.experiment import load_experiment
    from pgf_sim.train.models import build_model
    from pgf_sim.train.trainer import CONFIG_NAME, FINAL_MODEL_NAME

    cfg = load_experiment("training/digits_vit.yaml", ["recipe.name=sdgf", "recipe.pattern=1:4"])
    torch.save(build_model(cfg.model, data_spec(cfg.data)).state_dict(), tmp_path / FINAL_MODEL_NAME)
    (tmp_path / CONFIG_NAME).write_text(json.dumps(cfg.to_dict()))
    rc, out, err = run(capsys, "--model", str(tmp_path), "--hw", "flex_nm_systolic", "--phase", "train",
                       "--steps", "100")
    assert rc == 0, err
    assert "with sdgf, 100 steps" in out and "1:4->3:4" in out and "1:4->1:4" in out
    rc, _, err = run(capsys, "--model", str(tmp_path), "--hw", "a100_80gb", "--phase", "train", "--recipe", "ste")
    assert rc == 2 and "trained with sdgf" in err


def test_simulate_fused_profile_prints_footprint_and_strict_dtype_errors(capsys):
    assert main(["simulate", "--hw", "a100_80gb", "--hw", "edge_npu", "--model", "llama_7b", "--phase", "decode",
                 "--seq-len", "2048", "--profile", "fused"]) == 0
    out = capsys.readouterr().out
    assert "runtime=fused" in out and "of 80.0 GB: fits" in out and "DOES NOT FIT" in out
    assert main(["simulate", "--hw", "a100_80gb", "--gemm", "64,64,64", "--dtype", "fp8"]) == 2
    assert "no matrix rate for dtype 'fp8'" in capsys.readouterr().err
