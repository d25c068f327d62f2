"""Recipe loading: YAML into dataclasses, key.sub=value overrides, errors naming key and file."""
import os

import pytest
import yaml

from chorus.config import RecipeError, apply_overrides, flatten, load_recipe, parse_override, to_dict

RECIPES = os.path.join(os.path.dirname(__file__), "..", "recipes")


def write(tmp_path, data, name="r.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return str(p)


BASE = {"name": "t", "model": {"name": "vgg_small"}, "data": {"shards": "data/x", "T": 4, "batch_size": 8},
        "optim": {"name": "sgd", "lr": 0.1}, "train": {"epochs": 2}}


def test_load_defaults_and_values(tmp_path):
    r = load_recipe(write(tmp_path, BASE))
    assert r.name == "t" and r.data.T == 4 and r.data.batch_size == 8 and r.train.epochs == 2
    assert r.neuron.tau == 2.0 and r.neuron.v_threshold == 1.0 and r.loss.temperature == 2.0  # docs/method.md defaults
    assert r.source.endswith("r.yaml")


def test_overrides_are_yaml_scalars(tmp_path):
    r = load_recipe(write(tmp_path, BASE), ["optim.lr=0.05", "neuron.mps=false", "optim.betas=[0.8,0.9]",
                                            "neuron.v_reset=null", "model.args.width=0.5", "train.epochs=3"])
    assert r.optim.lr == 0.05 and r.neuron.mps is False and r.optim.betas == [0.8, 0.9]
    assert r.neuron.v_reset is None and r.model.args == {"width": 0.5} and r.train.epochs == 3


def test_int_is_accepted_for_float_but_not_bool(tmp_path):
    r = load_recipe(write(tmp_path, BASE), ["optim.lr=1"])
    assert r.optim.lr == 1.0 and isinstance(r.optim.lr, float)
    with pytest.raises(RecipeError, match="optim.lr"):
        load_recipe(write(tmp_path, BASE), ["optim.lr=true"])


def test_unknown_key_names_key_and_file(tmp_path):
    bad = dict(BASE, train={"epocs": 3})
    path = write(tmp_path, bad)
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert "train.epocs" in str(e.value) and path in str(e.value) and "epochs" in str(e.value)


def test_unknown_section_and_override_key(tmp_path):
    path = write(tmp_path, dict(BASE, optimiser={"lr": 1}))
    with pytest.raises(RecipeError, match=r"unknown key 'optimiser'"):
        load_recipe(path)
    with pytest.raises(RecipeError, match=r"data.bach_size"):
        load_recipe(write(tmp_path, BASE), ["data.bach_size=4"])


def test_wrong_type_names_key_value_and_file(tmp_path):
    path = write(tmp_path, dict(BASE, data={"shards": "x", "T": "four"}))
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    msg = str(e.value)
    assert "data.T" in msg and "'four'" in msg and path in msg and "int" in msg


def test_choice_lists_allowed_values(tmp_path):
    with pytest.raises(RecipeError, match=r"optim.name.*'sgd'.*'adamw'"):
        load_recipe(write(tmp_path, BASE), ["optim.name=lamb"])


def test_range_errors(tmp_path):
    with pytest.raises(RecipeError, match=r"neuron.alpha_init.*between 0 and 1"):
        load_recipe(write(tmp_path, BASE), ["neuron.alpha_init=1.5"])
    with pytest.raises(RecipeError, match=r"data.batch_size"):
        load_recipe(write(tmp_path, BASE), ["data.batch_size=0"])


def test_missing_shards_key(tmp_path):
    data = {k: v for k, v in BASE.items() if k != "data"}
    with pytest.raises(RecipeError, match=r"data.shards: missing"):
        load_recipe(write(tmp_path, data))


def test_bad_override_syntax(tmp_path):
    with pytest.raises(RecipeError, match="key.sub=value"):
        load_recipe(write(tmp_path, BASE), ["optim.lr"])
    with pytest.raises(RecipeError, match="is a value, not a section"):
        apply_overrides({"optim": {"lr": 1}}, ["optim.lr.x=2"])
    assert parse_override("a.b= 3") == (["a", "b"], 3)


def test_not_a_mapping_and_missing_file(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(str(p))
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(str(tmp_path / "nope.yaml"))


def test_resolved_recipe_round_trips(tmp_path):
    r = load_recipe(write(tmp_path, BASE), ["optim.lr=0.05"])
    again = load_recipe(write(tmp_path, to_dict(r), "resolved.yaml"))
    assert to_dict(again) == to_dict(r)
    flat = flatten(to_dict(r))
    # neuron defaults are the LIF's own (chorus.neurons.LIF_FIELDS): MPS off unless the recipe says so
    assert flat["optim.lr"] == 0.05 and flat["neuron.mps"] is False and "source" not in flat


def test_shipped_recipes_validate():
    names = sorted(n for n in os.listdir(RECIPES) if n.endswith(".yaml"))
    assert "quickstart.yaml" in names
    for n in names:
        r = load_recipe(os.path.join(RECIPES, n))
        if r.name.endswith("_vanilla"):
            assert r.neuron.mps is False and r.loss.gamma == 0.0, n
        else:
            assert r.neuron.mps is True and r.loss.gamma > 0, n


def test_scientific_notation_is_a_float(tmp_path):
    """YAML 1.1 reads `1e-3` as a string; float keys accept it, other keys do not."""
    r = load_recipe(write(tmp_path, dict(BASE, optim={"lr": "1e-3"})), ["optim.weight_decay=5e-4"])
    assert r.optim.lr == 1e-3 and r.optim.weight_decay == 5e-4
    with pytest.raises(RecipeError, match="data.T"):
        load_recipe(write(tmp_path, BASE), ["data.T=1e3"])
