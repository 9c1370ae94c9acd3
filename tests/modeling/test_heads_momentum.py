import copy
import math

import pytest
import torch
from torch import nn

from hf_sslviews.modeling.common import build_mlp, cosine_momentum, ema_update


def test_build_mlp__layout_and_shapes():
    mlp = build_mlp([8, 16, 16, 4], hidden_bias=False, last_bias=False, last_norm="bn_noaffine")
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert mlp[0].bias is None and mlp[6].bias is None
    assert mlp[7].weight is None  # affine=False
    assert mlp(torch.randn(5, 8)).shape == (5, 4)


def test_build_mlp__byol_head_has_biases_and_no_last_norm():
    mlp = build_mlp([8, 32, 4], hidden_bias=True, last_bias=True)
    assert [type(m).__name__ for m in mlp] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert mlp[0].bias is not None and mlp[3].bias is not None


@pytest.mark.parametrize("bad", [dict(dims=[4]), dict(dims=[4, 4], last_norm="ln")])
def test_build_mlp__rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        build_mlp(**bad)


def test_cosine_momentum__schedule_values():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert cosine_momentum(25, 100, 0.996) == pytest.approx(1 - 0.004 * (1 + math.cos(math.pi / 4)) / 2)
    values = [cosine_momentum(s, 10, 0.9) for s in range(11)]
    assert values == sorted(values)


def test_ema_update__interpolates_params_and_copies_buffers():
    online, target = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        online.weight.fill_(1.0)
        target.weight.fill_(0.0)
        online.running_mean.fill_(5.0)
    ema_update(target, online, 0.9)
    assert torch.allclose(target.weight, torch.full((3,), 0.1))
    assert torch.allclose(target.running_mean, torch.full((3,), 5.0))
    ema_update(target, online, 1.0)
    assert torch.allclose(target.weight, torch.full((3,), 0.1))


def test_ema_update__refuses_target_and_online_wrapped_differently():
    # What FSDP / compile / DDP on one side only would look like: the same weights under other
    # names, or flattened into one tensor. Pairing by position would average unrelated tensors.
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    target = copy.deepcopy(online)
    wrapped = nn.ModuleDict({"_fsdp_wrapped_module": copy.deepcopy(online)})
    with pytest.raises(ValueError, match=r"different parameter lists .* first difference \('0.weight', '_fsdp_wrapped_module.0.weight'\)"):
        ema_update(target, wrapped, 0.9)

    class Flat(nn.Module):  # one flat parameter holding every weight, as FSDP1's FlatParameter
        def __init__(self, module):
            super().__init__()
            self.flat = nn.Parameter(torch.cat([p.detach().flatten() for p in module.parameters()]))

    with pytest.raises(ValueError, match=r"different parameter lists \(4 vs 1 parameters"):
        ema_update(target, Flat(online), 0.9)
    other = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 5))
    with pytest.raises(ValueError, match=r"parameter '1.weight' differ in shape \(\(2, 3\) vs \(5, 3\)\)"):
        ema_update(target, other, 0.9)
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, 0.9)  # the same structure: no error, and the update happens
    assert all(torch.allclose(t, 0.9 * b + 0.1 * o) for t, b, o in zip(target.parameters(), before, online.parameters()))
