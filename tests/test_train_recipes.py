"""The shipped recipes are ready to run: each validates, names a registered model that builds for its
dataset card's input shape, and comes with a vanilla twin that differs only by MPS and TASG."""
import os

import pytest
import yaml

from chorus import models
from chorus.config import load_recipe, to_dict
from chorus.data import input_shape
from chorus.train.components import neuron_kwargs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(n for n in os.listdir(os.path.join(ROOT, "recipes")) if n.endswith(".yaml"))
CARDS = {"ndigits": "ndigits", "cifar10dvs": "cifar10dvs", "dvs128gesture": "dvsgesture",
         "ncaltech101": "ncaltech101", "shd": "shd", "modelnet40": "modelnet40"}


def card_for(recipe):
    folder = os.path.basename(recipe.data.shards.rstrip("/"))
    name = {"dvs128gesture": "dvsgesture"}.get(folder, folder)
    with open(os.path.join(ROOT, "datasets", f"{name}.yaml")) as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_model_builds_for_its_dataset(name):
    r = load_recipe(os.path.join(ROOT, "recipes", name))
    card = card_for(r)
    manifest = {"kind": card["kind"], "sensor_size": card.get("sensor_size"), "num_points": card.get("num_points"),
                "frames": None}
    shape = input_shape(manifest, r.data.T, r.data.size)
    kw = dict(r.model.args)
    if card["kind"] == "points":
        kw.setdefault("timesteps", r.data.T)
    model = models.create(r.model.name, len(card["classes"]), shape, neuron=neuron_kwargs(r), **kw)
    assert len(models.mps_layers(model)) > 0 if r.neuron.mps else len(models.mps_layers(model)) == 0


@pytest.mark.parametrize("name", [n for n in RECIPES if n.endswith("_vanilla.yaml")])
def test_vanilla_twin_differs_only_by_mps_and_tasg(name):
    van = to_dict(load_recipe(os.path.join(ROOT, "recipes", name)))
    mps = to_dict(load_recipe(os.path.join(ROOT, "recipes", name.replace("_vanilla", ""))))
    assert van["neuron"]["mps"] is False and van["loss"]["gamma"] == 0.0
    assert mps["neuron"]["mps"] is True and mps["loss"]["gamma"] > 0
    for d in (van, mps):
        d.pop("name"), d.pop("description"), d["neuron"].pop("mps"), d["loss"].pop("gamma"), d["loss"].pop("p_drop")
    assert van == mps
