"""Experiment config: strict loading, overrides, typed model/data options, no torch at import."""
import subprocess
import sys
from pathlib import Path

import pytest

from pgf_sim.core import NM, ConfigError, UnknownNameError
from pgf_sim.train.experiment import (
    DATA_OPTIONS, MODEL_OPTIONS, ExperimentConfig, ScheduleConfig, ViTOptions, experiment_from_dict, load_experiment,
)

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"


def _write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


MINIMAL = "name: t\nschedule: {steps: 5}\n"


EXPERIMENTS = ["digits_vit.yaml", "majority_transformer.yaml", "cifar10_vit.yaml"]


@pytest.mark.parametrize("path", [TRAINING / n for n in EXPERIMENTS], ids=lambda p: p.name)
def test_shipped_experiments_load(path):
    cfg = load_experiment(path)
    assert cfg.name == path.stem
    assert cfg.model.name in MODEL_OPTIONS and cfg.data.name in DATA_OPTIONS


def test_default_experiment_values():
    cfg = load_experiment(TRAINING / "digits_vit.yaml")
    assert cfg.model.typed() == ViTOptions(patch_size=2, dim=64, depth=4, heads=4)
    assert cfg.recipe.pattern == NM(2, 4)
    # 1797 digits, 20% test -> 1438 train; 1438 // 64 = 22 full batches per epoch, 40 epochs
    assert cfg.schedule.total_steps(1438) == 880


def test_minimal_config_takes_defaults(tmp_path):
    cfg = load_experiment(_write(tmp_path, MINIMAL))
    assert cfg.device == "cpu" and cfg.bf16 is False and cfg.model.name == "vit" and cfg.data.name == "digits"
    assert cfg.schedule.total_steps(10_000) == 5


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'lr'.*valid keys: .*schedule"):
        load_experiment(_write(tmp_path, MINIMAL + "lr: 0.1\n"))


def test_missing_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="'ExperimentConfig.schedule' is missing"):
        load_experiment(_write(tmp_path, "name: t\n"))


def test_bad_value_names_file_and_field(tmp_path):
    path = _write(tmp_path, MINIMAL + "device: tpu\n")
    with pytest.raises(ConfigError, match=rf"{path}.*'ExperimentConfig.device'.*'tpu'.*'cpu', 'cuda', 'auto'"):
        load_experiment(path)


def test_unknown_model_option_lists_valid_options(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'width'.*valid keys: dim, depth, heads, mlp_ratio, dropout, qkv, patch_size"):
        load_experiment(_write(tmp_path, MINIMAL + "model: {name: vit, options: {width: 3}}\n"))


def test_bad_model_option_type(tmp_path):
    with pytest.raises(ConfigError, match=r"options.dim.*expected an integer, got 'abc'"):
        load_experiment(_write(tmp_path, MINIMAL + "model: {name: vit, options: {dim: abc}}\n"))


def test_unknown_model_and_data_names_list_choices(tmp_path):
    with pytest.raises(UnknownNameError, match="seq_transformer, vit"):
        load_experiment(_write(tmp_path, MINIMAL + "model: {name: resnet}\n"))
    with pytest.raises(UnknownNameError, match="brackets, cifar10, digits, fashion_mnist, image_folder, majority, mnist_idx, shakespeare, text"):
        load_experiment(_write(tmp_path, MINIMAL + "data: {name: mnist}\n"))


def test_heads_must_divide_dim(tmp_path):
    with pytest.raises(ConfigError, match="dim=30 is not divisible by heads=4"):
        load_experiment(_write(tmp_path, MINIMAL + "model: {name: vit, options: {dim: 30}}\n"))


def test_steps_xor_epochs():
    with pytest.raises(ConfigError, match="exactly one of steps or epochs"):
        ScheduleConfig(steps=3, epochs=2)
    with pytest.raises(ConfigError, match="exactly one of steps or epochs"):
        ScheduleConfig()


def test_recipe_errors_come_from_the_recipe_config(tmp_path):
    with pytest.raises(ConfigError, match="unknown recipe 'magic'"):
        load_experiment(_write(tmp_path, MINIMAL + "recipe: {name: magic}\n"))


def test_overrides_are_validated_like_the_file(tmp_path):
    path = _write(tmp_path, MINIMAL)
    cfg = load_experiment(path, ["recipe.pattern=1:8", "recipe.name=sdgf", "model.options.depth=2", "seed=3"])
    assert cfg.recipe.pattern == NM(1, 8) and cfg.recipe.name == "sdgf"
    assert cfg.model.typed().depth == 2 and cfg.seed == 3
    with pytest.raises(ConfigError, match="exactly one of steps or epochs"):
        load_experiment(path, ["schedule.epochs=2"])
    assert load_experiment(path, ["schedule.epochs=2", "schedule.steps=null"]).schedule.epochs == 2
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        load_experiment(path, ["seed"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'sed'"):
        load_experiment(path, ["sed=1"])


def test_run_id_is_stable_and_tracks_the_config(tmp_path):
    a = load_experiment(_write(tmp_path, MINIMAL))
    b = experiment_from_dict(a.to_dict())
    assert a == b and a.default_run_id() == b.default_run_id()
    c = load_experiment(tmp_path / "exp.yaml", ["seed=1"])
    assert c.default_run_id() != a.default_run_id() and "-s1-" in c.default_run_id()


def test_diagnostics_window_checks(tmp_path):
    with pytest.raises(ConfigError, match="window"):
        load_experiment(_write(tmp_path, MINIMAL + "diagnostics: {every: 4, window: 8}\n"))


def test_experiment_and_cli_modules_import_no_torch():
    code = ("import sys, pgf_sim.train.experiment, pgf_sim.train.cli, pgf_sim.store; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_option_registries_match_builder_registries():
    from pgf_sim.train.data import DATASETS
    from pgf_sim.train.models import MODELS

    assert MODEL_OPTIONS.names() == MODELS.names()
    assert DATA_OPTIONS.names() == DATASETS.names()
