"""Bad-input catalogue, part 3 (issue 16): outputs that are not regular files, foreign and future
databases, unbounded inputs, unchecked numbers, duplicate YAML keys, patterns that are not ASCII
digits, the user's own bad data, and control characters. Every row drives the real CLI: exit 2,
one ``pgf-sim: error:`` line naming the thing, no traceback, and nothing changed on disk.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import make_tiny_dict
from pgf_sim.cli import main

REPO = Path(__file__).resolve().parents[1]
HW = REPO / "hw_configs" / "a100_80gb.yaml"
SIM = ["simulate", "--hw", "a100_80gb", "--gemm", "64,64,64"]

USER_DATA = textwrap.dedent('''
    """Own data with one defect each, declared as factories."""
    import torch
    from torch import nn

    import pgf_sim


    def _pair(n, dim=8, classes=3):
        g = torch.Generator().manual_seed(0)
        return torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g)


    @pgf_sim.factory
    def good():
        return {"train": _pair(64), "test": _pair(16)}


    @pgf_sim.factory
    def negative_labels():
        x, y = _pair(64)
        y[3] = -1
        return {"train": (x, y), "test": _pair(16)}


    @pgf_sim.factory
    def bool_labels():
        x, _ = _pair(64)
        return {"train": (x, x[:, 0] > 0), "test": (x[:16], x[:16, 0] > 0)}


    @pgf_sim.factory
    def shape_mismatch():
        return {"train": _pair(64, dim=8), "test": _pair(16, dim=9)}


    @pgf_sim.factory
    def nan_inputs():
        x, y = _pair(64)
        x[5, 2] = float("nan")
        return {"train": (x, y), "test": _pair(16)}


    @pgf_sim.factory
    def inf_inputs():
        x, y = _pair(64)
        x[1, 1] = float("inf")
        return {"train": (x, y), "test": _pair(16)}


    @pgf_sim.factory
    def label_past_num_classes():
        return {"train": _pair(64, classes=5), "test": _pair(16), "num_classes": 3}


    @pgf_sim.factory
    def bad_num_classes():
        return {"train": _pair(64), "test": _pair(16), "num_classes": 2.5}


    @pgf_sim.factory
    def complex_inputs():
        x, y = _pair(64)
        return {"train": (x.to(torch.complex64), y), "test": _pair(16)}


    @pgf_sim.factory
    def raises():
        raise FileNotFoundError("/data/missing.npz")


    @pgf_sim.factory
    def model(spec, outputs=3):
        return nn.Linear(spec.input_shape[0], outputs)


    @pgf_sim.factory
    def model_returns_tuple(spec):
        class Two(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(spec.input_shape[0], 3)

            def forward(self, x):
                return self.fc(x), 0
        return Two()


    @pgf_sim.factory
    def model_nan(spec):
        class Nan(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(spec.input_shape[0], 3)

            def forward(self, x):
                return self.fc(x) * float("nan")
        return Nan()


    def undeclared(spec):
        return nn.Linear(spec.input_shape[0], 3)
''')


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out + err


def _tree(d: Path) -> dict[str, str]:
    """Every plain file under ``d`` with its hash (links and devices by kind): what changed on disk.
    Not counted: the run locks and the training database the own-model rows reach (their model
    is checked on the data, before step 1, once the run's lock is held)."""
    out = {}
    for p in sorted(d.rglob("*")):
        if ".locks" in p.parts or p.name.startswith("t.sqlite"):
            continue
        if p.is_symlink() or not p.exists():
            out[str(p)] = "link"
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif not p.is_dir():
            out[str(p)] = "special"
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    import torch

    d = tmp_path_factory.mktemp("bounds")
    tiny = make_tiny_dict(recipe="sr-ste", steps=3)
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(d / "tiny.yaml"), "--run-id", "good", "--workdir", str(d / "runs"),
                     "--db", str(d / "r.sqlite"), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    # outputs that are not regular files
    (d / "target.txt").write_text("keep me\n")
    os.symlink(d / "target.txt", d / "link.txt")
    os.symlink(d / "nowhere.txt", d / "dangling.txt")
    os.mkfifo(d / "fifo")
    # foreign and future databases
    con = sqlite3.connect(d / "other_app.sqlite")
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers VALUES (1, 'x')")
    con.commit()
    con.close()
    con = sqlite3.connect(d / "fake_runs.sqlite")  # a table named runs, but not ours
    con.execute("CREATE TABLE runs (id INTEGER, what TEXT)")
    con.commit()
    con.close()
    (d / "future.sqlite").write_bytes((d / "r.sqlite").read_bytes())
    con = sqlite3.connect(d / "future.sqlite")
    con.execute("PRAGMA user_version=99")
    con.close()
    # YAML with a key given twice, and hardware files with bad numbers
    (d / "dup.yaml").write_text(yaml.safe_dump(tiny) + "seed: 3\nseed: 4\n")
    (d / "dup_nested.yaml").write_text(yaml.safe_dump(tiny).replace("  lr: 0.002\n", "  lr: 0.002\n  lr: 0.5\n"))
    hw_text = HW.read_text()
    (d / "hw_dup.yaml").write_text(hw_text + "\nname: again\n")
    (d / "big.yaml").write_bytes(b"# " + b"x" * (65 * 2**20) + b"\n")
    # own data
    (d / "own_data_mod.py").write_text(USER_DATA)
    return d


def _own(data: str, model: str = "own_data_mod:model", **opts) -> str:
    return yaml.safe_dump({"name": "own", "model": {"name": "m", "factory": model, "options": opts},
                           "data": {"name": "d", "factory": f"own_data_mod:{data}"},
                           "recipe": {"name": "dense"}, "schedule": {"steps": 2, "batch_size": 8}})


TRAIN = ["--db", "{d}/t.sqlite", "--workdir", "{d}/truns", "--no-progress"]


def _train(override: str) -> list[str]:
    return ["train", "{d}/tiny.yaml", override, *TRAIN]


def _pattern_cases():
    bad = ["²:⁴", "٢:٤", "２:４", "2:٤", "𝟐:𝟒", "2:4\u200b", "2：4", "0x2:4", "+2:4", "2:-4", "2.0:4", "2:4:8", "", ":",
           "2:", "[a,b]", "[2.9,4.1]", "[true,4]", "[2]", "[2,4,8]", "[null,4]", "{n: 2}", "1e1:20", "٢"]
    rows = []
    for p in bad:
        rows.append((f"recipe.pattern={p!r}", _train(f"recipe.pattern={p}"), ["recipe.pattern"]))
    for p in ["²:⁴", "٢:٤", "２:４", "2.9:4", "1:1e3"]:
        rows.append((f"simulate --pattern {p!r}", ["simulate", "--hw", "a100_80gb", "--model", "vit_ti",
                                                    "--pattern", p], ["pattern"]))
        rows.append((f"dse --pattern {p!r}", ["dse", "--hw", "flex_nm_systolic", "--model", "vit_ti",
                                               "--pattern", p], ["pattern"]))
    return rows


def _number_cases():
    rows = []
    for v in ["nan", "inf", "-inf", "1e400", "0"]:
        rows.append((f"generate --temperature {v}", ["generate", "{d}/runs/good", f"--temperature={v}"],
                     ["--temperature"]))
    for v in ["nan", "inf", "-0.5", "1e30"]:
        rows.append((f"mixed --budget {v}", ["mixed", "--db", "{d}/r.sqlite", "--hw", "a100_80gb", f"--budget={v}"],
                     ["--budget"]))
    for v in ["nan", "inf", "1e300"]:
        rows.append((f"pick --limit {v}", ["pick", "--db", "{d}/r.sqlite", "--hw", "a100_80gb", f"--limit={v}"],
                     ["--limit"]))
    for v in ["nan", "inf"]:
        rows.append((f"pick --max-drop {v}", ["pick", "--db", "{d}/r.sqlite", "--hw", "a100_80gb", f"--max-drop={v}"],
                     ["--max-drop"]))
    for v in ["nan", "0", "1", "inf"]:
        rows.append((f"study --alpha {v}", ["study", "{d}/r.sqlite", f"--alpha={v}"], ["--alpha"]))
    for v in ["0", "100000000000", "-5"]:
        rows.append((f"generate --chars {v}", ["generate", "{d}/runs/good", f"--chars={v}"], ["--chars"]))
    rows.append(("generate --seed -1", ["generate", "{d}/runs/good", "--seed=-1"], ["--seed"]))
    rows.append(("generate --seed 2**40", ["generate", "{d}/runs/good", "--seed", str(2**40)], ["--seed"]))
    rows.append(("simulate --batch x --seq-len overflow",
                 ["simulate", "--hw", "a100_80gb", "--model", "gpt2", "--batch", "2147483647", "--seq-len",
                  "2147483647"], ["--batch", "--seq-len"]))
    rows.append(("dse --batch x --seq-len overflow",
                 ["dse", "--hw", "flex_nm_systolic", "--model", "gpt2", "--pattern", "2:4", "--batch", "65536",
                  "--seq-len", "65536"], ["--batch", "--seq-len"]))
    rows.append(("mixed --finetune-steps 1e12", ["mixed", "--db", "{d}/r.sqlite", "--hw", "a100_80gb",
                                                 "--finetune-steps", "1000000000000"], ["--finetune-steps"]))
    rows.append(("simulate --steps 0", ["simulate", "--hw", "a100_80gb", "--model", "vit_ti", "--phase", "train",
                                        "--steps", "0"], ["--steps"]))
    for key, v in [("schedule.lr", ".nan"), ("schedule.lr", ".inf"), ("schedule.lr", "-.inf"),
                   ("schedule.weight_decay", ".nan"), ("schedule.warmup_fraction", ".nan"),
                   ("schedule.grad_clip", ".inf"), ("data.val_fraction", ".nan"), ("schedule.lr", "1e400"),
                   ("schedule.lr", "nan"), ("schedule.lr", "inf"), ("schedule.steps", "1e18"),
                   ("schedule.steps", "1000000000000"), ("schedule.batch_size", "1e20"),
                   ("recipe.decay", ".nan"), ("model.options.mlp_ratio", ".nan"), ("model.options.mlp_ratio", ".inf")]:
        rows.append((f"{key}={v}", _train(f"{key}={v}"), [key.split(".")[-1]]))
    return rows


def _file_cases():
    rows = []
    for name, path in [("/dev/zero", "/dev/zero"), ("a FIFO", "{d}/fifo"), ("a directory", "{d}"),
                       ("over the size limit", "{d}/big.yaml"), ("/dev/null", "/dev/null")]:
        rows.append((f"train {name}", ["train", path], ["train" if False else path.split("/")[-1] or path]))
        rows.append((f"simulate --hw {name}", ["simulate", "--hw", path, "--gemm", "8,8,8"],
                     [path.split("/")[-1] or path]))
        rows.append((f"sweep {name}", ["sweep", path, "--db", "{d}/s.sqlite", "--workdir", "{d}/sruns"],
                     [path.split("/")[-1] or path]))
        rows.append((f"hw validate {name}", ["hw", "validate", path], [path.split("/")[-1] or path]))
    rows.append(("duplicate top-level key", ["train", "{d}/dup.yaml", *TRAIN], ["dup.yaml", "'seed'", "twice"]))
    rows.append(("duplicate nested key", ["train", "{d}/dup_nested.yaml", *TRAIN], ["dup_nested.yaml", "'lr'", "twice"]))
    rows.append(("duplicate key in hardware", ["hw", "validate", "{d}/hw_dup.yaml"], ["hw_dup.yaml", "'name'", "twice"]))
    rows.append(("duplicate key in an override", _train("seed={a: 1, a: 2}"), ["'a'", "twice"]))
    return rows


def _output_cases():
    rows = []
    for name, out in [("a symlink", "{d}/link.txt"), ("a dangling symlink", "{d}/dangling.txt"),
                      ("a FIFO", "{d}/fifo"), ("a character device", "/dev/null")]:
        rows.append((f"simulate --out {name}", [*SIM, "--out", out], [out.split("/")[-1], "not a regular file"]))
        rows.append((f"export --out {name} --force", ["export", "{d}/runs/good", "--out", out, "--force"],
                     [out.split("/")[-1], "not a regular file"]))
        rows.append((f"report --out {name}", ["report", "--db", "{d}/r.sqlite", "--out", out],
                     [out.split("/")[-1], "not a regular file"]))
    return rows


def _database_cases():
    rows = []
    for db, words in [("other_app.sqlite", ["other_app.sqlite", "not a pgf-sim result database", "customers"]),
                      ("fake_runs.sqlite", ["fake_runs.sqlite", "not a pgf-sim result database"]),
                      ("future.sqlite", ["future.sqlite", "schema version 99", "upgrade"])]:
        for cmd in (["results"], ["results", "good"], ["pick", "--hw", "a100_80gb"], ["report", "--out", "{d}/x.html"],
                    ["study"], ["mixed", "--hw", "a100_80gb"], ["train", "{d}/tiny.yaml", "--workdir", "{d}/truns"],
                    ["sweep", str(REPO / "training" / "sweep_default.yaml"), "--workdir", "{d}/sruns"]):
            argv = [*cmd, f"{{d}}/{db}"] if cmd == ["study"] else [*cmd, "--db", f"{{d}}/{db}"]
            rows.append((f"{cmd[0]} --db {db}", argv, words))
    return rows


def _own_data_cases():
    rows = []
    for data, words in [("negative_labels", ["negative_labels", "labels", ">= 0", "-1"]),
                        ("bool_labels", ["bool_labels", "labels", "bool"]),
                        ("shape_mismatch", ["shape_mismatch", "(9,)", "(8,)"]),
                        ("nan_inputs", ["nan_inputs", "NaN"]), ("inf_inputs", ["inf_inputs", "infinite"]),
                        ("label_past_num_classes", ["label_past_num_classes", "num_classes=3"]),
                        ("bad_num_classes", ["bad_num_classes", "num_classes", "2.5"]),
                        ("complex_inputs", ["complex_inputs", "complex64"]),
                        ("raises", ["own_data_mod:raises", "FileNotFoundError", "missing.npz"])]:
        rows.append((f"own data: {data}", ["train", f"{{d}}/own_{data}.yaml", *TRAIN], words))
    rows.append(("own model with too few outputs", ["train", "{d}/own_few.yaml", *TRAIN], ["2 outputs", "3 classes"]))
    rows.append(("own model returning a tuple", ["train", "{d}/own_tuple.yaml", *TRAIN], ["tuple", "not a tensor"]))
    rows.append(("own model returning NaN", ["train", "{d}/own_nan.yaml", *TRAIN], ["NaN"]))
    rows.append(("undeclared own model", ["train", "{d}/own_undeclared.yaml", *TRAIN],
                 ["own_data_mod:undeclared", "not a declared factory", "--trust-module own_data_mod"]))
    return rows


CASES = [*_pattern_cases(), *_number_cases(), *_file_cases(), *_output_cases(), *_database_cases(),
         *_own_data_cases()]


@pytest.fixture(scope="module")
def own_files(work):
    for data in ("negative_labels", "bool_labels", "shape_mismatch", "nan_inputs", "inf_inputs",
                 "label_past_num_classes", "bad_num_classes", "complex_inputs", "raises"):
        (work / f"own_{data}.yaml").write_text(_own(data))
    (work / "own_few.yaml").write_text(_own("good", outputs=2))
    (work / "own_tuple.yaml").write_text(_own("good", "own_data_mod:model_returns_tuple"))
    (work / "own_nan.yaml").write_text(_own("good", "own_data_mod:model_nan"))
    (work / "own_undeclared.yaml").write_text(_own("good", "own_data_mod:undeclared"))
    return work


@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_named_line_and_changes_nothing(work, own_files, capsys, monkeypatch, argv, words):
    import torch

    torch.set_num_threads(1)
    monkeypatch.syspath_prepend(str(work))
    before = _tree(work)
    rc, text = _cli([a.replace("{d}", str(work)) for a in argv], capsys)
    assert rc == 2, text
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.startswith("pgf-sim: error:")]
    assert len(lines) == 1, text
    for word in words:
        assert word.replace("{d}", str(work)) in lines[0], (word, lines[0])
    assert _tree(work) == before  # nothing created, replaced or deleted
    assert not [p for p in (work / "truns").glob("*") if p.name != ".locks"] and not (work / "sruns").exists()
    assert os.path.islink(work / "link.txt") and (work / "target.txt").read_text() == "keep me\n"


