"""The shipped recipes state the start of the smoothed potential and the threshold (issue 16.1), search
recipes can sweep ``neuron.mps_init``, and ``recipes/study/quickstart_ablation.yaml`` plans the 4 arms × 3
seeds it says, each a valid training recipe (read from the files themselves, not from defaults)."""
import glob
import os

import pytest
import yaml

from chorus.config import load_recipe
from chorus.study import load_study
from chorus.study.runner import plan
from chorus.tune import load_search
from chorus.tune.base_recipe import check_against_base
from chorus.tune.space import to_overrides
from test_train_support import ROOT

RECIPES = sorted(glob.glob(os.path.join(ROOT, "recipes", "*.yaml")))
SEARCHES = sorted(glob.glob(os.path.join(ROOT, "recipes", "search", "*.yaml")))


@pytest.mark.parametrize("path", RECIPES, ids=os.path.basename)
def test_every_recipe_states_mps_init_first_and_its_threshold(path):
    neuron = yaml.safe_load(open(path))["neuron"]
    assert neuron["mps_init"] == "first" and "v_threshold" in neuron
    recipe = load_recipe(path)
    assert recipe.neuron.mps_init == "first"
    if not os.path.basename(path).startswith("quickstart"):
        assert recipe.neuron.v_threshold == 1.0          # the paper's V_th (docs/paper.md, "The setups")


def test_the_quickstart_says_why_it_uses_its_threshold():
    text = open(os.path.join(ROOT, "recipes", "quickstart.yaml")).read()
    assert "v_threshold: 0.5" in text and "V_th 0.5" in text and "quickstart_ablation" in text


@pytest.mark.parametrize("path", SEARCHES, ids=os.path.basename)
def test_search_recipes_fix_mps_init_and_can_sweep_it(path):
    spec = load_search(path)
    assert spec.fixed["neuron.mps_init"] == "first"
    swept = load_search(path, ['space.neuron.mps_init=grid [first, zero]'])
    check_against_base(swept)                              # every listed value validated against the base
    values = swept.space["neuron.mps_init"].values
    assert values == ("first", "zero")
    for v in values:
        r = load_recipe(swept.base, to_overrides(swept.fixed) + to_overrides({"neuron.mps_init": v}))
        assert r.neuron.mps_init == v


def test_quickstart_ablation_plans_four_arms_by_three_seeds_at_the_papers_threshold():
    spec = load_study(os.path.join(ROOT, "recipes", "study", "quickstart_ablation.yaml"))
    assert spec.recipe == os.path.join(ROOT, "recipes", "quickstart.yaml") and spec.seeds == [0, 1, 2]
    pairs = plan(spec)
    got = {(p.arm, p.seed): (p.recipe.neuron.mps, p.recipe.loss.gamma) for p in pairs}
    want = {"vanilla": (False, 0.0), "mps": (True, 0.0), "tasg": (False, 1.0), "mps_tasg": (True, 1.0)}
    assert got == {(a, s): v for a, v in want.items() for s in (0, 1, 2)}
    for p in pairs:
        r = p.recipe
        assert (r.neuron.v_threshold, r.neuron.mps_init, r.train.seed) == (1.0, "first", p.seed)
        assert r.train.epochs == 6 and r.diagnostics.every == 5 and r.data.T == 4 and r.model.name == "vgg_small"
        assert r.train.out_dir == os.path.join(spec.folder, p.arm, f"seed_{p.seed}")


STUDIES = sorted(glob.glob(os.path.join(ROOT, "recipes", "study", "*.yaml")))


def test_recipes_study_holds_the_quickstart_and_the_nmotion_ablation():
    assert {os.path.basename(p) for p in STUDIES} >= {"quickstart_ablation.yaml", "nmotion_ablation.yaml"}


@pytest.mark.parametrize("path", STUDIES, ids=os.path.basename)
def test_every_study_file_validates_and_every_arm_and_seed_is_a_valid_recipe(path):
    spec = load_study(path)                                # a StudyError names the key and the file
    assert os.path.isfile(spec.recipe) and spec.name == os.path.splitext(os.path.basename(path))[0]
    pairs = plan(spec)                                     # every arm × seed loaded as a training recipe
    assert [(p.arm, p.seed) for p in pairs] == [(a, s) for a in spec.arms for s in spec.seeds]
    for p in pairs:
        assert p.recipe.train.seed == p.seed and p.recipe.neuron.mps_init == "first"


def test_nmotion_ablation_plans_the_same_four_arms_on_n_motion():
    spec = load_study(os.path.join(ROOT, "recipes", "study", "nmotion_ablation.yaml"))
    assert spec.recipe == os.path.join(ROOT, "recipes", "temporal.yaml") and spec.seeds == [0, 1, 2]
    pairs = plan(spec)
    got = {(p.arm, p.seed): (p.recipe.neuron.mps, p.recipe.loss.gamma) for p in pairs}
    want = {"vanilla": (False, 0.0), "mps": (True, 0.0), "tasg": (False, 1.0), "mps_tasg": (True, 1.0)}
    assert got == {(a, s): v for a, v in want.items() for s in (0, 1, 2)}
    for p in pairs:
        r = p.recipe
        assert os.path.basename(os.path.normpath(r.data.shards)) == "nmotion"
        assert (r.neuron.v_threshold, r.data.T, r.model.name, r.train.epochs) == (1.0, 4, "vgg_small", 6)


SETUPS = [os.path.splitext(os.path.basename(p))[0] for p in RECIPES
          if not os.path.basename(p).startswith(("quickstart", "temporal")) and not p.endswith("_vanilla.yaml")]


@pytest.mark.parametrize("setup", SETUPS)
def test_every_paper_setup_has_its_ablation_with_the_recipes_own_settings(setup):
    """The paper's Table-1-style study per setup: the same four arms over the setup's recipe, which keeps
    its own model, T, threshold and budget (the arms set only MPS and γ)."""
    spec = load_study(os.path.join(ROOT, "recipes", "study", f"{setup}_ablation.yaml"))
    assert spec.recipe == os.path.join(ROOT, "recipes", f"{setup}.yaml") and list(spec.arms)[0] == "vanilla"
    base = load_recipe(spec.recipe)
    for p in plan(spec):
        r = p.recipe
        assert (r.model.name, r.data.T, r.neuron.v_threshold, r.train.epochs) == \
            (base.model.name, base.data.T, base.neuron.v_threshold, base.train.epochs)
        assert (r.neuron.mps, r.loss.gamma) == {"vanilla": (False, 0.0), "mps": (True, 0.0), "tasg": (False, 1.0),
                                                "mps_tasg": (True, 1.0)}[p.arm]
