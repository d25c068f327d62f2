"""Diagnostics and evaluation restore every submodule's own train/eval flag: a BatchNorm frozen with
``.eval()`` for fine-tuning stays frozen (``model.train(was_training)`` would unfreeze it)."""
import torch
from torch import nn

from chorus.diagnostics import collect
from chorus.models import eval_mode
from chorus.train.evaluate import evaluate, run_diagnostics
from test_diagnostics_collect import Small, batches


class _Tracker:
    def log_artifact(self, *a, **k):
        pass


def frozen_bn_model():
    model = Small().train()
    model.bn.eval()  # frozen BN: the model trains, its BatchNorm does not
    return model


def flags(model):
    return {n: m.training for n, m in model.named_modules()}


def test_frozen_batchnorm_stays_frozen_through_collect():
    model = frozen_bn_model()
    before = flags(model)
    assert before[""] is True and before["bn"] is False  # hand-set, independent of the code under test
    collect(model, batches(), render=False, grad_samples=2)
    assert flags(model) == before


def test_frozen_batchnorm_stays_frozen_through_run_diagnostics_and_evaluate():
    model = frozen_bn_model()
    before = flags(model)
    run_diagnostics(model, batches(), loss_kwargs={}, layers=None, epoch=0, tracker=_Tracker(), step=0)
    assert flags(model) == before
    evaluate(model, batches(), T=3)
    assert flags(model) == before


def test_eval_mode_is_eval_inside_and_restores_on_error():
    model = frozen_bn_model()
    before = flags(model)
    try:
        with eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert flags(model) == before