def test_output_permissions_follow_the_umask(tmp_path, capsys):
    old = os.umask(0o027)
    try:
        assert _cli([*SIM, "--out", str(tmp_path / "o.txt")], capsys)[0] == 0
    finally:
        os.umask(old)
    assert (tmp_path / "o.txt").stat().st_mode & 0o777 == 0o640


def test_a_read_only_database_can_still_be_read(work, tmp_path, capsys):
    """Opened with SQLite's mode=ro: results, pick and study read a file they may not write."""
    db = tmp_path / "ro.sqlite"
    db.write_bytes((work / "r.sqlite").read_bytes())
    db.chmod(0o444)
    for argv in (["results", "--db", str(db)], ["results", "good", "--db", str(db)]):
        rc, text = _cli(argv, capsys)
        assert rc == 0 and "good" in text, text
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1  # written by this version
    con.close()


def test_an_old_database_is_migrated_to_the_current_version(work, tmp_path, capsys):
    db = tmp_path / "old.sqlite"
    db.write_bytes((work / "r.sqlite").read_bytes())
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version=0")
    con.close()
    from pgf_sim.store import SCHEMA_VERSION, ResultStore

    assert ResultStore(db).get_run("good").status == "finished"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_results_of_a_run_never_simulated(work, capsys):
    for fmt in ("table", "json", "csv"):
        rc, text = _cli(["results", "good", "--db", str(work / "r.sqlite"), "--format", fmt], capsys)
        assert rc == 0 and "good" in text and "Traceback" not in text, text


def test_control_characters_in_names_are_escaped(work, capsys):
    rc, text = _cli(["results", "bad\x1b]0;pwned\x07\x1b[2Jrun", "--db", str(work / "r.sqlite")], capsys)
    assert rc == 2 and "\x1b" not in text and "\x07" not in text and "\\x1b" in text, text
