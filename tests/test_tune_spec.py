"""Search recipes: schema, overrides, validation against the base recipe, Ray Tune translation.

No Ray cluster is needed here; these are fast.
"""
import textwrap

import pytest

from chorus.tune import SearchRecipeError, load_search
from chorus.tune.base_recipe import check_against_base, write_best_recipe
from chorus.tune.space import num_trials, param_space, to_overrides, trial_values


def _write(tmp_path, text, name="search.yaml"):
    (tmp_path / "base.yaml").write_text("name: base\ndata: {shards: shards}\ntrain: {epochs: 3}\n")
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


GOOD = """
    base: base.yaml
    fixed: {train.epochs: 2}
    space:
      loss.gamma: grid [0, 0.5, 1]
      neuron.alpha_init: {grid: [0.2, 0.8]}
      optim.lr: loguniform [0.001, 0.1]
    scheduler: {type: asha, grace_period: 1}
    max_concurrent: 2
"""


def test_good_recipe_parses_and_translates(tmp_path):
    spec = load_search(_write(tmp_path, GOOD))
    assert spec.name == "search"
    assert spec.base == str(tmp_path / "base.yaml")
    assert spec.space["loss.gamma"].kind == "grid" and spec.space["loss.gamma"].values == (0, 0.5, 1)
    assert spec.space["optim.lr"].values == (0.001, 0.1)
    assert num_trials(spec) == 6
    ps = param_space(spec)
    assert ps["loss.gamma"] == {"grid_search": [0, 0.5, 1]}
    assert 0.001 <= ps["optim.lr"].sample() <= 0.1
    recipe = check_against_base(spec)
    assert recipe.train.epochs == 2


def test_overrides_use_the_training_mechanism(tmp_path):
    path = _write(tmp_path, GOOD)
    spec = load_search(path, ["fixed.train.epochs=1", "max_concurrent=1", "space.loss.gamma=grid [0, 2]",
                              "scheduler.type=fifo", "space.train.seed=choice [1, 2]"])
    assert spec.fixed == {"train.epochs": 1}
    assert spec.max_concurrent == 1 and spec.scheduler.type == "fifo"
    assert spec.space["loss.gamma"].values == (0, 2)
    assert spec.space["train.seed"].kind == "choice"
    config = {"loss.gamma": 2, "neuron.alpha_init": 0.2, "optim.lr": 0.01, "train.seed": 1}
    assert to_overrides(trial_values(spec, config)) == [
        "loss.gamma=2", "neuron.alpha_init=0.2", "optim.lr=0.01", "train.seed=1"]


