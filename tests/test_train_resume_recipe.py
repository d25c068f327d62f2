"""Resuming follows the recipe: ``--resume`` finds only this recipe's own run folders, and the
optimizer's hyper-parameters (not only ``lr``) come from the resumed recipe, not the checkpoint."""
import glob
import os

import pytest
import torch

from chorus.config import load_recipe, recipe_from_dict
from chorus.train import rundir, run
from test_train_support import ROOT, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return ndigits_shards(tmp_path_factory)


def _fake_run(root, name, step):
    ck = root / "runs" / name / "checkpoints" / f"step_{step:09d}"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text(f'{{"epoch": 0, "batch": 0, "step": {step}}}')
    return str(root / "runs" / name)


def test_resume_auto_ignores_another_recipes_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = _fake_run(tmp_path, "exp-20240101-000000", 3)
    _fake_run(tmp_path, "exp-large-20250101-000000", 9)        # another recipe, newer, sorts after "exp-2..."
    _fake_run(tmp_path, "exp-20230101-000000-extra", 9)        # not the run-folder pattern
    recipe = recipe_from_dict({"name": "exp", "data": {"shards": "unused"}, "train": {"resume": "auto"}})
    run_dir, ck = rundir.resolve(recipe)
    assert run_dir == mine and ck == os.path.join(mine, "checkpoints", "step_000000003")


def test_resume_auto_picks_the_newest_own_folder_counting_suffixes_as_numbers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fake_run(tmp_path, "exp-20240101-000000", 1)
    _fake_run(tmp_path, "exp-20240101-000000-9", 1)
    newest = _fake_run(tmp_path, "exp-20240101-000000-10", 1)
    recipe = recipe_from_dict({"name": "exp", "data": {"shards": "unused"}, "train": {"resume": "auto"}})
    assert rundir.resolve(recipe)[0] == newest
    other = recipe_from_dict({"name": "exp-large", "data": {"shards": "unused"}, "train": {"resume": "auto"}})
    run_dir, ck = rundir.resolve(other)                 # no folder of its own: a fresh run
    assert ck is None and os.path.basename(run_dir).startswith("exp-large-")


def _param_groups(checkpoint):
    (path,) = glob.glob(os.path.join(checkpoint, "optimizer*.bin"))
    return torch.load(path, map_location="cpu", weights_only=False)["param_groups"]


def test_resume_applies_the_recipes_optimizer_hyperparameters(shards, tmp_path):
    out = str(tmp_path / "run")
    common = ("optim.name=sgd", "train.epochs=1", "train.eval_test=false", "tracking.enabled=false",
              "schedule.name=constant", "schedule.warmup_epochs=0")
    first = run(load_recipe(QUICKSTART, tiny(shards, out, tmp_path, *common, "train.max_steps=1",
                                             "optim.momentum=0.9", "optim.weight_decay=0.01")))
    groups = _param_groups(first["last_checkpoint"])
    assert [g["momentum"] for g in groups] == [0.9, 0.9, 0.9] and [g["weight_decay"] for g in groups] == [0.01, 0.0, 0.0]
    second = run(load_recipe(QUICKSTART, tiny(shards, out, tmp_path, *common, "train.max_steps=2",
                                              "train.resume=auto", "optim.momentum=0.5", "optim.nesterov=true",
                                              "optim.weight_decay=0.02", "optim.lr=0.003")))
    assert second["steps"] == 2
    groups = _param_groups(second["last_checkpoint"])
    assert [g["momentum"] for g in groups] == [0.5, 0.5, 0.5]
    assert [g["nesterov"] for g in groups] == [True, True, True]
    assert [g["weight_decay"] for g in groups] == [0.02, 0.0, 0.0]  # no-decay and MPS (optim.mps) groups undecayed
    assert [g["lr"] for g in groups] == pytest.approx([0.003, 0.003, 0.003])


def test_resume_applies_adamw_betas_and_eps(shards, tmp_path):
    out = str(tmp_path / "run")
    common = ("train.epochs=1", "train.eval_test=false", "tracking.enabled=false")
    run(load_recipe(QUICKSTART, tiny(shards, out, tmp_path, *common, "train.max_steps=1")))
    second = run(load_recipe(QUICKSTART, tiny(shards, out, tmp_path, *common, "train.max_steps=2",
                                              "train.resume=auto", "optim.betas=[0.8, 0.99]", "optim.eps=1e-6")))
    groups = _param_groups(second["last_checkpoint"])
    assert [tuple(g["betas"]) for g in groups] == [(0.8, 0.99)] * 3
    assert [g["eps"] for g in groups] == [1e-6] * 3
