"""Issue 19.5: relative paths of shipped recipes (data.shards) and of infra/accelerate/*.yaml
(deepspeed_config_file) mean the same file from any working directory, and a bad one is named with
its real source and the places it was looked for. Every test runs from a folder outside the repository."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from chorus.config import RecipeError, load_recipe
from chorus.train import components, setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    away = tmp_path / "elsewhere"
    away.mkdir()
    monkeypatch.chdir(away)
    return away


def _mini_repo(tmp_path, with_data: bool):
    """A copy of the repository's shape: pyproject.toml, recipes/quickstart.yaml, data/ndigits/."""
    repo = tmp_path / "repo"
    (repo / "recipes").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), repo / "pyproject.toml")
    shutil.copy(QUICKSTART, repo / "recipes" / "quickstart.yaml")
    if with_data:
        (repo / "data" / "ndigits").mkdir(parents=True)
    return repo


@pytest.mark.parametrize("name", ["deepspeed_zero1.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3_offload.yaml"])
def test_accelerate_deepspeed_config_file_is_found_from_another_directory(name, elsewhere, monkeypatch):
    with open(os.path.join(ROOT, "infra", "accelerate", name)) as f:
        written = yaml.safe_load(f)["deepspeed_config"]["deepspeed_config_file"]
    assert not os.path.isabs(written) and not os.path.exists(written)      # relative, and not from here
    # what `accelerate launch --config_file infra/accelerate/NAME` puts in the environment, verbatim
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", written)
    recipe = load_recipe(QUICKSTART, ["data.shards=/nonexistent"])
    cfg = setup.deepspeed_config(recipe, 1)
    with open(os.path.join(ROOT, written)) as f:
        expected = json.load(f)
    assert cfg["zero_optimization"] == expected["zero_optimization"]


def test_missing_accelerate_deepspeed_file_names_the_launcher_config_not_the_recipe(elsewhere, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", "infra/deepspeed/zero9.json")
    recipe = load_recipe(QUICKSTART, ["data.shards=/nonexistent"])
    with pytest.raises(RecipeError) as e:
        setup.deepspeed_config(recipe, 1)
    msg = str(e.value)
    assert "train.deepspeed" not in msg
    assert "deepspeed_config_file" in msg and "ACCELERATE_DEEPSPEED_CONFIG_FILE" in msg
    assert str(elsewhere / "infra" / "deepspeed" / "zero9.json") in msg            # the working directory
    assert os.path.join(ROOT, "infra", "deepspeed", "zero9.json") in msg            # the repository


def test_train_deepspeed_override_is_found_in_the_repository(elsewhere):
    recipe = load_recipe(QUICKSTART, ["data.shards=/nonexistent", "train.deepspeed=infra/deepspeed/zero2.json"])
    assert recipe.train.deepspeed == os.path.join(ROOT, "infra", "deepspeed", "zero2.json")


def test_shipped_recipe_data_shards_resolve_against_its_repository(tmp_path, elsewhere):
    repo = _mini_repo(tmp_path, with_data=True)
    recipe = load_recipe(str(repo / "recipes" / "quickstart.yaml"))
    assert recipe.data.shards == str(repo / "data" / "ndigits")


def test_the_working_directory_still_wins_when_the_folder_is_there(tmp_path, elsewhere):
    repo = _mini_repo(tmp_path, with_data=True)
    (elsewhere / "data" / "ndigits").mkdir(parents=True)
    recipe = load_recipe(str(repo / "recipes" / "quickstart.yaml"))
    assert recipe.data.shards == "data/ndigits"


def test_missing_shards_error_names_the_file_key_and_every_place_looked(tmp_path, elsewhere, monkeypatch):
    from chorus.config import paths

    repo = _mini_repo(tmp_path, with_data=False)
    # the chorus package's own checkout is looked in too; after `make demo` it holds data/ndigits, so
    # the test stands in an installed copy without data for it
    installed = tmp_path / "installed"
    installed.mkdir()
    monkeypatch.setattr(paths, "package_repository", lambda: str(installed))
    source = str(repo / "recipes" / "quickstart.yaml")
    recipe = load_recipe(source)
    with pytest.raises(RecipeError) as e:
        components.open_shards(recipe)
    msg = str(e.value)
    assert msg.startswith("data.shards:") and f"set in {source}" in msg
    for folder in (elsewhere, repo / "recipes", repo, installed):
        assert str(folder / "data" / "ndigits") in msg, msg


def test_chorus_train_from_another_directory_exits_2_naming_the_override(tmp_path, elsewhere):
    out = subprocess.run([sys.executable, "-m", "chorus.cli", "train", QUICKSTART, "data.shards=data/none"],
                         capture_output=True, text=True, cwd=elsewhere, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "set by the override data.shards=data/none" in out.stderr
    assert str(elsewhere / "data" / "none") in out.stderr
    assert not (elsewhere / "runs").exists()                 # nothing written for a rejected recipe
