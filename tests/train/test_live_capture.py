"""Capturing a live sparse model (after sparsify(), before finalize()) for the simulator, with
both tracers: the captured per-layer patterns are the controller's current ones, and the live
model is left exactly as it was."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from pgf_sim.core import NM
from pgf_sim.sim.capture import capture
from pgf_sim.sparsity.schedules import RecipeConfig
from pgf_sim.train.sparsify import sparsify


class _Block(nn.Module):
    def __init__(self, d: int = 32):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.mlp = nn.Sequential(OrderedDict(fc1=nn.Linear(d, 2 * d), act=nn.GELU(), fc2=nn.Linear(2 * d, d)))

    def forward(self, x):
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return x + self.mlp(x)


def _gemm_patterns(workload) -> dict[str, NM]:
    return {op.name: op.pattern for op in workload.ops if op.kind == "gemm"}


@pytest.mark.parametrize("method", ["export", "fx"])
@pytest.mark.parametrize("recipe", ["sdgf", "mdgf", "ste"])
def test_capture_mid_training_reports_the_current_masks(method, recipe):
    torch.manual_seed(0)
    model = _Block()
    cfg = RecipeConfig(name=recipe, pattern=NM(1, 8), qkv_pattern=NM(2, 8), dense_fraction=0.2)
    total = 20
    ctl = sparsify(model, cfg, total)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    x = torch.randn(4, 6, 32)
    seen = set()
    for step in range(total):
        if step in (0, 5, 8, 12, 19):  # dense phase, first sparse step, SDGF frames, near the end
            state = {k: v.clone() for k, v in model.state_dict().items()}
            with torch.no_grad():
                before = model(x)
            got = _gemm_patterns(capture(model, (x,), method=method))
            expected = {name: info.pattern for name, info in ctl.layer_info().items()}
            assert {n: got[n] for n in expected} == expected, f"step {step}"
            assert got["attn.out_proj"] == NM(1, 1)  # not selected: dense
            seen.update(expected.values())
            # the live model is untouched and still trains through its parametrizations
            assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
            with torch.no_grad():
                torch.testing.assert_close(model(x), before, rtol=0, atol=0)
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    assert NM(1, 1) in seen and NM(1, 8) in seen and NM(2, 8) in seen
    if recipe == "sdgf":  # the moving frames were captured too (stepwise 1:8 starts at 7:8)
        assert NM(7, 8) in seen


def test_captured_weights_are_the_masked_weights():
    """The weights the capture reads are W*m of the current step (MDGF at beta > 0 included), so a
    pattern inferred from them (no controller) agrees with the one reported."""
    from torch.nn.utils import parametrize

    from pgf_sim.sim.capture import _deployed_view

    torch.manual_seed(0)
    model = _Block()
    ctl = sparsify(model, RecipeConfig(name="mdgf", pattern=NM(2, 8)), 10)
    ctl.set_step(1)
    assert 0.0 < ctl.beta < 1.0
    view, patterns = _deployed_view(model)
    assert patterns == {"mlp.fc1": NM(2, 8), "mlp.fc2": NM(2, 8)}
    for name, mask in ctl.masks().items():
        w = ctl.dense_weights()[name].detach()
        assert torch.equal(view.get_submodule(name).weight, w.masked_fill(~mask, 0.0))
        assert not parametrize.is_parametrized(view.get_submodule(name))
        assert parametrize.is_parametrized(model.get_submodule(name))


@pytest.mark.parametrize("tracer", ["export", "compile"])
def test_tracing_the_live_model_directly_leaves_its_masks_real(tracer):
    """torch.export / torch.compile of the sparsified model itself (not through capture): the
    traced graph computes the mask from the traced weights, and the controller keeps real masks,
    so the eager model still computes W*m."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(16, 16), act=nn.ReLU(), fc2=nn.Linear(16, 4)))
    ctl = sparsify(model, RecipeConfig(name="ste", pattern=NM(2, 4)), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(8, 16)
    model(x).square().sum().backward()
    opt.step()  # the masks are stale: the next read recomputes them
    if tracer == "export":
        traced = torch.export.export(model, (x,), strict=False).module()
    else:
        traced = torch.compile(model, backend="eager")
    out = traced(x)
    masks = ctl.masks()
    assert all(type(m) is torch.Tensor for m in masks.values())
    w1, w2 = (ctl.dense_weights()[n].detach() for n in ("fc1", "fc2"))
    expected = nn.functional.linear(torch.relu(nn.functional.linear(x, w1 * masks["fc1"], model.fc1.bias)),
                                    w2 * masks["fc2"], model.fc2.bias)
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(out, expected)
