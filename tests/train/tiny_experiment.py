"""Shared tiny experiment for the training-loop tests (a 1-block ViT on digits, a few steps)."""
from __future__ import annotations

import pytest

from pgf_sim.train.experiment import experiment_from_dict


def tiny_dict(recipe: str = "mdgf", pattern: str = "2:4", steps: int = 6, **extra) -> dict:
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


def tiny_cfg(**kw):
    return experiment_from_dict(tiny_dict(**kw))


@pytest.fixture(autouse=False)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core CI machine
    OpenMP's spinning threads oversubscribe the cores; run the training tests single-threaded."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
