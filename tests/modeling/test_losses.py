import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from hf_sslviews.modeling.common import distributed
from hf_sslviews.modeling.common.losses import InfoNCELoss, byol_loss, info_nce_loss, negative_cosine_loss


def _reference_info_nce(q, k, tau, offset=0, all_keys=None):
    """Slow loop version: -log softmax of the positive, averaged."""
    keys = k if all_keys is None else all_keys
    total = 0.0
    for i in range(q.shape[0]):
        qi = q[i] / q[i].norm()
        logits = [float(qi @ (kj / kj.norm())) / tau for kj in keys]
        m = max(logits)
        log_z = m + math.log(sum(math.exp(l - m) for l in logits))
        total += log_z - logits[i + offset]
    return total / q.shape[0]


def test_info_nce__hand_computed_two_by_two():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    tau = 0.5
    # row 0: logits [1/0.5, (1/sqrt2)/0.5] = [2, 1.4142]; positive 0
    # row 1: logits [0, 1.4142]; positive 1
    row0 = -2 + math.log(math.exp(2) + math.exp(2 / math.sqrt(2)))
    row1 = -2 / math.sqrt(2) + math.log(1 + math.exp(2 / math.sqrt(2)))
    expected = (row0 + row1) / 2
    assert info_nce_loss(q, k, tau, scale_by_2tau=False) == pytest.approx(expected, rel=1e-6)
    assert info_nce_loss(q, k, tau, scale_by_2tau=True) == pytest.approx(expected * 2 * tau, rel=1e-6)


@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("tau", [0.1, 0.2, 1.0])
def test_info_nce__matches_reference(batch, tau):
    g = torch.Generator().manual_seed(batch)
    q, k = torch.randn(batch, 5, generator=g), torch.randn(batch, 5, generator=g)
    assert InfoNCELoss(tau, scale_by_2tau=False)(q, k).item() == pytest.approx(_reference_info_nce(q, k, tau), rel=1e-5)


def test_info_nce__rank_offset_labels_with_simulated_gather():
    # Process 1 of 2: its keys sit at rows 3..5 of the gathered batch.
    g = torch.Generator().manual_seed(0)
    q, k_local, k_other = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    gathered = torch.cat([F.normalize(k_other, dim=1), F.normalize(k_local, dim=1)])
    with mock.patch.object(distributed, "rank", return_value=1), mock.patch.object(distributed, "gather", return_value=gathered):
        loss = info_nce_loss(q, k_local, 0.2, scale_by_2tau=False)
    assert loss.item() == pytest.approx(_reference_info_nce(q, k_local, 0.2, offset=3, all_keys=gathered), rel=1e-5)


def test_info_nce__rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(0.0)


def test_info_nce__key_gets_no_gradient_through_gather_path():
    q = torch.randn(4, 3, requires_grad=True)
    k = torch.randn(4, 3, requires_grad=True)
    info_nce_loss(q, k.detach(), 0.2).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


def test_byol_loss__analytic_values():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert byol_loss(p, p.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(p, -p).item() == pytest.approx(4.0)
    assert byol_loss(p, torch.tensor([[0.0, 1.0], [3.0, 0.0]])).item() == pytest.approx(2.0)


def test_negative_cosine__analytic_values_and_stop_gradient():
    p = torch.tensor([[1.0, 1.0]], requires_grad=True)
    z = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss = negative_cosine_loss(p, z)
    assert loss.item() == pytest.approx(-1 / math.sqrt(2), rel=1e-6)
    loss.backward()
    assert z.grad is None and p.grad.abs().sum() > 0
