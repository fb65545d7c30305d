"""`pgf-sim generate`: sampling from a trained character model is reproducible and well formed."""
import pytest
import torch
import yaml

from pgf_sim.cli import main
from pgf_sim.core import ConfigError
from pgf_sim.train.generate import generate, sample


pytestmark = pytest.mark.usefixtures("one_thread")


class _Always(torch.nn.Module):
    """Puts all probability on token 2 (logits (B, T, 4)), whatever the context."""

    def forward(self, x):
        out = torch.full((*x.shape, 4), -1e9)
        out[..., 2] = 0.0
        return out


def test_sample_follows_the_distribution_and_crops_the_context():
    seen = []

    class Spy(_Always):
        def forward(self, x):
            seen.append(x.shape[1])
            return super().forward(x)

    out = sample(Spy(), torch.tensor([0, 1, 3]), 6, block_size=4, temperature=0.7, seed=0)
    assert out.tolist() == [2] * 6
    assert seen == [3, 4, 4, 4, 4, 4]  # never more than block_size tokens of context
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        sample(_Always(), torch.tensor([0]), 1, block_size=4, temperature=0.0, seed=0)


def test_generate_from_a_trained_text_run(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question. " * 40)
    exp = {"name": "gen", "model": {"name": "char_gpt", "options": {"dim": 16, "depth": 1, "heads": 2}},
           "data": {"name": "text", "options": {"path": str(corpus), "block_size": 16, "eval_chars": 200}},
           "recipe": {"name": "sr-ste", "pattern": "1:4"},
           "schedule": {"steps": 30, "batch_size": 16, "lr": 1e-2, "warmup_fraction": 0.0}, "checkpoint_every": 30}
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump(exp))
    runs = tmp_path / "runs"
    assert main(["train", str(path), "--db", str(tmp_path / "db"), "--workdir", str(runs), "--run-id", "g",
                 "--no-progress"]) == 0
    capsys.readouterr()
    a = generate(runs / "g", chars=50, temperature=0.8, seed=3, prompt="to be")
    b = generate(runs / "g", chars=50, temperature=0.8, seed=3, prompt="to be")
    assert a == b and a.startswith("to be") and len(a) == 55
    assert set(a) <= set("to be or not to be, that is the question. ")  # only characters of the corpus
    assert main(["generate", str(runs / "g"), "--chars", "20", "--seed", "3", "--prompt", "to be"]) == 0
    assert capsys.readouterr().out.startswith("to be")


def test_generate_refuses_a_classification_run(tmp_path, tiny_dict):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_dict(steps=2)))
    assert main(["train", str(path), "--db", str(tmp_path / "db"), "--workdir", str(tmp_path / "runs"),
                 "--run-id", "c", "--no-progress"]) == 0
    with pytest.raises(ConfigError, match="not a text set"):
        generate(tmp_path / "runs" / "c", chars=5)
