"""Training loop: every recipe end to end, resume == uninterrupted, NaN stop, store contents."""
import re

import pytest

from pgf_sim.train import data_types as data_module  # TensorData draws its batches through batch_indices here
import torch

from pgf_sim.core import NM
from pgf_sim.store import ResultStore
from pgf_sim.train import trainer
from pgf_sim.train.checkpoint import CheckpointError
from pgf_sim.train.data import load_data
from pgf_sim.train.masks import complies
from pgf_sim.sparsity.schedules import RECIPES

pytestmark = pytest.mark.usefixtures("one_thread")

from pgf_sim.train.trainer import FINAL_MODEL_NAME, TrainingDiverged, evaluate, example_input, load_trained, lr_factor, train


@pytest.mark.parametrize("recipe", RECIPES.names())
def test_every_recipe_trains_the_tiny_default(recipe, tmp_path, tiny_cfg):
    cfg = tiny_cfg(recipe=recipe, diagnostics={"every": 3, "window": 2})
    store = ResultStore(tmp_path / "db.sqlite")
    s = train(cfg, store=store, workdir=tmp_path / "runs", progress=False)
    assert 0.0 <= s.final_accuracy <= 1.0 and s.final_step == 6
    run = store.get_run(s.run_id)
    assert run.status == "finished" and run.final_accuracy == s.final_accuracy
    assert [step for step, _, _ in store.run_metrics(s.run_id, "train_loss")] == list(range(1, 7))
    model, loaded_cfg = load_trained(s.run_dir)
    assert loaded_cfg == cfg
    for i in range(1):  # fc1 / fc2 of the block are sparse with the target pattern, others dense
        for layer in ("mlp.fc1", "mlp.fc2"):
            w = model.get_submodule(f"blocks.{i}.{layer}").weight
            if RECIPES.get(recipe).sparse:
                assert complies(w, NM(2, 4)), f"{recipe}: {layer} is not 2:4 after finalize"
            else:
                assert (w == 0).float().mean() < 0.01
    assert (model.get_submodule("blocks.0.attn.qkv").weight != 0).all()
    if RECIPES.get(recipe).sparse:  # the final patterns (SDGF starts at 3:4 but ends at 2:4)
        assert {str(p) for p, _, _ in s.layer_info.values()} == {"2:4"}
        assert {row.pattern for row in store.run_layers(s.run_id)} == {NM(2, 4)}
        assert {row.layer for row in store.run_layers(s.run_id)} == {"blocks.0.mlp.fc1", "blocks.0.mlp.fc2"}
    # the saved model scores what the run reported
    acc = evaluate(model, load_data(cfg.data), torch.device("cpu"), False)["accuracy"]
    assert acc == s.final_accuracy  # the validation split's accuracy (picks are made on it)
    test = evaluate(model, load_data(cfg.data), torch.device("cpu"), False, "test")
    assert store.run_metrics(s.run_id, "test_accuracy")[-1][-1] == test["accuracy"]
    assert store.run_metrics(s.run_id, "test_loss")[-1][-1] == pytest.approx(test["loss"])
    # diagnostics were logged for fc1/fc2 (for the dense baseline too), at steps 3 and 6
    diag = store.run_diagnostics(s.run_id, key="mask_flip_rate")
    assert {layer for _, layer, _, _ in diag} == {"blocks.0.mlp.fc1", "blocks.0.mlp.fc2"}
    assert {step for step, _, _, _ in diag} == {3, 6}
    assert all(0.0 <= v <= 1.0 for *_, v in diag)
    betas = [v for _, _, v in store.run_metrics(s.run_id, "beta")]
    if RECIPES.get(recipe).decays:  # MDGF's beta is logged each step and never grows
        assert len(betas) == 6 and betas[0] == 1.0 and all(a >= b for a, b in zip(betas, betas[1:]))
    else:
        assert betas == []
    if recipe == "dense":  # the hypothetical 2:4 mask of the moving dense weights does flip
        assert store.run_diagnostics(s.run_id, key="grad_var_pruned")
    assert run.train_flops > 0 and set(run.train_flops_split) == set(s.train_flops)


def _final_state(run_dir):
    return torch.load(run_dir / FINAL_MODEL_NAME, weights_only=True)


