"""``pgf-sim train`` end to end on a tiny config, and its error output."""
import pytest
import yaml

from pgf_sim.cli import main
from pgf_sim.core import NM
from pgf_sim.store import ResultStore


pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_command_end_to_end(tmp_path, capsys, tiny_dict):
    exp = tmp_path / "tiny.yaml"
    exp.write_text(yaml.safe_dump(tiny_dict(steps=4)))
    db, runs = tmp_path / "res.sqlite", tmp_path / "runs"
    code = main(["train", str(exp), "recipe.pattern=1:8", "schedule.steps=3", "--device", "cpu",
                 "--workdir", str(runs), "--db", str(db), "--run-id", "cli-run", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "run cli-run: accuracy validation" in out and ", test " in out and str(db) in out
    run = ResultStore(db).get_run("cli-run")
    assert run.status == "finished" and run.pattern == NM(1, 8) and run.final_step == 3
    assert (runs / "cli-run" / "final_model.pt").is_file()
    assert f"validation {run.final_accuracy * 100:.2f}%" in out


def test_bad_yaml_key_is_a_clean_error(tmp_path, capsys, tiny_dict):
    exp = tmp_path / "bad.yaml"
    exp.write_text(yaml.safe_dump({**tiny_dict(), "epochz": 3}))
    assert main(["train", str(exp), "--db", str(tmp_path / "db"), "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pgf-sim: error: ") and "unknown key(s) 'epochz'" in err and "valid keys" in err
    assert "Traceback" not in err


def test_bad_override_and_missing_file(tmp_path, capsys, tiny_dict):
    exp = tmp_path / "ok.yaml"
    exp.write_text(yaml.safe_dump(tiny_dict()))
    assert main(["train", str(exp), "recipe.pattern=5:4", "--db", str(tmp_path / "db")]) == 2
    assert "need 1 <= N <= M" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_overrides_anywhere_on_the_line(tmp_path, capsys, tiny_dict):
    """KEY=VALUE overrides after, between and before flags all apply, later ones winning."""
    exp = tmp_path / "tiny.yaml"
    exp.write_text(yaml.safe_dump(tiny_dict(steps=4)))
    db = tmp_path / "res.sqlite"
    code = main(["train", str(exp), "schedule.steps=5", "--device", "cpu", "schedule.steps=2", "--workdir",
                 str(tmp_path / "runs"), "recipe.pattern=1:8", "--db", str(db), "--run-id", "mixed-order",
                 "--no-progress", "seed=4"])
    assert code == 0, capsys.readouterr().err
    run = ResultStore(db).get_run("mixed-order")
    assert run.final_step == 2 and run.pattern == NM(1, 8) and run.seed == 4


def test_parse_collects_overrides_in_line_order_and_rejects_the_rest(tmp_path, capsys):
    from pgf_sim.cli import build_parser, parse

    parser = build_parser()
    args = parse(parser, ["train", "x.yaml", "a=1", "--no-progress", "b.c=2", "--workdir", "w", "a=3"])
    assert args.overrides == ["a=1", "b.c=2", "a=3"] and args.no_progress and str(args.workdir) == "w"
    args = parse(parser, ["sweep", "s.yaml", "--db", "d", "workers=4"])
    assert args.overrides == ["workers=4"]
    for bad in (["train", "x.yaml", "--no-progress", "stray"], ["train", "x.yaml", "--bogus=1"],
                ["train", "x.yaml", "--no-progress", "=1"], ["pick", "--db", "d", "--hw", "a100_80gb", "seed=1"]):
        with pytest.raises(SystemExit) as info:
            parse(parser, bad)
        assert info.value.code == 2
        assert "unrecognized arguments" in capsys.readouterr().err
