"""One copy of the weights per checkpoint (model.pt; no Accelerate model.safetensors beside it), a
resume still restores them, and the MLflow "best" artifact of a real run holds only what using the
model needs: `chorus eval` and `chorus report` work from the downloaded artifact alone."""
import os

import pytest
import torch
from mlflow.tracking import MlflowClient

from chorus.config import load_recipe
from chorus.report.from_checkpoint import load_checkpoint
from chorus.train import run
from chorus.train.eval_checkpoint import evaluate_checkpoint
from test_train_support import ROOT, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return ndigits_shards(tmp_path_factory)


def test_best_artifact_is_weights_recipe_state_and_evaluates(shards, tmp_path):
    recipe = load_recipe(QUICKSTART, tiny(shards, str(tmp_path / "run"), tmp_path, "train.epochs=1",
                                          "train.max_steps=2", "train.eval_test=false", "diagnostics.every=0"))
    r = run(recipe)
    best = r["best_checkpoint"]
    assert best and not os.path.exists(os.path.join(best, "model.safetensors"))   # one copy of the weights
    assert os.path.isfile(os.path.join(best, "optimizer.bin"))                   # the training state is local
    client = MlflowClient(recipe.tracking.uri)
    listed = {os.path.basename(a.path) for a in client.list_artifacts(r["mlflow_run_id"], "checkpoints/best")}
    assert listed == {"model.pt", "recipe.yaml", "trainer_state.json"}
    down = client.download_artifacts(r["mlflow_run_id"], "checkpoints/best", str(tmp_path / "down"))
    # the weights are those of the trained model (plain torch comparison with the run's returned model)
    weights = torch.load(os.path.join(down, "model.pt"), weights_only=True)
    assert all(torch.equal(weights[k], v.cpu()) for k, v in r["model"].state_dict().items())
    here, there = evaluate_checkpoint(best, split="val"), evaluate_checkpoint(down, split="val")
    assert there["acc"] == here["acc"] == pytest.approx(r["val"]["acc"]) and there["loss"] == pytest.approx(r["val"]["loss"])
    rd = load_checkpoint(down, samples=8)
    assert rd.metrics["val/acc"] == pytest.approx(r["val"]["acc"])
