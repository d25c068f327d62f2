"""Parts of the training engine on their own: schedules, optimizer groups, per-timestep metrics,
atomic checkpoints with keep-last-k + best, and a full state round trip through Accelerate."""
import math
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from chorus.config import OptimConfig, ScheduleConfig, recipe_from_dict
from chorus.neurons import LIF
from chorus.train.checkpoint import CheckpointManager, latest_checkpoint, list_checkpoints, read_state
from chorus.train.metrics import TimestepAccuracy, timestep_table
from chorus.train.optim import build_optimizer, build_scheduler, lr_factor


class TinySNN(nn.Module):
    """A test model from chorus LIF: linear → LIF(MPS) → linear readout per timestep."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.lif = LIF(mps=True, alpha_init=0.3)
        self.out = nn.Linear(8, 3)

    def forward(self, x):                      # [T, B, 6] -> [T, B, 3]
        return self.out(self.lif(self.fc(x)))


def test_cosine_with_warmup():
    cfg = ScheduleConfig(name="cosine", warmup_epochs=1, min_lr=0.01)
    f = [lr_factor(s, cfg, steps_per_epoch=10, total_steps=110, base_lr=0.1) for s in range(110)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)          # linear warm-up over 10 steps
    assert f[10] == pytest.approx(1.0)                                      # cosine starts at the top
    assert f[60] == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-6)                # half way: mean of top and floor
    assert f[-1] == pytest.approx(0.1, abs=1e-3)                            # ends at min_lr / lr
    assert all(a >= b for a, b in zip(f[10:], f[11:]))


def test_step_schedule_divides_by_ten_every_30_epochs():
    cfg = ScheduleConfig(name="step", step_size=30, gamma=0.1)
    f = lambda epoch: lr_factor(epoch * 5, cfg, steps_per_epoch=5, total_steps=500, base_lr=0.1)  # noqa: E731
    assert [f(0), f(29), f(30), f(59), f(60), f(99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.001])


def test_scheduler_drives_optimizer_lr():
    m = TinySNN()
    opt = build_optimizer(m, OptimConfig(name="sgd", lr=0.1, weight_decay=1e-3))
    sched = build_scheduler(opt, ScheduleConfig(name="cosine", warmup_epochs=0), 4, 8, 0.1)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[4] == pytest.approx(0.05)


def test_weight_decay_skips_beta_bias_and_norms():
    m = TinySNN()
    opt = build_optimizer(m, OptimConfig(name="adamw", lr=1e-3, weight_decay=0.05))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(m.fc.weight) in decayed and id(m.out.weight) in decayed
    assert id(m.lif.beta) not in decayed and id(m.fc.bias) not in decayed
    assert isinstance(opt, torch.optim.AdamW)


def test_timestep_accuracy_by_hand():
    # T=3, B=2, C=2; sample 0 (y=0): steps predict 0,1,1 ; sample 1 (y=1): steps predict 1,1,0
    logits = torch.tensor([[[2., 0.], [0., 1.]],
                           [[0., 1.], [0., 3.]],
                           [[0., 3.], [5., 0.]]])
    m = TimestepAccuracy(3)
    m.update(logits, torch.tensor([0, 1]), loss=torch.tensor(0.5))
    r = m.result()
    assert [r["acc_step_1"], r["acc_step_2"], r["acc_step_3"]] == [1.0, 0.5, 0.0]
    # first 1: [2,0]->0 ok, [0,1]->1 ok ; first 2: [2,1]->0 ok, [0,4]->1 ok ; first 3: [2,4]->1 wrong, [5,4]->0 wrong
    assert [r["acc_first_1"], r["acc_first_2"], r["acc_first_3"]] == [1.0, 1.0, 0.0]
    assert r["acc"] == r["acc_first_3"] and r["loss"] == pytest.approx(0.5) and r["samples"] == 2
    table = timestep_table(r, "t")
    assert "| acc of step t alone | 100.00 | 50.00 | 0.00 |" in table


def _accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


def _recipe():
    return recipe_from_dict({"data": {"shards": "unused"}})


def _release(acc):
    from chorus.train.setup import release

    release(acc)


def test_checkpoint_round_trip_restores_model_optimizer_scheduler_and_rng(tmp_path):
    acc = _accelerator()
    try:
        model = TinySNN()
        opt = build_optimizer(model, OptimConfig(name="sgd", lr=0.1, momentum=0.9))
        sched = build_scheduler(opt, ScheduleConfig(name="cosine"), 5, 20, 0.1)
        model, opt = acc.prepare(model, opt)
        acc.register_for_checkpointing(sched)
        x, y = torch.randn(4, 8, 6), torch.randint(0, 3, (8,))

        def step():
            loss = nn.functional.cross_entropy(model(x).mean(0), y)
            acc.backward(loss)
            opt.step()
            sched.step()
            opt.zero_grad()

        for _ in range(3):
            step()
        mgr = CheckpointManager(str(tmp_path / "ck"), acc, keep_last=2)
        path = mgr.save({"epoch": 0, "batch": 3, "step": 3}, model, _recipe())
        want = [torch.rand(3), np.random.rand(), random.random()]
        step()
        after = {k: v.clone() for k, v in model.state_dict().items()}
        lr_after = opt.param_groups[0]["lr"]
        for _ in range(2):              # wander off, then come back
            step()
        torch.rand(5)
        assert mgr.load(path) == {"epoch": 0, "batch": 3, "step": 3, "finite": True}
        again = [torch.rand(3), np.random.rand(), random.random()]
        assert torch.equal(again[0], want[0]) and again[1:] == want[1:]      # RNG states restored
        mgr.load(path)
        torch.rand(3), np.random.rand(), random.random()
        step()
        assert all(torch.equal(after[k], v) for k, v in model.state_dict().items())
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_after)
        assert os.path.isfile(os.path.join(path, "model.pt")) and os.path.isfile(os.path.join(path, "recipe.yaml"))
    finally:
        _release(acc)


def test_keep_last_k_plus_best_and_crash_while_saving(tmp_path):
    acc = _accelerator()
    try:
        model = acc.prepare(TinySNN())
        root = str(tmp_path / "ck")
        mgr = CheckpointManager(root, acc, keep_last=2)
        accs = {1: 0.5, 2: 0.9, 3: 0.6, 4: 0.7, 5: None}
        for s, a in accs.items():
            mgr.save({"epoch": s, "batch": 0, "step": s}, model, _recipe(), val_acc=a)
        names = [os.path.basename(p) for p in list_checkpoints(root)]
        assert names == ["step_000000002", "step_000000004", "step_000000005"]   # best (0.9) + last 2
        assert mgr.best["name"] == "step_000000002" and mgr.best["val_acc"] == 0.9
        # a crash while saving leaves a temporary folder without trainer_state.json: never "latest"
        broken = os.path.join(root, ".tmp-step_000000006")
        os.makedirs(broken)
        open(os.path.join(broken, "model.pt"), "w").close()
        os.makedirs(os.path.join(root, "step_000000007"))            # no state file: incomplete
        assert latest_checkpoint(root).endswith("step_000000005")
        assert read_state(latest_checkpoint(root))["step"] == 5
        mgr.save({"epoch": 6, "batch": 0, "step": 8}, model, _recipe())
        assert not os.path.exists(broken)                             # leftovers cleaned on the next save
    finally:
        _release(acc)


def test_table_mentions_every_timestep():
    m = TimestepAccuracy(4)
    m.update(torch.randn(4, 10, 5), torch.randint(0, 5, (10,)))
    t = timestep_table(m.result())
    assert t.count("|") > 20 and "ensemble accuracy" in t and not math.isnan(m.result()["acc"])


def test_rank_seeds_keep_rank_zero_and_give_other_ranks_their_own_stream():
    from chorus.train.setup import rank_seed

    assert rank_seed(7, 0) == 7                                   # one process == rank 0 of a launch
    seeds = [rank_seed(s, r) for s in range(4) for r in range(8)]
    assert len(set(seeds)) == len(seeds)                          # no (seed, rank) collides, unlike seed + rank
    assert rank_seed(0, 1) != 1 and rank_seed(3, 2) == rank_seed(3, 2)
    a, b = (torch.Generator().manual_seed(rank_seed(5, r)) for r in (0, 1))
    assert not torch.equal(torch.rand(16, generator=a), torch.rand(16, generator=b))
