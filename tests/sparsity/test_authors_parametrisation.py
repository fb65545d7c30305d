"""The authors' parametrisation of MDGF/SDGF as options (docs/method.md, "The authors'
parametrisation"), each against hand values of its schedule; the project defaults stay."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgf_sim.core import NM, ConfigError
from pgf_sim.core.config import to_dict
from pgf_sim.sparsity.flops import training_flops
from pgf_sim.sparsity.schedules import (RecipeConfig, alpha_of, beta_at, frame_at, pattern_at, phase_at, phases,
                                        segments)

LAYERS = {"fc1": ((64, 16), "fc1"), "fc2": ((16, 64), "fc2")}
PASS = 2 * 2 * 10 * 64 * 16  # fc1 + fc2, one dense pass of one step at 10 tokens


def test_fixed_per_step_alpha_does_not_depend_on_the_run_length():
    cfg = RecipeConfig(name="mdgf", decay="exponential", alpha=2e-4, finetune_fraction=0.0)  # train.py default
    assert alpha_of(cfg, 1_000) == alpha_of(cfg, 100_000) == 2e-4
    assert beta_at(cfg, 999, 1_000) == pytest.approx(math.exp(-2e-4 * 999))  # 0.8187 at the last step
    assert beta_at(cfg, 999, 100_000) == beta_at(cfg, 999, 1_000)
    # the project default derives alpha from the run: ln(100) / (0.7 * 900) at 1000 steps
    assert alpha_of(RecipeConfig(name="mdgf"), 1_000) == pytest.approx(math.log(100) / 630)


def test_no_binary_finetune_keeps_beta_decaying_to_the_last_step():
    """Authors' linear decay, alpha 8e-4, no fine-tune, 2000 steps: beta = 1 - 8e-4 t reaches 0
    at t = 1250; the forward weight is dense for steps 0..1249, 1:4 for 1250..1999."""
    cfg = RecipeConfig(name="mdgf", pattern=NM(1, 4), decay="linear", alpha=8e-4, finetune_fraction=0.0)
    assert phases(cfg, 2000).sparse_end == 2000 and phase_at(cfg, 1999, 2000) == "sparse"
    assert beta_at(cfg, 1249, 2000) == pytest.approx(0.0008) and beta_at(cfg, 1250, 2000) == 0.0
    f = training_flops(cfg, LAYERS, tokens=10, total_steps=2000)
    assert f["forward"] == pytest.approx(PASS * (1250 + 750 * 0.25))
    # exponential with no fine-tune never reaches a binary mask: dense forward to the end
    exp = RecipeConfig(name="mdgf", pattern=NM(1, 4), alpha=2e-4, finetune_fraction=0.0)
    assert training_flops(exp, LAYERS, tokens=10, total_steps=2000)["forward"] == PASS * 2000
    # the project default: the last 10% binary
    default = RecipeConfig(name="mdgf", pattern=NM(1, 4))
    assert phase_at(default, 1799, 2000) == "sparse" and phase_at(default, 1800, 2000) == "finetune"
    assert beta_at(default, 1800, 2000) == 0.0


def test_sdgf_target_after_the_window_as_in_the_authors_code():
    """1:8 stepwise (7:8, 4:8, 2:8 | 1:8), frames over the whole sparse phase, 100 steps with a
    10% fine-tune: the three denser frames take 30 steps each, the target holds from step 90."""
    cfg = RecipeConfig(name="sdgf", pattern=NM(1, 8), sdgf_frames_fraction=1.0, finetune_fraction=0.1,
                       sdgf_target="after_window")
    got = [str(pattern_at(cfg, s, 100)) for s in (0, 29, 30, 59, 60, 89, 90, 99)]
    assert got == ["7:8", "7:8", "4:8", "4:8", "2:8", "2:8", "1:8", "1:8"]
    f = training_flops(cfg, LAYERS, tokens=10, total_steps=100)
    assert f["forward"] == pytest.approx(PASS * (30 * 7 / 8 + 30 * 4 / 8 + 30 * 2 / 8 + 10 / 8))
    # the project default at the same settings: four frames, the target from t = 68 (68*4 >= 270)
    default = RecipeConfig(name="sdgf", pattern=NM(1, 8), sdgf_frames_fraction=1.0, finetune_fraction=0.1)
    assert [frame_at(default, s, 100) for s in (22, 23, 44, 45, 67, 68)] == [0, 1, 1, 2, 2, 3]
    # no fine-tune: the target is never trained (finalize() prunes to it at the end)
    bare = RecipeConfig(name="sdgf", pattern=NM(1, 8), sdgf_frames_fraction=1.0, sdgf_target="after_window")
    assert str(pattern_at(bare, 89, 90)) == "2:8"
    # a window of 70%: the target holds from the window's end, step 63 of 90 sparse steps
    part = RecipeConfig(name="sdgf", pattern=NM(1, 8), finetune_fraction=0.1, sdgf_target="after_window")
    assert [str(pattern_at(part, s, 100)) for s in (20, 21, 62, 63)] == ["7:8", "4:8", "2:8", "1:8"]


def test_frames_per_epoch():
    """10 epochs of 7 steps, 1:8 stepwise over the whole run. Per step (default), frame
    floor(4t/70): changes at steps 18, 35, 53. Per epoch: frame floor(4e/10), target from the
    last epoch: epochs 0-2, 3-4, 5-7, 8-9, i.e. changes at steps 21, 35, 56."""
    base = dict(name="sdgf", pattern=NM(1, 8), sdgf_frames_fraction=1.0, finetune_fraction=0.0)
    step = RecipeConfig(**base)
    epoch = RecipeConfig(**base, frame_clock="epoch", steps_per_epoch=7)

    def starts(cfg):
        return [seg.start for seg in segments(cfg, 70)]

    assert starts(step) == [0, 18, 35, 53]
    assert starts(epoch) == [0, 21, 35, 56]
    # the authors' combination: target after the window, per epoch: 3 frames over 10 epochs
    # (floor(3e/10): epochs 0-3, 4-6, 7-9), the target from the end of the sparse phase
    authors = RecipeConfig(**base, frame_clock="epoch", steps_per_epoch=7, sdgf_target="after_window")
    assert starts(authors) == [0, 28, 49]
    assert [str(seg.pattern) for seg in segments(authors, 70)] == ["7:8", "4:8", "2:8"]
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        frame_at(RecipeConfig(**base, frame_clock="epoch"), 0, 70)


def test_new_options_leave_stored_configs_and_run_ids_unchanged_at_their_defaults():
    d = to_dict(RecipeConfig(name="sdgf"))
    assert not {"sdgf_target", "frame_clock", "steps_per_epoch"} & set(d)
    assert to_dict(RecipeConfig(name="sdgf", sdgf_target="after_window"))["sdgf_target"] == "after_window"


@settings(max_examples=80, deadline=None)
@given(total=st.integers(1, 200), spe=st.integers(1, 9), frac=st.floats(0.05, 1.0), ft=st.floats(0, 0.4),
       target=st.sampled_from(["in_window", "after_window"]), clock=st.sampled_from(["step", "epoch"]),
       name=st.sampled_from(["sdgf", "mdgf+sdgf"]), pattern=st.sampled_from([NM(2, 4), NM(1, 8), NM(1, 32)]))
def test_frames_never_go_back_and_segments_match_every_step(total, spe, frac, ft, target, clock, name, pattern):
    cfg = RecipeConfig(name=name, pattern=pattern, sdgf_frames_fraction=frac, finetune_fraction=ft,
                       sdgf_target=target, frame_clock=clock, steps_per_epoch=spe)
    frames = [frame_at(cfg, s, total) for s in range(total)]
    assert frames == sorted(frames)
    for seg in segments(cfg, total):
        assert all(pattern_at(cfg, s, total) == seg.pattern for s in range(seg.start, seg.stop))
    if phase_at(cfg, total - 1, total) == "finetune" or target == "in_window":
        assert pattern_at(cfg, total - 1, total) == pattern
