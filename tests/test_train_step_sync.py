"""The training step reads device values on the host once per optimizer step (the non-finite check)
and once per log interval, never per micro-batch; the logged loss and accuracy of each step equal
plain sums over the micro-batches' own losses and logits; a NaN in any micro-batch of an accumulation
window stops the run at that step, before the optimizer steps."""
import inspect
import os

import pytest
import torch

from chorus.config import load_recipe
from chorus.losses import EnsembleLoss
from chorus.train import NonFiniteLoss, loop, run, stats
from test_train_support import ROOT, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")
STEP_FILES = {inspect.getsourcefile(loop), inspect.getsourcefile(stats)}   # the step and its statistics


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return ndigits_shards(tmp_path_factory)


class Recording(EnsembleLoss):
    """The loop's loss, recording each micro-batch's loss and logits on the host (after the fact)."""
    seen: list = []
    nan_at: int | None = None

    def forward(self, logits, target, generator=None):
        parts = super().forward(logits, target, generator)
        Recording.seen.append((parts["loss"].detach().double().item(), logits.detach().double().clone(),
                               target.clone()))
        if Recording.nan_at == len(Recording.seen):
            parts = {**parts, "loss": parts["loss"] * float("nan")}
        return parts


def _host_reads(monkeypatch):
    """Count .item/.tolist/.cpu/bool/float/int of tensors called from the loop's and its statistics' files."""
    calls = []
    for name in ("item", "tolist", "cpu", "__bool__", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)

        def wrapped(self, *a, _real=real, _name=name, **k):
            import sys
            if sys._getframe(1).f_code.co_filename in STEP_FILES:
                calls.append(_name)
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return calls


def test_host_reads_once_per_step_and_log_and_logged_stats_match_plain_sums(shards, tmp_path, monkeypatch):
    Recording.seen, Recording.nan_at = [], None
    monkeypatch.setattr(loop, "EnsembleLoss", Recording)
    calls = _host_reads(monkeypatch)
    accum, steps = 4, 3
    r = run(load_recipe(QUICKSTART, tiny(shards, str(tmp_path / "run"), tmp_path, f"train.grad_accum={accum}",
                                         "data.batch_size=8", f"train.max_steps={steps}", "train.epochs=1",
                                         "train.eval_test=false", "tracking.enabled=false", "diagnostics.every=0")))
    monkeypatch.undo()
    assert r["steps"] == steps and r["batches_this_rank"] == accum * steps
    # one read per optimizer step (the non-finite check; the log window is summed on the host from it);
    # an earlier step read three times per micro-batch (2 x .cpu(), .item()) plus a bool: 4 x 12 = 48
    assert calls == ["tolist"] * steps, calls
    logged = [x for x in map(__import__("json").loads, open(os.path.join(r["run_dir"], "metrics.jsonl")))
              if "train/loss" in x]
    assert [x["step"] for x in logged] == [1, 2, 3]
    train_calls = Recording.seen[:accum * steps]          # then validation (eval mode, not this loss)
    for k, x in enumerate(logged):
        window = train_calls[accum * k: accum * (k + 1)]
        n = sum(len(y) for _, _, y in window)
        want_loss = sum(l * len(y) for l, _, y in window) / n
        want_acc = sum(int((lg.mean(0).argmax(-1) == y).sum()) for _, lg, y in window) / n
        assert x["train/loss"] == pytest.approx(want_loss, rel=1e-6)
        assert x["train/acc"] == pytest.approx(want_acc, abs=1e-12)
    assert r["samples"] == sum(len(y) for _, _, y in train_calls)


def test_nan_in_the_first_micro_batch_of_a_window_stops_at_that_step_before_it_steps(shards, tmp_path, monkeypatch):
    Recording.seen, Recording.nan_at = [], 3               # batch 3 = first micro-batch of step 2
    monkeypatch.setattr(loop, "EnsembleLoss", Recording)
    stepped = []
    real_step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: (stepped.append(1), real_step(self, *a, **k))[1])
    recipe = load_recipe(QUICKSTART, tiny(shards, str(tmp_path / "run"), tmp_path, "train.grad_accum=2",
                                          "train.checkpoint_every=1", "tracking.enabled=false"))
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss \(nan\) at step 2 \(epoch 1, batches 3-4\).*step_000000001"):
        run(recipe)
    assert len(stepped) == 1                                # step 1 only: step 2's update never happened
    assert len(Recording.seen) == 4                         # the window was finished, then stopped
