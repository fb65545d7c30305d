"""Fixtures shared by the tests: a tiny experiment (a 1-block ViT on digits, a few steps) and
single-threaded torch for the training tests."""
from __future__ import annotations

import pytest

from pgf_sim.train.experiment import experiment_from_dict


def make_tiny_dict(recipe: str = "mdgf", pattern: str = "2:4", steps: int = 6, **extra) -> dict:
    """The tiny experiment as a YAML-like mapping; ``extra`` sections are merged into it."""
    data = {
        "name": "tiny",
        "model": {"name": "vit", "options": {"patch_size": 4, "dim": 32, "depth": 1, "heads": 2}},
        "data": {"name": "digits"},
        "recipe": {"name": recipe, "pattern": pattern},
        "schedule": {"steps": steps, "batch_size": 32, "lr": 2e-3, "warmup_fraction": 0.0},
        "checkpoint_every": 3,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


@pytest.fixture
def tiny_dict():
    """``tiny_dict(recipe=..., pattern=..., steps=..., **sections)`` -> the tiny experiment mapping."""
    return make_tiny_dict


@pytest.fixture
def tiny_cfg():
    """``tiny_cfg(**same as tiny_dict)`` -> the validated tiny ``ExperimentConfig``."""
    return lambda **kw: experiment_from_dict(make_tiny_dict(**kw))


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core CI machine
    OpenMP's spinning threads oversubscribe the cores; run the training tests single-threaded."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
