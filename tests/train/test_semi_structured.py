"""PyTorch's semi-structured 2:4 format: the format check (pattern, dtype, shape, device) and the
conversion, which on a machine without a capable GPU raises an error naming every layer."""
import pytest
import torch
from torch import nn

from pgf_sim.core import NM, ConfigError
from pgf_sim.sparsity.schedules import RecipeConfig
from pgf_sim.train.semi_structured import SHAPE_MULTIPLES, is_2_4, semi_structured_problems, to_semi_structured
from pgf_sim.train.sparsify import sparsify


class Net(nn.Module):
    def __init__(self, dim=64, hidden=128):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.Linear(dim, 10)

    def forward(self, x):
        return self.head(self.fc2(torch.relu(self.fc1(x))))


def finalized_2_4(dim=64, hidden=128) -> Net:
    torch.manual_seed(0)
    model = Net(dim, hidden)
    ctl = sparsify(model, RecipeConfig(name="sr-ste", pattern=NM(2, 4)), total_steps=1)
    ctl.finalize()
    return model


def test_is_2_4_counts_nonzeros_per_group_of_four_inputs():
    w = torch.tensor([[1.0, 0, 2, 0, 0, 0, 0, 3]])
    assert is_2_4(w)
    assert not is_2_4(torch.tensor([[1.0, 1, 1, 0]]))  # 3 of 4 kept
    assert not is_2_4(torch.ones(2, 6))  # 6 inputs: not groups of 4
    assert is_2_4(torch.zeros(4, 8))  # sparser than 2:4 is still 2:4-compliant


def test_problems_name_each_layer_and_reason():
    model = finalized_2_4()
    probs = semi_structured_problems(model)
    assert set(probs) == {"fc1", "fc2", "head"}
    assert "not 2:4" in probs["head"]  # the dense head
    assert "on cpu" in probs["fc1"] and "on cpu" in probs["fc2"]
    half = finalized_2_4().half()
    assert "on cpu" in semi_structured_problems(half)["fc1"]  # fp16 (128, 64): shape fine, device not
    odd = finalized_2_4(dim=64, hidden=48).half()  # fc1 weight (48, 64): 48 rows not a multiple of 32
    assert semi_structured_problems(odd)["fc1"] == "shape (48, 64) is not a multiple of (32, 64) (rows, cols) required for torch.float16"
    f64 = finalized_2_4().double()
    assert "dtype torch.float64 unsupported" in semi_structured_problems(f64)["fc1"]
    assert SHAPE_MULTIPLES[torch.bfloat16] == (32, 64)


def test_conversion_without_a_capable_gpu_is_a_clear_error():
    model = finalized_2_4()
    if torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0):
        pytest.skip("a capable GPU is present: the GPU test below runs instead")
    with pytest.raises(ConfigError, match=r"cannot convert to PyTorch's semi-structured 2:4 format: fc1: the model "
                                          r"is on cpu; .*; fc2: "):
        to_semi_structured(model)
    with pytest.raises(ConfigError, match="not nn.Linear layers of the model: nope"):
        to_semi_structured(model, ["nope"])
    with pytest.raises(ConfigError, match="no 2:4 nn.Linear weight"):
        to_semi_structured(Net())  # nothing finalized
    assert model.fc1.weight.layout == torch.strided  # nothing was converted


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0),
                    reason="needs a CUDA GPU of compute capability >= 8.0")
def test_conversion_on_gpu_matches_the_dense_forward():
    model = finalized_2_4().half().cuda()
    x = torch.randn(64, 64, dtype=torch.float16, device="cuda")
    want = model(x)
    assert to_semi_structured(model) == ["fc1", "fc2"]
    torch.testing.assert_close(model(x), want, rtol=1e-2, atol=1e-2)
