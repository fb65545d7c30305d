"""Sweep config and grid expansion: counts, dense collapse, strict errors, run-id stability."""
import json
import subprocess
import sys

import pytest
import yaml

from pgf_sim.codesign.run.sweep import expand, load_sweep
from pgf_sim.core import NM, ConfigError

BASE = {
    "name": "grid",
    "experiment": {"name": "tiny", "schedule": {"steps": 20, "batch_size": 32},
                   "model": {"name": "vit", "options": {"dim": 32, "depth": 1, "heads": 2}}},
    "grid": {"recipes": ["dense", "sr-ste", "mdgf"], "patterns": ["2:4", "1:8"], "seeds": [0, 1]},
    "hardware": ["a100_80gb"],
}


def _write(tmp_path, data, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_grid_counts_and_dense_collapse(tmp_path):
    pts = expand(load_sweep(_write(tmp_path, BASE)))
    # dense once per seed (2) + 2 sparse recipes x 2 patterns x 2 seeds (8)
    assert len(pts) == 10
    dense = [p for p in pts if p.recipe == "dense"]
    assert [(p.pattern, p.seed) for p in dense] == [(NM(1, 1), 0), (NM(1, 1), 1)]
    combos = {(p.recipe, str(p.pattern), p.seed) for p in pts if p.recipe != "dense"}
    assert combos == {(r, pat, s) for r in ("sr-ste", "mdgf") for pat in ("2:4", "1:8") for s in (0, 1)}
    for p in pts:
        exp = p.experiment
        assert exp.recipe.name == p.recipe and exp.recipe.pattern == p.pattern and exp.seed == p.seed
        # the run id is the experiment's own default id: `pgf-sim train` of the same config finds it
        assert p.run_id == exp.default_run_id()
    assert len({p.run_id for p in pts}) == len(pts)


def test_params_models_and_recipe_variants(tmp_path):
    data = json.loads(json.dumps(BASE))
    data["grid"] = {
        "recipes": {"dense": {}, "mdgf-lin": {"name": "mdgf", "decay": "linear"}, "mdgf-exp": {"name": "mdgf"}},
        "patterns": ["1:8"], "seeds": [0],
        "models": {"d32": {"options": {"dim": 32}}, "d64": {"options": {"dim": 64}}},
        "params": {"recipe.dense_fraction": [0.0, 0.2], "schedule.lr": [0.001]},
    }
    pts = expand(load_sweep(_write(tmp_path, data)))
    # per model: dense once (recipe.* params do not apply to it) + 2 variants x 2 dense fractions
    assert len(pts) == 2 * (1 + 2 * 2)
    for p in pts:
        exp = p.experiment
        assert exp.model.options["dim"] == int(p.model[1:])
        assert exp.model.options["depth"] == 1  # merged into the base model section, not replaced
        assert exp.schedule.lr == 0.001
        if p.recipe == "dense":
            assert "recipe.dense_fraction" not in p.params
        else:
            assert exp.recipe.dense_fraction == p.params["recipe.dense_fraction"]
            assert exp.recipe.decay == ("linear" if p.recipe == "mdgf-lin" else "exponential")


def test_run_ids_are_stable_and_track_the_config(tmp_path):
    path = _write(tmp_path, BASE)
    ids = [p.run_id for p in expand(load_sweep(path))]
    # same file in another interpreter (other hash seed): same ids
    code = ("import sys; from pgf_sim.codesign.run.sweep import expand, load_sweep; "
            "print('\\n'.join(p.run_id for p in expand(load_sweep(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.split()
    assert out == ids
    # key order in the YAML does not matter; a default written out explicitly does not either
    reordered = {k: BASE[k] for k in reversed(list(BASE))}
    reordered = json.loads(json.dumps(reordered))
    reordered["experiment"]["seed"] = 0
    reordered["experiment"]["schedule"] = {"batch_size": 32, "steps": 20, "lr": 1e-3}
    assert [p.run_id for p in expand(load_sweep(_write(tmp_path, reordered, "b.yaml")))] == ids
    # any real change (one more step) gives every run a new id
    changed = json.loads(json.dumps(BASE))
    changed["experiment"]["schedule"]["steps"] = 21
    assert not set(ids) & {p.run_id for p in expand(load_sweep(_write(tmp_path, changed, "c.yaml")))}
    # overrides land in every point and the ids follow them
    with_override = json.loads(json.dumps(BASE))
    with_override["overrides"] = {"schedule.steps": 21}
    assert [p.run_id for p in expand(load_sweep(_write(tmp_path, with_override, "d.yaml")))] == \
        [p.run_id for p in expand(load_sweep(_write(tmp_path, changed, "c.yaml")))]


def test_experiment_from_a_file_relative_to_the_sweep(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "exp.yaml").write_text(yaml.safe_dump(BASE["experiment"]))
    data = {**BASE, "experiment": "exp.yaml", "hardware": ["a100_80gb", "mine.yaml"]}
    sweep = load_sweep(_write(tmp_path / "sub", data))
    assert [p.run_id for p in expand(sweep)] == [p.run_id for p in expand(load_sweep(_write(tmp_path, BASE)))]
    assert sweep.hardware_specs() == [("a100_80gb", "a100_80gb"), ("mine", str((tmp_path / "sub" / "mine.yaml").resolve()))]


@pytest.mark.parametrize("change, message", [
    (lambda d: d["grid"].update(colour=["red"]), "unknown key.*'colour'.*valid keys: recipes, patterns, seeds"),
    (lambda d: d["grid"].update(patterns=["2:5:1"]), "grid.patterns\\[0\\].*cannot parse"),
    (lambda d: d["grid"].update(recipes=["dense", "magic"]), "unknown recipe 'magic'"),
    (lambda d: d["experiment"]["schedule"].update(lr=-1), "lr must be > 0"),
    (lambda d: d.update(hardware=[]), "hardware is empty"),
    (lambda d: d["grid"].update(seeds=[0, 0]), "seeds has duplicates"),
    (lambda d: d.pop("grid"), "grid' is missing"),
])
def test_bad_sweeps_name_the_problem(tmp_path, change, message):
    data = json.loads(json.dumps(BASE))
    change(data)
    with pytest.raises(ConfigError, match=message):
        expand(load_sweep(_write(tmp_path, data)))


def test_two_points_with_the_same_experiment_are_an_error(tmp_path):
    data = json.loads(json.dumps(BASE))
    data["grid"]["recipes"] = {"a": {"name": "mdgf"}, "b": {"name": "mdgf"}}
    with pytest.raises(ConfigError, match="resolve to the same experiment"):
        expand(load_sweep(_write(tmp_path, data)))


def test_shipped_sweeps_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "training"
    sweeps = sorted(root.glob("sweep_*.yaml"))
    assert sweeps, "training/sweep_default.yaml is missing"
    for path in sweeps:
        pts = expand(load_sweep(path))
        assert pts, path


def test_nested_and_dotted_overrides_change_one_field(tmp_path):
    dotted = json.loads(json.dumps(BASE))
    dotted["overrides"] = {"schedule.steps": 21}
    nested = json.loads(json.dumps(BASE))
    nested["overrides"] = {"schedule": {"steps": 21}}  # what `overrides.schedule.steps=21` on the CLI makes
    a = expand(load_sweep(_write(tmp_path, dotted, "a.yaml")))
    b = expand(load_sweep(_write(tmp_path, nested, "b.yaml")))
    assert [p.run_id for p in a] == [p.run_id for p in b]
    assert all(p.experiment.schedule.batch_size == 32 and p.experiment.schedule.steps == 21 for p in b)


def test_default_sweep_is_the_char_lm_judged_by_validation_bpc():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "training"
    default = expand(load_sweep(root / "sweep_default.yaml"))
    assert len(default) == 14  # 2 seeds x (dense + SR-STE and MDGF at 2:4, 1:8, 1:16)
    exp = default[0].experiment
    assert exp.model.name == "char_gpt" and exp.data.name == "shakespeare" and exp.task_metric.name == "bpc"
    # every default run is also a run of the 3-seed measurement sweep: one database serves both
    seeds = {p.run_id for p in expand(load_sweep(root / "sweep_charlm_seeds.yaml"))}
    assert {p.run_id for p in default} <= seeds


@pytest.mark.slow  # one real tiny sweep (1 run of 20 steps)
def test_run_sweep_with_its_own_echo_prints_nothing_of_its_own(tmp_path, capfd):
    from pgf_sim.codesign.run.sweep import load_sweep, run_sweep

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "quiet", "experiment": {"name": "quiet", "model": {"name": "vit", "options": {"dim": 16, "depth": 1, "heads": 2}},
                                        "schedule": {"steps": 20, "batch_size": 16}},
        "grid": {"recipes": ["dense"], "patterns": ["2:4"], "seeds": [0]}, "hardware": ["a100_80gb"], "workers": 1}))
    lines = []
    out = run_sweep(load_sweep(path), db=tmp_path / "r.sqlite", workdir=tmp_path / "runs", echo=lines.append, threads=1)
    assert out.ok and any("quiet" in line for line in lines)
    captured = capfd.readouterr()  # the process's own stdout/stderr, the workers' included
    assert "step 20/20" not in captured.out + captured.err and "quiet-dense" not in captured.out


