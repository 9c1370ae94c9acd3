"""CLSA's DDM loss: hand-computed values, a slow reference, stop-gradient on the weak target."""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_sslviews.modeling.common.losses.distribution_divergence import DDMLoss, ddm_loss


def _softmax(values):
    m = max(values)
    exps = [math.exp(v - m) for v in values]
    return [e / sum(exps) for e in exps]


def _reference_ddm(s, w, bank, tau):
    """Slow loop version: -sum_j p_w log p_s per row, averaged over rows."""
    total = 0.0
    bank_n = [b / b.norm() for b in bank]
    for si, wi in zip(s, w):
        si, wi = si / si.norm(), wi / wi.norm()
        p_w = _softmax([float(wi @ b) / tau for b in bank_n])
        p_s = _softmax([float(si @ b) / tau for b in bank_n])
        total += -sum(pw * math.log(ps) for pw, ps in zip(p_w, p_s))
    return total / s.shape[0]


def test_ddm_loss__hand_computed_two_dimensional_case():
    s = torch.tensor([[1.0, 0.0]])
    w = torch.tensor([[0.0, 3.0]])  # normalised to [0, 1]
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tau = 0.5
    # weak logits [0, 2] -> p_w = [1, e^2] / (1 + e^2); strong logits [2, 0].
    p_w = [1 / (1 + math.e**2), math.e**2 / (1 + math.e**2)]
    log_p_s = [2 - math.log(math.e**2 + 1), -math.log(math.e**2 + 1)]
    expected = -(p_w[0] * log_p_s[0] + p_w[1] * log_p_s[1])
    assert ddm_loss(s, w, bank, tau).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("tau", [0.1, 0.2, 1.0])
def test_ddm_loss__matches_reference(batch, tau):
    g = torch.Generator().manual_seed(batch)
    s, w, bank = torch.randn(batch, 5, generator=g), torch.randn(batch, 5, generator=g), torch.randn(11, 5, generator=g)
    assert DDMLoss(tau)(s, w, bank).item() == pytest.approx(_reference_ddm(s, w, bank, tau), rel=1e-5)


def test_ddm_loss__no_gradient_reaches_weak_target_or_bank():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 6, generator=g).requires_grad_()
    w = torch.randn(4, 6, generator=g).requires_grad_()
    bank = torch.randn(10, 6, generator=g).requires_grad_()
    ddm_loss(s, w, bank, 0.2).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert w.grad is None and bank.grad is None


def test_ddm_loss__equal_distributions_give_the_entropy_and_zero_gradient():
    # With a soft target the cross-entropy H(p_w, p_s) = H(p_w) + KL(p_w || p_s): equal
    # distributions leave the entropy (not 0), a zero KL part and no gradient on the strong query.
    g = torch.Generator().manual_seed(1)
    w = torch.randn(5, 8, generator=g)
    bank = torch.randn(16, 8, generator=g)
    s = (2.5 * w).requires_grad_()  # same direction: same normalised similarities
    loss = ddm_loss(s, w, bank, 0.2)
    p_w = F.softmax(F.normalize(w, dim=1) @ F.normalize(bank, dim=1).T / 0.2, dim=1)
    entropy = -(p_w * p_w.log()).sum(dim=1).mean()
    assert entropy.item() > 0.1  # a non-trivial target, so "equals the entropy" means something
    assert loss.item() == pytest.approx(entropy.item(), rel=1e-5)
    assert (loss - entropy).item() == pytest.approx(0.0, abs=1e-5)  # the KL part
    loss.backward()
    assert s.grad.abs().max().item() < 1e-5


def test_ddm_loss__differs_from_entropy_when_distributions_differ():
    g = torch.Generator().manual_seed(2)
    w, s, bank = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g), torch.randn(9, 4, generator=g)
    p_w = F.softmax(F.normalize(w, dim=1) @ F.normalize(bank, dim=1).T / 0.2, dim=1)
    entropy = -(p_w * p_w.log()).sum(dim=1).mean()
    assert ddm_loss(s, w, bank, 0.2).item() > entropy.item() + 1e-3  # KL > 0


@pytest.mark.parametrize("tau", [0.0, -0.2])
def test_ddm_loss__rejects_non_positive_temperature(tau):
    with pytest.raises(ValueError, match="temperature"):
        DDMLoss(tau)
    with pytest.raises(ValueError, match="temperature"):
        ddm_loss(torch.ones(1, 2), torch.ones(1, 2), torch.ones(3, 2), tau)
