"""How `chorus train` and `chorus eval` fail and take their paths: a failure after the MLflow run
started (here: an unreadable test shard) ends the run FAILED; setup and data errors exit 2 with one
line naming the problem; ``--out`` and ``--shards`` are taken verbatim; ``chorus eval``'s loss is the
training loop's (label smoothing included)."""
import json
import os
import shutil

import pytest
import torch
from mlflow.tracking import MlflowClient

from chorus.cli import main as cli
from chorus.config import load_recipe
from chorus.losses import EnsembleLoss
from chorus.train import components, run
from chorus.train.checkpoint import load_model_weights
from chorus.train.eval_checkpoint import evaluate_checkpoint, find_checkpoint
from test_train_support import ROOT, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return ndigits_shards(tmp_path_factory)


def _chorus_lines(err):
    return [line for line in err.splitlines() if line.startswith("chorus train:")]


def test_unreadable_test_shard_ends_the_mlflow_run_failed_and_exits_2(shards, tmp_path, capsys):
    bad = tmp_path / "shards"
    shutil.copytree(shards, bad)
    with open(bad / "test-000000.tar", "r+b") as f:          # a corrupt tar header: a DataError at test time
        f.write(b"garbage" * 100)
    out = tmp_path / "run"
    code = cli(["train", QUICKSTART, *tiny(str(bad), str(out), tmp_path, "train.epochs=1", "train.max_steps=1")])
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    (line,) = _chorus_lines(err)
    assert line.startswith("chorus train: error:") and "test-000000.tar" in line and "corrupt tar header" in line
    info = json.load(open(out / "run.json"))
    run_ = MlflowClient(info["tracking_uri"]).get_run(info["mlflow_run_id"])
    assert run_.info.status == "FAILED"
    assert "val/acc" in run_.data.metrics                      # training itself had finished


def test_accumulation_window_larger_than_the_epoch_exits_2_with_one_line(shards, tmp_path, capsys):
    code = cli(["train", QUICKSTART, *tiny(shards, str(tmp_path / "run"), tmp_path, "train.grad_accum=1000",
                                           "tracking.enabled=false")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = _chorus_lines(err)
    assert "train.grad_accum=1000" in line and "no full step" in line and "quickstart.yaml" in line


@pytest.mark.parametrize("out", ["a #1", "2024"])
def test_out_is_the_folder_given(shards, tmp_path, monkeypatch, capsys, out):
    """``--out 'a #1'`` is not cut at the ``#`` and ``--out 2024`` is a folder name, not a number (a one-step
    run writes its run folder there). A rejected recipe (an accumulation window longer than the epoch)
    writes no folder at all."""
    monkeypatch.chdir(tmp_path)
    args = [a for a in tiny(shards, "unused", tmp_path, "tracking.enabled=false", "train.epochs=1",
                            "train.max_steps=1", "train.eval_test=false") if not a.startswith("train.out_dir=")]
    assert cli(["train", QUICKSTART, *args, "train.grad_accum=1000", "--out", out]) == 2
    assert "no full step" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / out)
    assert cli(["train", QUICKSTART, *args, "--out", out]) == 0
    assert {"recipe.yaml", "checkpoints", "summary.json"} <= set(os.listdir(tmp_path / out))
    assert load_recipe(str(tmp_path / out / "recipe.yaml")).train.out_dir == out


@pytest.fixture(scope="module")
def smoothed(shards, tmp_path_factory):
    """One short run with label smoothing; its summary holds the loop's val/loss."""
    tmp = tmp_path_factory.mktemp("smoothed")
    recipe = load_recipe(QUICKSTART, tiny(shards, str(tmp / "run"), tmp, "train.epochs=1", "train.max_steps=2",
                                          "train.eval_test=false", "tracking.enabled=false",
                                          "loss.label_smoothing=0.3", "loss.gamma=0.5"))
    return recipe, run(recipe), tmp


def test_chorus_eval_loss_equals_the_training_val_loss_with_label_smoothing(smoothed, shards, tmp_path):
    recipe, result, _ = smoothed
    link = tmp_path / "moved #1"                              # --shards with a "#": taken verbatim
    os.symlink(shards, link)
    ev = evaluate_checkpoint(result["run_dir"], split="val", shards=str(link), batch_size=7)
    assert ev["loss"] == pytest.approx(result["val"]["loss"], rel=1e-5)
    assert ev["samples"] == result["val"]["samples"]

    # independently: the ensemble loss of the saved weights over the val split, by a plain loop
    model = components.build_model(recipe, components.open_shards(recipe))
    model.load_state_dict(load_model_weights(find_checkpoint(result["run_dir"])))
    model.eval()
    lc = recipe.loss
    loss_fn = EnsembleLoss(gamma=lc.gamma, temperature=lc.temperature, ce=lc.ce, label_smoothing=0.3).eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in components.make_loader(recipe, "val", train=False):
            total += float(loss_fn(model(x).float(), y)["loss"]) * len(y)
            n += len(y)
    assert ev["loss"] == pytest.approx(total / n, rel=1e-5)
    unsmoothed = EnsembleLoss(gamma=lc.gamma, temperature=lc.temperature, ce=lc.ce).eval()
    with torch.no_grad():
        x, y = next(iter(components.make_loader(recipe, "val", train=False)))
        logits = model(x).float()
        assert abs(float(loss_fn(logits, y)["loss"]) - float(unsmoothed(logits, y)["loss"])) > 1e-3


def test_eval_shards_and_batch_size_reach_the_recipe(smoothed, tmp_path, capsys):
    _, result, _ = smoothed
    assert cli(["eval", result["run_dir"], "--shards", str(tmp_path / "gone #1"), "--batch-size", "5"]) == 2
    assert "gone #1" in capsys.readouterr().err                # the whole path, not "gone "