def test_width_arm_sweeps_follow_their_token_rule_and_reduced_runs_are_full_grid_runs():
    """docs/study.md, "Width arm": widths 64/128/256 at depth 4 train for tokens proportional to
    the non-embedding parameters (12 x width^2 x depth), 7.8 tokens per parameter (the H200
    measurement's 3000 steps at width 256); each grid is (1 + 3 x 2) x 5 seeds x 3 lrs = 105 runs;
    the reduced CPU runs of the doc are runs of the full grid (same run ids)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "training"
    for width, steps in ((64, 188), (128, 750), (256, 3000)):
        pts = expand(load_sweep(root / f"study_width{width}.yaml"))
        assert len(pts) == 105
        exp = pts[0].experiment
        assert (exp.model.options["dim"], exp.model.options["depth"], exp.schedule.steps) == (width, 4, steps)
        tokens = steps * exp.schedule.batch_size * exp.data.options["block_size"]
        assert tokens / (12 * width ** 2 * 4) == pytest.approx(7.8, rel=0.01)
        full = {p.run_id for p in pts}
        reduced = expand(load_sweep(root / f"study_width{width}.yaml", [
            'name=reduced', 'grid.patterns=["1:16"]', 'grid.params={schedule.lr: [3.0e-3]}',
            'grid.recipes={sr-ste: {}, mdgf: {}}', 'grid.seeds=[0, 1, 2]']))
        assert len(reduced) == 6 and {p.run_id for p in reduced} <= full
    control = expand(load_sweep(root / "study_width64_750.yaml"))
    assert {(p.experiment.model.options["dim"], p.experiment.schedule.steps) for p in control} == {(64, 750)}
    for path in sorted(root.glob("study_*.yaml")):  # every study sweep expands
        assert expand(load_sweep(path)), path
