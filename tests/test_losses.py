"""TASG and the ensemble loss against hand-computed values (docs/method.md, "The spiking core")."""
import math

import pytest
import torch
import torch.nn.functional as F

from chorus.losses import EnsembleLoss, ensemble_loss, tasg_loss


def _softmax(v, tau):
    e = [math.exp(a / tau) for a in v]
    return [a / sum(e) for a in e]


def _kl(p, q):
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))


def test_tasg_hand_computed():
    # T = 3, B = 2, C = 3, worked out with the math module only
    o = [[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]],
         [[2.0, 0.5, 0.0], [0.0, 1.0, 0.0]],
         [[0.0, 3.0, 1.0], [0.2, 0.1, 2.0]]]
    tau = 2.0
    expected = 0.0
    for t in range(2):
        kl_batch = [_kl(_softmax(o[t + 1][b], tau), _softmax(o[t][b], tau)) for b in range(2)]
        expected += tau**2 * sum(kl_batch) / 2
    expected /= 2
    got = tasg_loss(torch.tensor(o), temperature=tau)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_tasg_teacher_is_detached():
    logits = torch.randn(4, 5, 6, requires_grad=True)
    tasg_loss(logits, temperature=1.5).backward()
    g = logits.grad
    assert torch.all(g[-1] == 0)           # o_T only ever teaches
    assert all(g[t].abs().sum() > 0 for t in range(3))  # o_1..o_{T-1} are students


def test_tasg_zero_when_outputs_agree_and_for_single_step():
    same = torch.randn(1, 3, 4).expand(5, 3, 4)
    assert tasg_loss(same).item() == pytest.approx(0.0, abs=1e-7)
    assert tasg_loss(torch.randn(1, 3, 4)).item() == 0.0


def test_tasg_drop_matches_kept_pairs():
    logits = torch.randn(6, 3, 4)
    full_terms = torch.stack([tasg_loss(logits[t:t + 2]) for t in range(5)])  # each pair alone (T-1 = 1)
    keep = torch.rand(5, generator=torch.Generator().manual_seed(7)) >= 0.4
    got = tasg_loss(logits, p_drop=0.4, generator=torch.Generator().manual_seed(7))
    assert 0 < keep.sum() < 5
    assert got.item() == pytest.approx((full_terms * keep).sum().item() / 5, rel=1e-5)


def test_ensemble_loss_components():
    logits = torch.randn(4, 6, 10, requires_grad=True)
    y = torch.randint(0, 10, (6,))
    out = ensemble_loss(logits, y, gamma=0.5, temperature=2.0)
    assert out["loss_ce"].item() == pytest.approx(F.cross_entropy(logits.mean(0), y).item(), rel=1e-6)
    assert out["loss_tasg"].item() == pytest.approx(tasg_loss(logits, 2.0).item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(out["loss_ce"].item() + 0.5 * out["loss_tasg"].item(), rel=1e-6)
    tet = ensemble_loss(logits, y, gamma=0.0, ce="tet")
    manual = sum(F.cross_entropy(logits[t], y) for t in range(4)) / 4
    assert tet["loss"].item() == pytest.approx(manual.item(), rel=1e-6)
    assert tet["loss_tasg"].item() == 0.0


def test_ensemble_module_drops_only_in_training():
    mod = EnsembleLoss(gamma=1.0, p_drop=0.99)
    logits, y = torch.randn(5, 2, 3), torch.tensor([0, 1])
    mod.eval()
    assert mod(logits, y)["loss_tasg"].item() == pytest.approx(tasg_loss(logits).item())


def test_ensemble_module_drops_pairs_in_training():
    """Training mode: each of the T-1 pair terms is kept when its uniform draw is >= p_drop (seeded);
    the expected value is the kept pairs' terms, each computed alone, over T-1."""
    logits, y = torch.randn(6, 3, 4), torch.tensor([0, 1, 2])
    terms = torch.stack([tasg_loss(logits[t:t + 2]) for t in range(5)])     # one pair each (T-1 = 1)
    keep = torch.rand(5, generator=torch.Generator().manual_seed(2)) >= 0.5
    assert 0 < keep.sum() < 5                                              # the seed drops some, not all
    mod = EnsembleLoss(gamma=1.0, p_drop=0.5).train()
    out = mod(logits, y, generator=torch.Generator().manual_seed(2))
    assert out["loss_tasg"].item() == pytest.approx((terms * keep).sum().item() / 5, rel=1e-5)
    assert out["loss_tasg"].item() < tasg_loss(logits).item() - 1e-6      # p_drop took effect
    ce = F.cross_entropy(logits.mean(0), y).item()
    assert out["loss"].item() == pytest.approx(ce + out["loss_tasg"].item(), rel=1e-5)
    # without a generator the drop is drawn from the (seeded) global RNG
    torch.manual_seed(11)
    keep = torch.rand(5) >= 0.5
    torch.manual_seed(11)
    assert mod(logits, y)["loss_tasg"].item() == pytest.approx((terms * keep).sum().item() / 5, rel=1e-5)


@pytest.mark.parametrize("call,needle", [
    (lambda: tasg_loss(torch.randn(3, 4)), r"\[T, B, C\]"),
    (lambda: tasg_loss(torch.randn(3, 2, 4), temperature=0), "temperature"),
    (lambda: tasg_loss(torch.randn(3, 2, 4), p_drop=1.0), "p_drop"),
    (lambda: ensemble_loss(torch.randn(3, 2, 4), torch.tensor([0, 1]), ce="sum"), "ce="),
    (lambda: ensemble_loss(torch.randn(3, 2, 4), torch.tensor([0, 1, 2])), "target"),
    (lambda: ensemble_loss(torch.randn(3, 2, 4), torch.tensor([0, 1]), gamma=-1), "gamma"),
])
def test_bad_input(call, needle):
    with pytest.raises((ValueError, TypeError), match=needle):
        call()
