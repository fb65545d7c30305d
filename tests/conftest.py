"""Fixtures shared by the tests: a tiny experiment (a 1-block ViT on digits, a few steps),
single-threaded torch for the training tests, and a real tiny disk to fill (tmpfs)."""
from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

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


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB tmpfs (needs root and mount); skipped where the sandbox forbids it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _fill(disk: Path) -> None:
    """Take every free byte of ``disk`` into ``disk/pad`` (the real ENOSPC, no mock)."""
    with open(disk / "pad", "ab", buffering=0) as fh:
        for chunk in (4096, 1):  # whole pages, then the last bytes
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


@pytest.fixture
def fill_disk():
    """``fill_disk(tiny_disk)`` takes every free byte of the tmpfs."""
    return _fill
