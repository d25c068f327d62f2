"""The MPS parameter group (``optim.mps.lr``, ``optim.mps.weight_decay``; issue 17.2) against plain torch
optimizers built by hand with the same groups: one step bit-identical, a few loop steps with β at 10×
the weights' rate equal to a plain SGD loop, a resume that takes a new ``optim.mps.lr`` (PBT), and the
groups DeepSpeed ZeRO-2 keeps from the client optimizer (a real 1-process launch)."""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from chorus.config import load_recipe, recipe_from_dict
from chorus.losses import ensemble_loss
from chorus.neurons import LIF
from chorus.train import components, run
from chorus.train.optim import GROUP_KEY, build_optimizer, build_scheduler, rebase_lr
from test_train_support import ROOT, env, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


class TinyMPS(nn.Module):
    """[T, B, C, H, W] -> [T, B, classes] through two MPS LIF layers (two β) and no BatchNorm."""

    def __init__(self, fin, classes):
        super().__init__()
        self.hidden = nn.Linear(fin, 16)
        self.lif1 = LIF(mps=True, alpha_init=0.3, v_threshold=0.5, backend="reference")
        self.mid = nn.Linear(16, 16)
        self.lif2 = LIF(mps=True, alpha_init=0.6, v_threshold=0.5, backend="reference")
        self.out = nn.Linear(16, classes)

    def forward(self, x):
        h = self.lif1(self.hidden(x.flatten(2).float()))
        return self.out(self.lif2(self.mid(h)))


def hand_groups(model, wd, mps_lr, mps_wd):
    betas = [model.lif1.beta, model.lif2.beta]
    weights = [p for p in model.parameters() if p.dim() >= 2]
    biases = [p for p in model.parameters() if p.dim() < 2 and all(p is not b for b in betas)]
    return [{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": 0.0},
            {"params": betas, "weight_decay": mps_wd, "lr": mps_lr}]


def optim_cfg(**optim):
    return recipe_from_dict({"data": {"shards": "unused"}, "optim": optim}).optim


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_one_step_is_bit_identical_to_a_hand_built_torch_optimizer(name):
    torch.manual_seed(1)
    ours = TinyMPS(2 * 8 * 8, 10)
    ref = copy.deepcopy(ours)
    cfg = optim_cfg(name=name, lr=0.01, weight_decay=0.05, momentum=0.9, mps={"lr": 0.1, "weight_decay": 0.02})
    opt = build_optimizer(ours, cfg)
    assert [g[GROUP_KEY] for g in opt.param_groups] == ["decay", "no_decay", "mps"]
    assert [p is b for p, b in zip(opt.param_groups[2]["params"], [ours.lif1.beta, ours.lif2.beta])] == [True, True]
    groups = hand_groups(ref, 0.05, 0.1, 0.02)
    plain = (torch.optim.SGD(groups, lr=0.01, momentum=0.9) if name == "sgd"
             else torch.optim.AdamW(groups, lr=0.01, betas=(0.9, 0.999), eps=1e-8))
    x, y = torch.rand(3, 4, 2, 8, 8), torch.randint(0, 10, (4,))
    for model, o in ((ours, opt), (ref, plain)):
        for _ in range(2):
            o.zero_grad()
            ensemble_loss(model(x), y, gamma=1.0, temperature=2.0)["loss"].backward()
            o.step()
    for (n, a), (_, b) in zip(ours.named_parameters(), ref.named_parameters()):
        assert torch.equal(a, b), n
    assert float(ours.lif1.beta.detach()) != pytest.approx(float(torch.logit(torch.tensor(0.3))), abs=1e-4)


def test_without_mps_layers_there_is_no_mps_group_and_mps_lr_defaults_to_optim_lr():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(4, 3), LIF(mps=False), nn.Linear(3, 2))
    assert [g[GROUP_KEY] for g in build_optimizer(plain, optim_cfg()).param_groups] == ["decay", "no_decay"]
    opt = build_optimizer(TinyMPS(8, 2), optim_cfg(lr=0.2))
    assert opt.param_groups[2]["lr"] == 0.2 and opt.param_groups[2]["weight_decay"] == 0.0


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return ndigits_shards(tmp_path_factory)


