"""The loop's shape as issue 15 asks: no function in chorus/train above ~60 lines, no private
Accelerate API, and hooks checked against the TrainHooks protocol before anything runs."""
import ast
import glob
import os

import pytest

import chorus.train
from chorus.config import recipe_from_dict
from chorus.train import Hooks, TrainHooks, run

TRAIN = os.path.dirname(chorus.train.__file__)


def test_no_function_in_train_is_longer_than_60_lines():
    long = []
    for path in sorted(glob.glob(os.path.join(TRAIN, "*.py"))):
        with open(path) as f:
            tree = ast.parse(f.read())
        long += [f"{os.path.basename(path)}:{n.name} ({n.end_lineno - n.lineno + 1})" for n in ast.walk(tree)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert not long, long


def test_train_uses_no_private_accelerate_state():
    for path in glob.glob(os.path.join(TRAIN, "*.py")):
        with open(path) as f:
            code = f.read()
        assert "_reset_state(" not in code and "accelerate.state" not in code, path


def test_hooks_follow_the_protocol_and_are_checked_first(tmp_path):
    class OnlyReports:                           # no should_stop, no all_ranks
        def on_epoch_end(self, epoch, metrics, checkpoint_dir):
            pass

    assert isinstance(Hooks(), TrainHooks) and not isinstance(OnlyReports(), TrainHooks)
    recipe = recipe_from_dict({"data": {"shards": str(tmp_path / "nowhere")},
                               "train": {"out_dir": str(tmp_path / "run")}})
    with pytest.raises(TypeError, match=r"OnlyReports lacks all_ranks, should_stop .*subclass chorus.train.Hooks"):
        run(recipe, hooks=OnlyReports())
    assert not (tmp_path / "run").exists()