@pytest.mark.parametrize("recipe", ["mdgf", "sdgf", "one-shot", "gmp", "step"])  # masks and the frozen Adam variance are state a resume must restore
def test_resume_equals_uninterrupted(recipe, tmp_path, monkeypatch, tiny_cfg):
    cfg = tiny_cfg(recipe=recipe, steps=8, checkpoint_every=4, eval_every=2, diagnostics={"every": 4, "window": 2},
                   model={"name": "vit", "options": {"patch_size": 4, "dim": 32, "depth": 1, "heads": 2, "dropout": 0.1}})
    store = ResultStore(tmp_path / "db.sqlite")
    straight = train(cfg, store=store, run_id="straight", workdir=tmp_path, progress=False)

    real = data_module.batch_indices

    def crash_at_step_6(*args, **kw):  # killed after the step-4 checkpoint, mid-way to step 8
        if args[3] == 5:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(data_module, "batch_indices", crash_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, store=store, run_id="resumed", workdir=tmp_path, progress=False)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 4
    monkeypatch.setattr(data_module, "batch_indices", real)
    resumed = train(cfg, store=store, run_id="resumed", workdir=tmp_path, progress=False)

    a, b = _final_state(straight.run_dir), _final_state(resumed.run_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bit-exact on CPU
    assert resumed.final_accuracy == straight.final_accuracy
    assert store.run_metrics("resumed") == store.run_metrics("straight")  # no gaps, no duplicates
    assert store.run_diagnostics("resumed") == store.run_diagnostics("straight")


def test_finished_run_is_returned_and_config_change_is_refused(tmp_path, tiny_cfg):
    store = ResultStore(tmp_path / "db.sqlite")
    cfg = tiny_cfg(steps=3)
    first = train(cfg, store=store, run_id="r", workdir=tmp_path, progress=False)
    again = train(cfg, store=store, run_id="r", workdir=tmp_path, progress=False)
    assert again.final_accuracy == first.final_accuracy
    assert len(store.run_metrics("r", "train_loss")) == 3
    with pytest.raises(Exception, match="different"):
        train(tiny_cfg(steps=3, seed=1), store=store, run_id="r", workdir=tmp_path, progress=False)
    # a half-finished run with another config is refused by the checkpoint check
    (tmp_path / "r" / FINAL_MODEL_NAME).unlink()
    with store.connect() as con:
        con.execute("UPDATE runs SET status='running' WHERE run_id='r'")
    with pytest.raises(CheckpointError, match="different experiment config"):
        train(tiny_cfg(steps=3, seed=1), store=store, run_id="r", workdir=tmp_path, progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_cfg):
    # lr 1e30 without clipping: after one AdamW step the weights are ~1e30 and the next forward
    # overflows to inf/NaN.
    cfg = tiny_cfg(recipe="ste", steps=20, checkpoint_every=1,
                   schedule={"steps": 20, "batch_size": 32, "lr": 1e30, "warmup_fraction": 0.0, "grad_clip": None})
    store = ResultStore(tmp_path / "db.sqlite")
    with pytest.raises(TrainingDiverged, match=r"diverged at step (\d+).*last good checkpoint") as info:
        train(cfg, store=store, run_id="nan", workdir=tmp_path, progress=False)
    bad_step = int(re.search(r"diverged at step (\d+)", str(info.value)).group(1))
    ckpt = torch.load(tmp_path / "nan" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == bad_step - 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    run = store.get_run("nan")
    assert run.status == "failed" and "diverged" in run.message


def test_bf16_autocast_trains(tmp_path, tiny_cfg):
    s = train(tiny_cfg(steps=2, bf16=True), store=ResultStore(tmp_path / "db"), workdir=tmp_path, progress=False)
    assert 0.0 <= s.final_accuracy <= 1.0


def test_sparse_training_flops_are_below_dense(tmp_path, tiny_cfg):
    store = ResultStore(tmp_path / "db")
    dense = train(tiny_cfg(recipe="dense", steps=2), store=store, workdir=tmp_path, progress=False).train_flops
    ste = train(tiny_cfg(recipe="ste", steps=2), store=store, workdir=tmp_path, progress=False).train_flops
    assert sum(ste.values()) < sum(dense.values())


def test_example_input_shapes(tiny_cfg):
    assert example_input(tiny_cfg()).shape == (1, 1, 8, 8)
    seq = tiny_cfg(data={"name": "brackets", "options": {"seq_len": 12}},
                   model={"name": "seq_transformer", "options": {"dim": 16, "heads": 2}})
    x = example_input(seq, batch=3)
    assert x.shape == (3, 12) and x.dtype == torch.long


def test_lr_schedule_shape():
    # warmup 10 of 110 steps: linear to 1, then half cosine to 0
    assert lr_factor(0, 110, 10) == pytest.approx(0.1)
    assert lr_factor(9, 110, 10) == pytest.approx(1.0)
    assert lr_factor(60, 110, 10) == pytest.approx(0.5)
    assert lr_factor(110, 110, 10) == pytest.approx(0.0)


def test_training_flops_of_a_model_without_pos_embed(tmp_path, monkeypatch, tiny_dict):
    """A registered model with no ``pos_embed`` (an MLP on the flattened digits) trains, and its
    training FLOPs are 2 * rows * out * in per pass, rows = the batch, for 3 passes x steps."""
    from dataclasses import dataclass

    from torch import nn

    from pgf_sim.train.experiment import MODEL_OPTIONS, experiment_from_dict
    from pgf_sim.train.models import MODELS

    @dataclass(frozen=True)
    class MlpOptions:
        hidden: int = 32

    class Mlp(nn.Module):
        def __init__(self, opts, spec):
            super().__init__()
            self.fc1 = nn.Linear(64, opts.hidden)
            self.fc2 = nn.Linear(opts.hidden, spec.num_classes)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    monkeypatch.setitem(MODELS._items, "test_mlp", Mlp)
    monkeypatch.setitem(MODEL_OPTIONS._items, "test_mlp", MlpOptions)
    cfg = experiment_from_dict(tiny_dict(recipe="dense", steps=2, model={"name": "test_mlp", "options": {}}))
    s = train(cfg, store=ResultStore(tmp_path / "db.sqlite"), workdir=tmp_path, progress=False)
    per_pass = 2 * 32 * (32 * 64 + 10 * 32)  # batch 32 rows; fc1 (32, 64), fc2 (10, 32)
    assert s.train_flops == {"forward": 2 * per_pass, "input_grad": 2 * per_pass, "weight_grad": 2 * per_pass}
