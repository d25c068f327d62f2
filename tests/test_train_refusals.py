"""What `chorus train` refuses, and how (issue 18, items 4, 5, 6, 7, 9; issue 19, item 4): one line
naming the key, exit 2, no traceback and no run folder -- checked together before anything is
written; key=value overrides anywhere after the recipe; a resume that would change the run is refused
naming the keys, one that changes only safe keys goes on."""
import os

import pytest

from chorus.cli import main as cli
from chorus.config import load_recipe
from test_train_support import ROOT, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")
SHORT = ("tracking.enabled=false", "train.epochs=1", "train.max_steps=1", "train.eval_test=false")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return ndigits_shards(tmp_path_factory)


def _train(capsys, *args):
    code = cli(["train", QUICKSTART, *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("override, words", [
    ("neuron.tau=0.5", ["neuron.tau", ">= 1"]),
    ("data.batch_size=5000", ["data.batch_size", "5000", "cannot fill one batch", "quickstart.yaml"]),
    ("model.name=pointnet", ["model.name", "'pointnet' takes points input", "holds events"]),
    ("model.name=vgg_smal", ["model.name", "'vgg_smal' is not a registered model"]),
    ("model.args.num_classes=5", ["model.args.num_classes", "5 disagrees with the 10 classes"]),
    ("model.args.width=0", ["model.args.width", "width=0 must be a positive number"]),
])
def test_refused_recipe_writes_no_run_folder(shards, tmp_path, monkeypatch, capsys, override, words):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code, err = _train(capsys, *tiny(shards, str(out), tmp_path, *SHORT), override)
    assert code == 2 and "Traceback" not in err, err[-2000:]
    (line,) = [x for x in err.splitlines() if x.startswith("chorus train:")]
    for word in words:
        assert word in line, line
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_v_threshold_zero_is_judged_by_the_neurons_rules(shards, tmp_path, capsys):
    code, err = _train(capsys, *tiny(shards, str(tmp_path / "run"), tmp_path, *SHORT), "neuron.v_threshold=0")
    assert "v_init_scale" not in err                                   # the key the user did not write
    assert code == 0 or "neuron.v_threshold" in err, err[-2000:]


def test_overrides_after_options_and_the_subcommands_usage(shards, tmp_path, capsys):
    out = tmp_path / "run"
    args = [a for a in tiny(shards, "unused", tmp_path, *SHORT) if not a.startswith("train.out_dir=")]
    assert cli(["train", QUICKSTART, "--out", str(out), *args, "train.log_every=1"]) == 0
    saved = load_recipe(str(out / "recipe.yaml"))
    assert saved.train.log_every == 1 and saved.train.max_steps == 1 and saved.train.out_dir == str(out)
    with pytest.raises(SystemExit) as e:
        cli(["train", QUICKSTART, "--outt", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "usage: chorus train" in err and "--outt" in err


def test_out_naming_a_file_is_a_clear_error(shards, tmp_path, capsys):
    path = tmp_path / "afile"
    path.write_text("keep me")
    code, err = _train(capsys, *tiny(shards, "unused", tmp_path, *SHORT), "--out", str(path))
    assert code == 2 and "Traceback" not in err and "train.out_dir (--out)" in err and "is a file" in err
    assert path.read_text() == "keep me"


def test_resume_with_a_changed_recipe_names_the_keys_and_safe_keys_pass(shards, tmp_path, capsys):
    out = str(tmp_path / "run")
    base = tiny(shards, out, tmp_path, "tracking.enabled=false", "train.epochs=1", "train.eval_test=false")
    assert cli(["train", QUICKSTART, *base, "train.max_steps=1"]) == 0
    before = sorted(os.listdir(os.path.join(out, "checkpoints")))
    code, err = _train(capsys, *base, "train.max_steps=2", "--resume", "model.args.width=1", "neuron.mps=false")
    assert code == 2 and "Traceback" not in err
    assert "model.args: {'width': 0.5} -> {'width': 1}" in err and "neuron.mps: True -> False" in err
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == before           # nothing written
    # safe keys go on (optim.lr is re-applied on resume; train.max_steps), and so does a key the
    # recipe lists in train.resume_changes
    code, err = _train(capsys, *base, "train.max_steps=2", "--resume", "optim.lr=0.001")
    assert code == 0, err[-2000:]
    assert "resumed from" in err and "optim.lr=0.001 replaces the checkpoint's 0.005" in err
    code, err = _train(capsys, *base, "train.max_steps=3", "--resume", "loss.gamma=0.5",
                       "train.resume_changes=[loss.gamma]")
    assert code == 0, err[-2000:]