def test_loop_moves_beta_at_ten_times_the_weights_rate_like_plain_sgd(shards, tmp_path, monkeypatch):
    """Three loop steps (SGD, constant rate, optim.mps.lr = 10 x optim.lr) against the same steps of a plain
    torch SGD with hand-built groups on the batches the loop saw."""
    made, seen = {}, []
    real_iterate = components.iterate

    def build_model(recipe, manifest, T=None):
        torch.manual_seed(7)
        made["shape"] = (2 * recipe.data.size * recipe.data.size, manifest["num_classes"])
        model = TinyMPS(*made["shape"])
        made["init"] = copy.deepcopy(model.state_dict())
        return model

    def iterate(loader):
        for x, y in real_iterate(loader):
            seen.append((x.clone(), y.clone()))
            yield x, y

    monkeypatch.setattr(components, "build_model", build_model)
    monkeypatch.setattr(components, "iterate", iterate)
    lr, mps_lr, wd, mps_wd = 0.05, 0.5, 0.01, 0.001
    recipe = load_recipe(QUICKSTART, tiny(
        shards, str(tmp_path / "run"), tmp_path, "train.max_steps=3", "train.epochs=1", "train.eval_test=false",
        "tracking.enabled=false", "data.augment=false", "optim.name=sgd", f"optim.lr={lr}", "optim.momentum=0",
        f"optim.weight_decay={wd}", f"optim.mps.lr={mps_lr}", f"optim.mps.weight_decay={mps_wd}",
        "schedule.name=constant", "schedule.warmup_epochs=0", "loss.p_drop=0", "diagnostics.every=0"))
    result = run(recipe)
    assert result["steps"] == 3 and len(seen) >= 3
    ref = TinyMPS(*made["shape"])
    ref.load_state_dict(made["init"])
    opt = torch.optim.SGD(hand_groups(ref, wd, mps_lr, mps_wd), lr=lr, momentum=0)
    for x, y in seen[:3]:
        opt.zero_grad()
        ensemble_loss(ref(x), y, gamma=1.0, temperature=2.0)["loss"].backward()
        opt.step()
    got = result["model"].state_dict()
    for name, want in ref.state_dict().items():
        torch.testing.assert_close(got[name], want, rtol=1e-5, atol=1e-7)
    moved = (got["lif1.beta"] - made["init"]["lif1.beta"]).abs().item()
    assert moved > 1e-4, moved                      # β did move, at its own rate


def test_rebase_lr_takes_a_perturbed_mps_lr_and_keeps_the_schedule_factor():
    model = TinyMPS(8, 2)
    cfg = optim_cfg(name="sgd", lr=0.1, mps={"lr": 1.0})
    opt = build_optimizer(model, cfg)
    sched_cfg = recipe_from_dict({"data": {"shards": "x"}, "schedule": {"name": "cosine"}}).schedule
    sched = build_scheduler(opt, sched_cfg, 10, 100, 0.1)
    for _ in range(30):
        opt.step()
        sched.step()
    factor = opt.param_groups[0]["lr"] / 0.1
    assert opt.param_groups[2]["lr"] == pytest.approx(1.0 * factor)
    changed = rebase_lr(opt, sched, optim_cfg(name="sgd", lr=0.1, mps={"lr": 3.0}))
    assert changed == {"mps": (1.0, 3.0)}
    assert opt.param_groups[2]["lr"] == pytest.approx(3.0 * factor) and opt.param_groups[0]["lr"] == pytest.approx(0.1 * factor)
    sched.step()
    assert opt.param_groups[2]["lr"] / opt.param_groups[0]["lr"] == pytest.approx(30.0)


def test_pbt_search_may_perturb_optim_mps_lr(tmp_path):
    from chorus.config.search import load_search
    from chorus.tune.space import mutations

    path = tmp_path / "s.yaml"
    path.write_text(f"base: {QUICKSTART}\nspace:\n  optim.mps.lr: loguniform [0.001, 0.1]\n"
                    "scheduler:\n  type: pbt\n  mutations:\n    optim.mps.lr: loguniform [0.001, 0.1]\n")
    spec = load_search(str(path))
    assert list(mutations(spec)) == ["optim.mps.lr"]


