"""Gradient accumulation against plain torch: for a model without BatchNorm, two optimizer steps of
the loop with ``train.grad_accum=2`` over half-batches of 16 give the parameters of two plain-torch
SGD steps (momentum, weight decay on weights only) over the full batches of 32 they make up."""
import copy
import os

import pytest
import torch
from torch import nn

from chorus.config import load_recipe
from chorus.losses import ensemble_loss
from chorus.train import components, run
from test_train_support import ROOT, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return ndigits_shards(tmp_path_factory)


class NoNorm(nn.Module):
    """[T, B, C, H, W] -> [T, B, classes]; no BatchNorm, so a batch's loss is the mean of its halves'."""

    def __init__(self, fin, classes):
        super().__init__()
        self.hidden = nn.Linear(fin, 8)
        self.out = nn.Linear(8, classes)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x.flatten(2).float())))


def test_two_accumulated_half_batches_equal_one_plain_full_batch_step(shards, tmp_path, monkeypatch):
    made, seen = {}, []
    real_iterate = components.iterate

    def build_model(recipe, manifest, T=None):
        torch.manual_seed(123)
        made["shape"] = (2 * recipe.data.size * recipe.data.size, manifest["num_classes"])   # N-Digits: 2 polarities
        model = NoNorm(*made["shape"])
        made["init"] = copy.deepcopy(model.state_dict())
        return model

    def iterate(loader):
        for x, y in real_iterate(loader):
            seen.append((x.clone(), y.clone()))
            yield x, y

    monkeypatch.setattr(components, "build_model", build_model)
    monkeypatch.setattr(components, "iterate", iterate)
    lr, mom, wd, gamma, tau = 0.5, 0.9, 0.01, 1.0, 2.0
    recipe = load_recipe(QUICKSTART, tiny(
        shards, str(tmp_path / "run"), tmp_path, "train.grad_accum=2", "train.max_steps=2", "train.epochs=1",
        "train.eval_test=false", "tracking.enabled=false", "data.augment=false", "optim.name=sgd",
        f"optim.lr={lr}", f"optim.momentum={mom}", f"optim.weight_decay={wd}", "schedule.name=constant",
        "schedule.warmup_epochs=0", "loss.p_drop=0", f"loss.gamma={gamma}", f"loss.temperature={tau}",
        "loss.label_smoothing=0", "diagnostics.every=0"))
    result = run(recipe)
    assert result["steps"] == 2 and len(seen) >= 4
    assert all(len(y) == 16 for _, y in seen[:4])

    # plain torch: two full-batch SGD steps from the same start over the same 32-sample batches
    ref = NoNorm(*made["shape"])
    ref.load_state_dict(made["init"])
    weights = [p for p in ref.parameters() if p.dim() >= 2]
    biases = [p for p in ref.parameters() if p.dim() < 2]
    opt = torch.optim.SGD([{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": 0.0}],
                          lr=lr, momentum=mom)
    for k in range(2):
        x = torch.cat([seen[2 * k][0], seen[2 * k + 1][0]], 1)        # [T, B, ...]: batch is dim 1
        y = torch.cat([seen[2 * k][1], seen[2 * k + 1][1]])
        opt.zero_grad()
        ensemble_loss(ref(x), y, gamma=gamma, temperature=tau)["loss"].backward()
        opt.step()
    got = result["model"].state_dict()
    moved = 0.0
    for name, want in ref.state_dict().items():
        torch.testing.assert_close(got[name], want, rtol=1e-5, atol=1e-6)
        moved = max(moved, (want - made["init"][name]).abs().max().item())
    assert moved > 1e-3                                                # the steps did move the weights
