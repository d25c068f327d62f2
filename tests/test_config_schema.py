"""The one recipe schema (issue 15): the neuron section is the neuron's own definition, every key is
documented and printed by ``--help-recipe``, the JSON Schema export validates the shipped recipes with
an independent validator (jsonschema), every default is valid; and the recipe-level items of issues
18 (7, 8), 13 (5) and 19 (6, the message part)."""
import json
import os
import subprocess
import sys

import jsonschema
import pytest
import yaml

from chorus import models
from chorus.config import NeuronConfig, Recipe, RecipeError, load_recipe, recipe_from_dict, to_dict
from chorus.config.search import SearchRecipe
from chorus.neurons import LIF, LIF_FIELDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes")
CHORUS = os.path.join(os.path.dirname(sys.executable), "chorus")


def _chorus(*args, cwd=None):
    return subprocess.run([CHORUS, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_one_neuron_definition_from_lif_fields():
    assert NeuronConfig is models.NeuronConfig                         # config/schema and models: one class
    assert list(NeuronConfig.model_fields) == list(LIF_FIELDS)
    defaults = NeuronConfig().kwargs
    assert defaults == {k: f.default for k, f in LIF_FIELDS.items()}
    assert defaults["mps"] is False and defaults["mps_init"] == "first"
    lif, ref = NeuronConfig().make(), LIF()                           # the same layer as LIF's own defaults
    assert lif.config == ref.config
    r = recipe_from_dict({"data": {"shards": "x"}}, ["neuron.v_init=uniform", "neuron.v_init_scale=0.3",
                                                     "neuron.mps=true", "neuron.mps_init=zero"])
    assert r.neuron.make().config == LIF(v_init="uniform", v_init_scale=0.3, mps=True, mps_init="zero").config


@pytest.mark.parametrize("override, key, rule", [
    ("neuron.tau=0.5", "neuron.tau", ">= 1"),                          # the recipe used to accept tau > 0
    ("neuron.v_init_scale=-1", "neuron.v_init_scale", "positive"),
    ("neuron.mps_init=last", "neuron.mps_init", "first, zero"),
    ("neuron.mps=1", "neuron.mps", "True or False"),
])
def test_neuron_errors_name_the_key_written_by_the_neurons_rules(override, key, rule):
    with pytest.raises(RecipeError) as e:
        load_recipe(os.path.join(RECIPES, "quickstart.yaml"), [override])
    msg = str(e.value)
    assert msg.startswith(key + ":") and rule in msg and "quickstart.yaml" in msg and "model:" not in msg


def test_neuron_unknown_key_is_named():
    with pytest.raises(RecipeError, match=r"unknown key 'neuron.taus' .*known keys here: .*v_init_scale"):
        recipe_from_dict({"data": {"shards": "x"}, "neuron": {"taus": 2}})


def test_empty_recipe_file_says_empty(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(RecipeError, match=r"empty\.yaml: empty recipe"):
        load_recipe(str(path))


def test_every_default_is_valid_and_the_default_model_exists():
    r = recipe_from_dict({"data": {"shards": "x"}})
    assert r.model.name in models.list()
    again = Recipe.model_validate(to_dict(r))                           # each default passes its own rules
    assert to_dict(again) == to_dict(r)
    with pytest.raises(RecipeError, match=r"model.name: .*'vgg_smal' is not a registered model; known: .*vgg_small"):
        recipe_from_dict({"data": {"shards": "x"}, "model": {"name": "vgg_smal"}})


def _dotted(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("args", "tags", "fixed", "space", "mutations") and v:
            yield from _dotted(v, f"{prefix}{k}.")
        else:
            yield prefix + k


def test_help_recipe_lists_every_key_with_type_default_and_range():
    res = _chorus("train", "--help-recipe")
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line for line in res.stdout.splitlines() if line and not line[0].isspace()}
    keys = set(_dotted(to_dict(recipe_from_dict({"data": {"shards": "x"}}))))
    assert keys <= set(rows), keys - set(rows)
    assert "float" in rows["neuron.tau"] and "2.0" in rows["neuron.tau"] and ">= 1" in rows["neuron.tau"]
    assert "false" in rows["neuron.mps"] and "first | zero" in rows["neuron.mps_init"]
    assert "int" in rows["train.epochs"] and ">= 1" in rows["train.epochs"]
    assert "required" in rows["data.shards"] and "sgd | adamw" in rows["optim.name"]
    assert "MPS off" in res.stdout                                      # the neuron defaults are spelled out
    tune = _chorus("tune", "--help-recipe")
    assert tune.returncode == 0 and "scheduler.reduction_factor" in tune.stdout and "> 1" in tune.stdout


def test_recipe_schema_validates_shipped_recipes_with_jsonschema(tmp_path):
    res = _chorus("train", "--recipe-schema")
    assert res.returncode == 0, res.stderr
    schema = json.loads(res.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for name in sorted(n for n in os.listdir(RECIPES) if n.endswith(".yaml")):
        with open(os.path.join(RECIPES, name)) as f:
            data = yaml.safe_load(f)
        assert not list(validator.iter_errors(data)), name
    bad = {"data": {"shards": "x", "T": "four"}, "train": {"epocs": 1}}
    assert len(list(validator.iter_errors(bad))) == 2                  # a wrong type and an unknown key
    search = jsonschema.Draft202012Validator(SearchRecipe.model_json_schema())
    with open(os.path.join(RECIPES, "search", "quickstart_gamma_alpha.yaml")) as f:
        assert not list(search.iter_errors(yaml.safe_load(f)))


def test_batch_size_error_names_key_and_file(tmp_path):
    """Issue 19, item 6: the key, its value and the recipe file, and no run folder."""
    msg = _refusal(tmp_path, "data.batch_size=5000")
    assert "data.batch_size: 5000 is too large" in msg and "cannot fill one batch" in msg and "quickstart.yaml" in msg


def _refusal(tmp_path, *overrides):
    """The RecipeError of the quickstart recipe on a 60-sample shard set with ``overrides``."""
    from chorus.data import shard
    from chorus.train import run

    out = tmp_path / "shards"
    with open(os.path.join(ROOT, "datasets", "ndigits.yaml")) as f:
        card = yaml.safe_load(f)
    card["options"]["limit"] = 60
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(card))
    shard(str(tmp_path / "card.yaml"), None, str(out), workers=1, shard_size_mb=1.0, progress=False)
    recipe = load_recipe(os.path.join(RECIPES, "quickstart.yaml"),
                         [f"data.shards={out}", f"train.out_dir={tmp_path / 'run'}", "tracking.enabled=false",
                          *overrides])
    with pytest.raises(RecipeError) as e:
        run(recipe)
    assert not (tmp_path / "run").exists()
    return str(e.value)