DS_SCRIPT = """
import json, sys
from chorus.config import load_recipe
from chorus.train import run, session
seen = {}
real = session.start
def start(*a, **k):
    r, p = real(*a, **k)
    inner = r.optimizer.optimizer                       # Accelerate's wrapper -> DeepSpeed's ZeRO optimizer
    seen["type"] = type(inner).__name__
    seen["groups"] = [{"name": g.get("chorus_group"), "lr": g["lr"], "weight_decay": g["weight_decay"]}
                      for g in inner.param_groups]
    seen["client"] = [[p.numel() for p in g["params"]] for g in inner.optimizer.param_groups]
    return r, p
session.start = start
result = run(load_recipe(sys.argv[2], sys.argv[3:]))
seen["distributed_type"] = result["distributed_type"]
seen["steps"] = result["steps"]
json.dump(seen, open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_deepspeed_zero2_keeps_the_mps_group(shards, tmp_path):
    script = tmp_path / "ds.py"
    script.write_text(DS_SCRIPT)
    out = tmp_path / "seen.json"
    ds = os.path.join(ROOT, "infra", "deepspeed", "zero2.json")
    args = tiny(shards, str(tmp_path / "run"), tmp_path, f"train.deepspeed={ds}", "train.max_steps=2",
                "train.epochs=1", "train.eval_test=false", "tracking.enabled=false", "optim.lr=0.004",
                "optim.weight_decay=0.01", "optim.mps.lr=0.04", "optim.mps.weight_decay=0.001")
    e = env(MASTER_ADDR="127.0.0.1", MASTER_PORT="29561", RANK="0", LOCAL_RANK="0", WORLD_SIZE="1",
            LOCAL_WORLD_SIZE="1")
    p = subprocess.run([sys.executable, str(script), str(out), QUICKSTART, *args], env=e, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    seen = json.loads(out.read_text())
    assert seen["distributed_type"] == "DEEPSPEED" and seen["steps"] == 2
    assert "Zero" in seen["type"] or "ZeRO" in seen["type"], seen["type"]
    names = [g["name"] for g in seen["groups"]]
    assert names == ["decay", "no_decay", "mps"], seen
    mps = seen["groups"][2]
    # the schedule (cosine with warm-up) multiplies both rates by one factor
    assert mps["lr"] / seen["groups"][0]["lr"] == pytest.approx(10.0) and mps["weight_decay"] == 0.001
    assert seen["groups"][0]["weight_decay"] == 0.01 and seen["groups"][1]["weight_decay"] == 0.0
    assert sum(seen["client"][2]) == 4              # ZeRO's flat partition of the four β of vgg_small


def test_a_resumed_run_takes_the_recipes_mps_lr_and_weight_decay(shards, tmp_path, capsys):
    """What a PBT exploit does: resume a checkpoint with a perturbed optim.mps.lr (resume_check lets it);
    the weights keep the quickstart's optim.weight_decay 1e-4."""
    import glob

    out = str(tmp_path / "run")
    common = ("optim.name=sgd", "train.epochs=1", "train.eval_test=false", "tracking.enabled=false",
              "schedule.name=constant", "schedule.warmup_epochs=0")
    first = run(load_recipe(QUICKSTART, tiny(shards, out, tmp_path, *common, "train.max_steps=1", "optim.mps.lr=0.05")))
    second = run(load_recipe(QUICKSTART, tiny(shards, out, tmp_path, *common, "train.max_steps=2", "train.resume=auto",
                                              "optim.mps.lr=0.2", "optim.mps.weight_decay=0.003")))
    assert "optim.mps.lr=0.2 replaces the checkpoint's 0.05" in capsys.readouterr().err
    groups = []
    for ck in (first["last_checkpoint"], second["last_checkpoint"]):
        (path,) = glob.glob(os.path.join(ck, "optimizer*.bin"))
        groups.append(torch.load(path, map_location="cpu", weights_only=False)["param_groups"])
    assert [(g[GROUP_KEY], g["lr"], g["weight_decay"]) for g in groups[0]] == [
        ("decay", 0.005, 0.0001), ("no_decay", 0.005, 0.0), ("mps", 0.05, 0.0)]
    assert [(g[GROUP_KEY], g["lr"], g["weight_decay"]) for g in groups[1]] == [
        ("decay", 0.005, 0.0001), ("no_decay", 0.005, 0.0), ("mps", pytest.approx(0.2), 0.003)]
