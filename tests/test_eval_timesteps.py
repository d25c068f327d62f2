"""`chorus eval --timesteps K` in its two meanings (docs/method.md, "Recipes and runs"): re-bin (the same
events into K frames) and extend (the training T frames run for K steps, the last frame repeated or the
sequence looped), each against a plain per-sample loop that builds the K frames by hand; the meaning is
printed and recorded; K ≤ 0 and an extend with K < T are refused with exit 2."""
import json
import os

import pytest
import torch

from chorus import models
from chorus.cli import main as cli
from chorus.config import load_recipe
from chorus.data import input_shape, make_loader, read_manifest
from chorus.train import run
from chorus.train.checkpoint import load_model_weights
from chorus.train.eval_checkpoint import evaluate_checkpoint, extend_frames
from test_train_support import ROOT, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    shards = ndigits_shards(tmp_path_factory, limit=200)
    tmp = tmp_path_factory.mktemp("eval_T")
    recipe = load_recipe(QUICKSTART, tiny(shards, str(tmp / "run"), tmp, "train.epochs=1", "tracking.enabled=false",
                                          "train.eval_test=false"))
    result = run(recipe)
    return recipe, result["best_checkpoint"], shards, tmp


def plain_logits(recipe, ck, shards, K, frames_T, pick):
    """Per-sample loop: the val samples binned into ``frames_T`` frames, step t fed frame ``pick(t)``."""
    manifest = read_manifest(shards)
    model = models.create(recipe.model.name, manifest["num_classes"], input_shape(manifest, K, recipe.data.size),
                          neuron=recipe.neuron.kwargs, **{k: v for k, v in recipe.model.args.items()})
    model.load_state_dict(load_model_weights(ck))
    model.eval()
    out, labels = [], []
    loader = make_loader(shards, "val", T=frames_T, size=recipe.data.size, batch_size=9)
    with torch.no_grad():
        for x, y in loader:
            for i in range(y.shape[0]):
                frames = torch.stack([x[pick(t), i] for t in range(K)])          # [K, 2, H, W]
                out.append(model(frames.unsqueeze(1))[:, 0])
                labels.append(int(y[i]))
    return torch.stack(out, 1), labels


def accuracies(logits, labels):
    """acc_step_t and acc_first_k by plain counting."""
    K, N = logits.shape[:2]
    step = [sum(int(logits[t, n].argmax()) == labels[n] for n in range(N)) / N for t in range(K)]
    first = [sum(int(logits[:k + 1, n].mean(0).argmax()) == labels[n] for n in range(N)) / N for k in range(K)]
    return step, first


@pytest.mark.slow
@pytest.mark.parametrize("mode,frames_T,pick", [
    ("rebin", 5, lambda t: t),
    ("extend-last", 3, lambda t: min(t, 2)),
    ("extend-loop", 3, lambda t: t % 3),
])
def test_each_time_mode_matches_a_hand_built_sequence(trained, mode, frames_T, pick):
    recipe, ck, shards, _ = trained
    got = evaluate_checkpoint(ck, timesteps=5, split="val", time_mode=mode, keep_logits=True)
    want, labels = plain_logits(recipe, ck, shards, 5, frames_T, pick)
    assert got["labels"].tolist() == labels
    torch.testing.assert_close(got["logits"], want, rtol=1e-4, atol=1e-4)
    step, first = accuracies(want, labels)
    n = len(labels)
    for t in range(5):
        assert abs(got[f"acc_step_{t + 1}"] - step[t]) <= 1 / n and abs(got[f"acc_first_{t + 1}"] - first[t]) <= 1 / n
    assert got["time_mode"] == mode and got["timesteps"] == 5 and got["trained_timesteps"] == 3


def test_extend_frames_by_hand():
    x = torch.arange(3).view(3, 1).float()
    assert extend_frames(x, 6, "extend-last").view(-1).tolist() == [0, 1, 2, 2, 2, 2]
    assert extend_frames(x, 7, "extend-loop").view(-1).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert extend_frames(x, 3, "extend-loop") is x and extend_frames(x, 9, "rebin") is x
    with pytest.raises(ValueError, match="cannot extend 3 frames to 2"):
        extend_frames(x, 2, "extend-last")


@pytest.mark.slow
def test_cli_states_and_records_the_meaning(trained, capsys):
    _, ck, _, tmp = trained
    assert cli(["eval", ck, "--split", "val", "--timesteps", "6", "--json", str(tmp / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "time mode: rebin: re-bin: the same events binned into K frames" in out
    assert json.load(open(tmp / "r.json"))["time_mode"] == "rebin"
    assert cli(["eval", ck, "--split", "val", "-T", "6", "--time-mode", "extend-loop", "--json", str(tmp / "l.json")]) == 0
    out = capsys.readouterr().out
    assert "time mode extend-loop: extend: the training T frames, looped until K steps" in out
    r = json.load(open(tmp / "l.json"))
    assert r["time_mode"] == "extend-loop" and r["timesteps"] == 6 and "acc_first_6" in r


@pytest.mark.slow
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_bad_timesteps_exit_2_without_traceback(trained, value, capsys):
    _, ck, _, _ = trained
    with pytest.raises(SystemExit) as e:
        cli(["eval", ck, "--timesteps", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--timesteps" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="whole number ≥ 1"):
        evaluate_checkpoint(ck, timesteps=int(value) if value != "two" else "two")


@pytest.mark.slow
def test_extend_needs_at_least_the_training_T(trained, capsys):
    _, ck, _, _ = trained
    assert cli(["eval", ck, "--timesteps", "2", "--time-mode", "extend-last"]) == 2
    err = capsys.readouterr().err
    assert "extending needs K ≥ the training T = 3" in err and "Traceback" not in err
