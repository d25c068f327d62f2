"""Results in the run folder and honest wall time (issue 17.3, 17.5): ``chorus train`` started from another
working folder with the user's own sqlite store (``MLFLOW_TRACKING_URI``) keeps every result in the run
folder and every MLflow artifact beside the database, and writes nothing into the working folder;
``summary.json``'s ``wall_seconds`` parts are non-negative and add up to the total."""
import json
import os
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from chorus.tracking import Tracker
from chorus.tracking import store
from test_train_support import ROOT, env, ndigits_shards, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    shards = ndigits_shards(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("results")
    cwd, run_dir, db = tmp / "cwd", tmp / "elsewhere" / "run", tmp / "store" / "mlflow.db"
    cwd.mkdir()
    args = tiny(shards, str(run_dir), tmp, "tracking.uri=null", "tracking.experiment=results", "train.epochs=1",
                "train.max_steps=3", "diagnostics.every=1", "diagnostics.samples=16")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "chorus.cli", "train", QUICKSTART, *args], cwd=cwd,
                       env=env(MLFLOW_TRACKING_URI=f"sqlite:///{db}"), capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr[-4000:]
    return {"cwd": cwd, "run_dir": run_dir, "db": db, "stderr": p.stderr, "wall": wall}


def files_under(folder) -> set:
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs}


@pytest.mark.slow
def test_every_result_is_in_the_run_folder_and_beside_the_database_none_in_the_working_folder(trained):
    run_dir, db = trained["run_dir"], trained["db"]
    assert os.listdir(trained["cwd"]) == []                       # nothing relative to where it was started
    here = files_under(run_dir)
    for name in ("recipe.yaml", "run.json", "metrics.jsonl", "summary.json", "per_timestep.md", "per_timestep.json"):
        assert name in here, sorted(here)
    figures = [f for f in here if f.startswith("diagnostics/epoch_001/") and f.endswith(".png")]
    assert figures, sorted(here)
    c = MlflowClient(f"sqlite:///{db}")
    run_id = json.load(open(run_dir / "run.json"))["mlflow_run_id"]
    info = c.get_run(run_id).info
    assert info.artifact_uri == (db.parent / "artifacts").as_uri() + f"/{run_id}/artifacts"
    art = db.parent / "artifacts" / run_id / "artifacts"
    logged = files_under(art)
    assert {"per_timestep.json", "per_timestep.md", "summary.json", "recipe.yaml"} <= logged
    assert {f for f in logged if not f.startswith("checkpoints/best/")} <= here   # all of MLflow's results are here too
    assert json.load(open(art / "per_timestep.json")) == json.load(open(run_dir / "per_timestep.json"))
    assert open(art / figures[0], "rb").read() == open(run_dir / figures[0], "rb").read()
    summary = json.load(open(run_dir / "summary.json"))
    assert json.load(open(run_dir / "per_timestep.json")) == summary["test"]


@pytest.mark.slow
def test_wall_time_parts_are_non_negative_and_add_up_to_the_total(trained):
    summary = json.load(open(trained["run_dir"] / "summary.json"))
    wall = summary["wall_seconds"]
    assert set(wall) == {"startup", "training", "evaluation", "diagnostics", "checkpoints", "test", "other", "total"}
    parts = {k: v for k, v in wall.items() if k != "total"}
    assert all(v >= 0 for v in parts.values()), wall
    assert sum(parts.values()) == pytest.approx(wall["total"], rel=1e-6, abs=1e-6)
    assert 0 < wall["total"] < trained["wall"]                   # inside the command's own measured time
    assert summary["train_seconds"] <= wall["training"] + 1e-6    # the old figure is the steps alone
    for part in ("startup", "training", "evaluation", "diagnostics", "test", "checkpoints"):
        assert wall[part] > 0, (part, wall)                      # each ran in this run
    assert f"[chorus] wall time {wall['total']:.1f} s: start-up {wall['startup']:.1f}" in trained["stderr"]


def test_tracking_off_still_writes_the_results_into_the_run_folder(tmp_path):
    src = tmp_path / "fig.png"
    src.write_bytes(b"png")
    t = Tracker(enabled=False, local_dir=str(tmp_path / "run"))
    t.start("x", {})
    t.log_text("| t |\n", "per_timestep.md")
    t.log_artifact(str(src), "diagnostics/epoch_001")
    assert (tmp_path / "run" / "per_timestep.md").read_text() == "| t |\n"
    assert (tmp_path / "run" / "diagnostics" / "epoch_001" / "fig.png").read_bytes() == b"png"


def test_sqlite_store_paths_are_absolute_and_artifacts_go_beside_the_database_or_where_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store.absolute("sqlite:///a/b.db") == f"sqlite:///{tmp_path}/a/b.db"
    assert store.absolute("sqlite:////abs/b.db") == "sqlite:////abs/b.db"
    assert store.absolute("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert store.artifact_root("sqlite:///a/b.db") == (tmp_path / "a" / "artifacts").as_uri()
    assert store.artifact_root("sqlite:///a/b.db", "x/arts") == (tmp_path / "x" / "arts").as_uri()
    assert store.artifact_root("http://h:1", None) is None


def test_an_experiment_made_elsewhere_is_named_once(tmp_path, capsys):
    import io

    uri = f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}"
    store.prepare(uri)
    MlflowClient(uri).create_experiment("old", artifact_location=(tmp_path / "old_place").as_uri())
    out = io.StringIO()
    t = Tracker(uri=uri, experiment="old", local_dir=str(tmp_path / "run"), stream=out)
    assert t.start("x", {}) is not None
    assert "old_place" in out.getvalue() and str(tmp_path / "run") in out.getvalue()