@pytest.mark.parametrize("text, words", [
    ("base: base.yaml\nspace:\n  loss.gamma: grid [0, 1]\nmax_concurent: 2\n", ["unknown key", "max_concurent"]),
    ("base: base.yaml\nspace:\n  loss.gamma: grid [0, 1]\nscheduler: {grace: 1}\n", ["unknown key", "scheduler.grace"]),
    ("base: base.yaml\nspace: {}\n", ["'space'", "empty search space"]),
    ("base: base.yaml\nspace:\n", ["'space'", "empty search space"]),
    ("base: base.yaml\nspace:\n  loss.gamma: grid []\n", ["space.loss.gamma", "empty grid"]),
    ("base: base.yaml\nspace:\n  loss.gamma: sweep [0, 1]\n", ["space.loss.gamma", "unknown dimension kind"]),
    ("base: base.yaml\nspace:\n  optim.lr: loguniform [0, 1]\n", ["space.optim.lr", "low > 0"]),
    ("base: base.yaml\nspace:\n  optim.lr: uniform [1, 0.1]\n", ["space.optim.lr", "low < high"]),
    ("base: base.yaml\nspace:\n  loss.gamma: grid [0, 1]\nmode: maximum\n", ["'mode'"]),
    ("base: base.yaml\nspace:\n  loss.gamma: grid [0, 1]\nmax_concurrent: two\n", ["max_concurrent", "int"]),
    ("base: base.yaml\nspace:\n  loss.gamma: grid [0, 1]\nscheduler: {type: hyperband}\n", ["scheduler.type"]),
    ("space:\n  loss.gamma: grid [0, 1]\n", ["missing key", "'base'"]),
])
def test_bad_search_recipe_names_key_and_file(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(SearchRecipeError) as err:
        load_search(path)
    message = str(err.value)
    assert path in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("space, words", [
    ("loss.gama: grid [0, 1]", ["space.loss.gama", "gama"]),
    ("loss.gamma: grid [0, oops]", ["space.loss.gamma", "oops"]),
    ("neuron.surrogate: choice [sigmoid, cosine]", ["space.neuron.surrogate", "cosine"]),
])
def test_space_key_or_value_unknown_to_the_training_recipe(tmp_path, space, words):
    path = _write(tmp_path, f"base: base.yaml\nspace:\n  {space}\n")
    spec = load_search(path)
    with pytest.raises(SearchRecipeError) as err:
        check_against_base(spec)
    message = str(err.value)
    assert path in message
    for word in words:
        assert word in message


def test_unknown_fixed_key_and_missing_base(tmp_path):
    spec = load_search(_write(tmp_path, "base: base.yaml\nfixed: {train.epoch: 2}\nspace:\n  loss.gamma: grid [0]\n"))
    with pytest.raises(SearchRecipeError, match="train.epoch"):
        check_against_base(spec)
    spec = load_search(_write(tmp_path, "base: nowhere.yaml\nspace:\n  loss.gamma: grid [0]\n"))
    with pytest.raises(SearchRecipeError, match="nowhere.yaml"):
        check_against_base(spec)


def test_pbt_defaults_to_mutating_the_learning_rate(tmp_path):
    spec = load_search(_write(tmp_path, "base: base.yaml\nspace:\n  optim.lr: loguniform [0.01, 0.1]\n"
                                        "scheduler: {type: pbt}\n"))
    assert list(spec.scheduler.mutations) == ["optim.lr"]
    with pytest.raises(SearchRecipeError, match="mutations"):
        load_search(_write(tmp_path, "base: base.yaml\nspace:\n  loss.gamma: grid [0, 1]\nscheduler: {type: pbt}\n"))


def test_best_recipe_loads_as_a_recipe(tmp_path):
    from chorus.config import load_recipe

    spec = load_search(_write(tmp_path, GOOD))
    path = write_best_recipe(spec, {"loss.gamma": 0.5, "neuron.alpha_init": 0.8, "optim.lr": 0.02},
                             str(tmp_path / "best.yaml"))
    recipe = load_recipe(path)
    assert (recipe.loss.gamma, recipe.neuron.alpha_init, recipe.optim.lr, recipe.train.epochs) == (0.5, 0.8, 0.02, 2)


@pytest.mark.parametrize("name", ["quickstart_gamma_alpha.yaml", "cifar10dvs_gamma_alpha.yaml"])
def test_shipped_search_recipes_validate(name):
    import os

    from chorus.tune.space import num_trials

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = load_search(os.path.join(root, "recipes", "search", name))
    base = check_against_base(spec)
    assert set(spec.space) >= {"loss.gamma", "neuron.alpha_init"}
    assert num_trials(spec) == {"quickstart_gamma_alpha.yaml": 9, "cifar10dvs_gamma_alpha.yaml": 36}[name]
    assert spec.scheduler.type == "asha" and base.train.epochs >= 3


def _no_ray(monkeypatch):
    import chorus.tune.runner as runner

    def no_ray(*a, **k):
        raise RuntimeError("Ray must not start for a bad search recipe")

    monkeypatch.setattr(runner, "ray_session", no_ray)


def test_metric_is_checked_against_the_loops_names_before_ray(tmp_path, monkeypatch):
    """Issue 18, item 3: a metric typo fails before Ray starts or anything is written."""
    from chorus.tune import run_search

    _no_ray(monkeypatch)
    path = _write(tmp_path, textwrap.dedent(GOOD) + f"storage_path: {tmp_path / 'storage'}\ntracking: {{enabled: false}}\n")
    with pytest.raises(SearchRecipeError, match=r"'metric' in .*search.yaml: 'val/acc_typo' is not reported.*"
                                                r"val/acc_first_4.*val/acc_step_1"):
        run_search(load_search(path, ["metric=val/acc_typo"]))
    assert not (tmp_path / "storage").exists()
    for good in ("val/acc", "val/loss", "val/acc_step_4", "epoch"):
        check_against_base(load_search(path, [f"metric={good}"]))
    with pytest.raises(SearchRecipeError, match="mps/alpha"):             # the base recipe has no MPS
        check_against_base(load_search(path, ["metric=mps/alpha/features.0.lif"]))
    check_against_base(load_search(path, ["metric=mps/alpha/features.0.lif", "fixed.neuron.mps=true"]))


def test_resumed_search_with_other_fixed_values_is_refused(tmp_path, monkeypatch):
    """Issue 18, item 10: the saved search's trials were made with fixed.train.epochs=5."""
    import json

    from chorus.tune import run_search
    from chorus.tune.runner import STATE_FILE

    _no_ray(monkeypatch)
    path = _write(tmp_path, textwrap.dedent(GOOD) + f"storage_path: {tmp_path / 'storage'}\ntracking: {{enabled: false}}\n")
    saved = load_search(path, ["fixed.train.epochs=5"])
    exp = tmp_path / "storage" / "search"
    exp.mkdir(parents=True)
    (exp / STATE_FILE).write_text(json.dumps({"search": saved.to_dict(), "parent_run_id": None}))
    with pytest.raises(SearchRecipeError, match=r"--resume .*fixed.train.epochs: 5 \(saved\) vs 7 \(now\)"):
        run_search(load_search(path, ["fixed.train.epochs=7"]), resume=True)
    with pytest.raises(RuntimeError, match="Ray must not start"):           # the same search: on to Ray
        run_search(load_search(path, ["fixed.train.epochs=5", "max_concurrent=1"]), resume=True)


def test_tune_takes_overrides_after_its_options(tmp_path, capsys):
    """Issue 18, item 4: `chorus tune S --resume key=value` parses (and here finds nothing to resume)."""
    from chorus.cli import main as cli

    path = _write(tmp_path, GOOD)
    assert cli(["tune", path, "--resume", f"storage_path={tmp_path / 'storage'}", "tracking.enabled=false"]) == 2
    err = capsys.readouterr().err
    assert "--resume: no search to resume in" in err and str(tmp_path / "storage") in err
