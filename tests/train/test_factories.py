"""The user's own model and data by import path: through `train` and `sweep`, and named errors."""
import textwrap

import pytest
import yaml

from pgf_sim.cli import main
from pgf_sim.core import ConfigError
from pgf_sim.store import ResultStore
from pgf_sim.train.experiment import experiment_from_dict
from pgf_sim.train.masks import complies


pytestmark = pytest.mark.usefixtures("one_thread")

USER_MODULE = textwrap.dedent('''
    """A user's own model and data, unknown to pgf_sim."""
    import torch
    from torch import nn

    import pgf_sim


    class TwoLayer(nn.Module):
        def __init__(self, n_in, width, n_out):
            super().__init__()
            self.fc1 = nn.Linear(n_in, width)
            self.fc2 = nn.Linear(width, width)
            self.head = nn.Linear(width, n_out)

        def forward(self, x):
            return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


    @pgf_sim.factory
    def build(spec, width=32):
        return TwoLayer(spec.input_shape[0], width, spec.num_classes)


    @pgf_sim.factory
    def load(n=320, dim=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, dim, generator=g)
        y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()  # 4 classes, each a quadrant of (x0, x1)
        train = torch.utils.data.TensorDataset(x[:256], y[:256])
        return {"train": train, "test": torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[256:], y[256:]),
                                                                     batch_size=16)}
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    name = f"my_user_mod_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _experiment(mod, steps=80):
    return {
        "name": "byo",
        "model": {"name": "mine", "factory": f"{mod}:build", "options": {"width": 32}},
        "data": {"name": "mine", "factory": f"{mod}:load", "options": {"n": 320}},
        "recipe": {"name": "sr-ste", "pattern": "1:4"},
        "schedule": {"steps": steps, "batch_size": 32, "lr": 1e-2, "warmup_fraction": 0.0},
        "checkpoint_every": 20,
    }


def test_user_model_and_data_train_through_the_train_command(tmp_path, user_module, capsys):
    exp = tmp_path / "byo.yaml"
    exp.write_text(yaml.safe_dump(_experiment(user_module)))
    db, runs = tmp_path / "db.sqlite", tmp_path / "runs"
    assert main(["train", str(exp), "--db", str(db), "--workdir", str(runs), "--run-id", "byo", "--no-progress"]) == 0
    run = ResultStore(db).get_run("byo")
    assert run.status == "finished" and run.final_accuracy > 0.5  # 4 classes: chance is 0.25
    layers = {r.layer: str(r.pattern) for r in ResultStore(db).run_layers("byo")}
    assert layers == {"fc1": "1:4", "fc2": "1:4"}  # roles inferred from the user's module names
    from pgf_sim.core import trust
    from pgf_sim.train.trainer import load_trained

    with pytest.raises(trust.UntrustedError, match="rerun with --trust"):
        load_trained(runs / "byo")  # a run directory may come from elsewhere: its factory is not run
    with trust.policy(trust_stored=True):
        model, _ = load_trained(runs / "byo")
    assert complies(model.fc1.weight, __import__("pgf_sim.core", fromlist=["NM"]).NM(1, 4))
    assert "accuracy validation" in capsys.readouterr().out


def test_user_model_and_data_train_through_a_sweep_with_worker_processes(tmp_path, user_module):
    sweep = {"name": "byo_sweep", "experiment": _experiment(user_module, steps=20),
             "grid": {"recipes": ["dense", "sr-ste"], "patterns": ["1:4"], "seeds": [0]},
             "hardware": ["a100_80gb"], "workers": 1, "simulate": {"batch": 4}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    db = tmp_path / "db.sqlite"
    assert main(["sweep", str(path), "--db", str(db), "--workdir", str(tmp_path / "runs"), "--threads", "1"]) == 0
    runs = ResultStore(db).list_runs()
    assert len(runs) == 2 and all(r.status == "finished" for r in runs)
    from pgf_sim.store import sim_key

    assert len(ResultStore(db).sim_totals(sim_key(4, "fp16"))) == 2  # simulated in the workers


@pytest.mark.parametrize("field, path, message", [
    ("model", "no_such_module_xyz:build", "model.factory: cannot import module 'no_such_module_xyz'"),
    ("data", "no_such_module_xyz:load", "data.factory: cannot import module 'no_such_module_xyz'"),
    ("model", "os:no_such_function", "model.factory: module 'os' of 'os:no_such_function' is part of the Python standard library"),
    ("model", "USER:TwoLayer.__init__", "names a private attribute"),
    ("model", "USER:TwoLayer", "is not a declared factory"),
    ("data", "not a path", "data.factory: 'not a path' is not an import path"),
])
def test_a_bad_import_path_is_a_named_error_before_training(tmp_path, user_module, capsys, field, path, message):
    exp = _experiment(user_module)
    exp[field]["factory"] = path.replace("USER", user_module)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        experiment_from_dict(exp, source="byo.yaml")
    yaml_path = tmp_path / "byo.yaml"
    yaml_path.write_text(yaml.safe_dump(exp))
    db = tmp_path / "db.sqlite"
    assert main(["train", str(yaml_path), "--db", str(db), "--workdir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert str(yaml_path) in err and message in err and "Traceback" not in err
    assert not db.exists() or ResultStore(db).list_runs() == []  # nothing started
    sweep = {"name": "s", "experiment": exp, "grid": {"recipes": ["dense"], "seeds": [0]}, "hardware": ["a100_80gb"]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    assert main(["sweep", str(tmp_path / "s.yaml"), "--db", str(db), "--workdir", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err


def test_an_undeclared_factory_runs_only_from_a_module_trusted_on_the_command_line(tmp_path, monkeypatch, capsys):
    name = f"plain_mod_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE.replace("@pgf_sim.factory\n", ""))
    monkeypatch.syspath_prepend(str(tmp_path))
    exp = tmp_path / "byo.yaml"
    exp.write_text(yaml.safe_dump(_experiment(name, steps=4)))
    argv = ["train", str(exp), "--db", str(tmp_path / "db.sqlite"), "--workdir", str(tmp_path / "runs"),
            "--run-id", "byo", "--no-progress"]
    assert main(argv) == 2
    assert f"--trust-module {name}" in capsys.readouterr().err
    assert main([*argv, "--trust-module", name]) == 0
    assert main(["export", str(tmp_path / "runs" / "byo"), "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "rerun with --trust" in capsys.readouterr().err and not (tmp_path / "m.safetensors").exists()
    assert main(["export", str(tmp_path / "runs" / "byo"), "--out", str(tmp_path / "m.safetensors"),
                 "--trust", "--trust-module", name]) == 0


def test_a_factory_that_raises_is_one_line_naming_it(tmp_path, user_module, capsys):
    exp = _experiment(user_module)
    exp["data"]["options"] = {"n": -5}  # torch.randn(-5, ...) raises inside the user's function
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(exp))
    assert main(["train", str(tmp_path / "x.yaml"), "--db", str(tmp_path / "db.sqlite"),
                 "--workdir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"data.factory '{user_module}:load' raised RuntimeError" in err and "Traceback" not in err
