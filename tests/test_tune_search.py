"""``chorus tune`` end to end: real Ray (one local instance for the module), real MLflow (sqlite),
the real training loop on real N-Digits shards (a small subset, a few epochs)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

from chorus.config import load_recipe
from chorus.tune import load_search, run_search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEARCH = os.path.join(ROOT, "recipes", "search", "quickstart_gamma_alpha.yaml")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from chorus.data import shard

    tmp = tmp_path_factory.mktemp("ndigits")
    with open(os.path.join(ROOT, "datasets", "ndigits.yaml")) as fh:
        card = yaml.safe_load(fh)
    card["options"]["limit"] = 600                      # 434 train / 50 val samples
    (tmp / "card.yaml").write_text(yaml.safe_dump(card))
    shard(str(tmp / "card.yaml"), None, str(tmp / "shards"), shard_size_mb=2, progress=False)
    return str(tmp / "shards")


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance (2 CPUs) shared by the module's searches."""
    import ray

    from chorus.tune.cluster import runtime_env

    tmp = tempfile.mkdtemp(prefix="chorus-ray-test-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, runtime_env=runtime_env())
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def _overrides(tmp_path, shards, *extra):
    return [f"fixed.data.shards={shards}", f"storage_path={tmp_path / 'tune'}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", *extra]


def _children(uri, parent_id):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return client, parent, runs


def test_search_runs_to_completion(tmp_path, shards, ray_address, capsys):
    """2 x 2 grid, 2 trials at a time, ASHA at epoch 2 of 3: the α = 0.8 trials (which have not left
    chance level by then) come after the α = 0.2 ones in grid order and are stopped."""
    spec = load_search(SEARCH, _overrides(tmp_path, shards, "space.loss.gamma=grid [0, 1]",
                                          "space.neuron.alpha_init=grid [0.2, 0.8]", "fixed.optim.lr=0.01",
                                          # the zero start (H~(0) = 0) keeps the α = 0.8 trials at chance by
                                          # epoch 2; with mps_init first they learn and ASHA has none to stop
                                          "fixed.neuron.mps_init=zero",
                                          "scheduler.grace_period=2"))
    out = run_search(spec)
    printed = capsys.readouterr().out
    rows = {r["trial_id"]: r for r in out.rows}
    assert len(rows) == 4 and not out.interrupted
    statuses = sorted(r["status"] for r in rows.values())
    assert "failed" not in statuses
    assert statuses.count("stopped") >= 1, out.rows           # ASHA stopped some trials early
    assert any(r["status"] == "completed" and r["epochs"] == 3 for r in rows.values())
    assert {(r["loss.gamma"], r["neuron.alpha_init"]) for r in rows.values()} == {(0, 0.2), (1, 0.2), (0, 0.8), (1, 0.8)}

    # MLflow: the parent run has one child per trial, carrying that trial's parameters and curves
    client, parent, children = _children(spec.tracking.uri or f"sqlite:///{tmp_path / 'mlflow.db'}", out.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"results.csv", "best_recipe.yaml", "heatmap.png"}
    by_trial = {c.data.tags["chorus.tune.trial_id"]: c for c in children}
    assert len(children) == 4 and set(by_trial) == set(rows)
    for trial_id, child in by_trial.items():
        row = rows[trial_id]
        assert child.info.status == "FINISHED"
        assert child.data.tags["chorus.tune.status"] == row["status"]
        assert float(child.data.params["loss.gamma"]) == row["loss.gamma"]
        assert float(child.data.params["neuron.alpha_init"]) == row["neuron.alpha_init"]
        curve = client.get_metric_history(child.info.run_id, "val/acc")
        assert len(curve) == row["epochs"]
        assert "per_timestep.md" in {a.path for a in client.list_artifacts(child.info.run_id)}

    # the best trial, its recipe, the table and the heatmap
    best = max(rows.values(), key=lambda r: r["val/acc (best)"])
    assert out.best["val/acc (best)"] == best["val/acc (best)"] > 0.1
    recipe = load_recipe(out.best_recipe)
    assert recipe.loss.gamma == out.best["loss.gamma"] and recipe.neuron.alpha_init == out.best["neuron.alpha_init"]
    assert recipe.optim.lr == 0.01 and recipe.train.epochs == 3 and recipe.tracking.parent_run_id is None
    with open(out.table) as fh:
        assert len(fh.read().strip().splitlines()) == 5
    assert os.path.getsize(out.heatmap) > 1000
    assert f"best trial {out.best['trial_id']}" in printed and "loss.gamma \\ neuron.alpha_init" in printed


def test_failing_trial_is_retried_from_its_checkpoint_then_reported_and_the_others_finish(
        tmp_path, shards, ray_address):
    """The learning rate of one trial jumps x1e9 after epoch 1, so its loss turns inf in epoch 2: Ray
    retries it once from its epoch-1 checkpoint (max_failures=1), it fails again and is reported
    failed; the other trial completes."""
    spec = load_search(SEARCH, _overrides(
        tmp_path, shards, "space.schedule.gamma=grid [0.5, 1.0e9]", "space.loss.gamma=grid [1]",
        "space.neuron.alpha_init=grid [0.2]", "fixed.optim.name=sgd", "fixed.optim.lr=0.05",
        "fixed.schedule.name=step", "fixed.schedule.step_size=1", "fixed.schedule.warmup_epochs=0",
        "fixed.train.epochs=2", "scheduler.type=fifo", "max_failures=1"))
    out = run_search(spec)
    by_gamma = {r["schedule.gamma"]: r for r in out.rows}
    bad, good = by_gamma[1e9], by_gamma[0.5]
    assert bad["status"] == "failed" and "non-finite loss" in bad["error"]
    assert good["status"] == "completed" and good["epochs"] == 2
    assert out.best["schedule.gamma"] == 0.5
    trial_dir = os.path.join(out.experiment_dir, bad["trial_id"])
    with open(os.path.join(trial_dir, "error.txt")) as fh:
        assert fh.read().count("non-finite loss") == 2                  # the first try and the retry
    reported = [json.loads(line)["training_iteration"] for line in _lines(os.path.join(trial_dir, "result.json"))]
    assert reported == [1]                                              # the retry resumed after epoch 1
    _, _, children = _children(f"sqlite:///{tmp_path / 'mlflow.db'}", out.parent_run_id)
    status = {float(c.data.params["schedule.gamma"]): (c.info.status, c.data.tags.get("chorus.tune.status"))
              for c in children}
    assert status == {1e9: ("FAILED", "failed"), 0.5: ("FINISHED", "completed")}   # one run per trial


def _lines(path):
    with open(path) as fh:
        return fh.read().splitlines()


def test_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path, shards, ray_address):
    """`chorus tune` (joining the module's cluster with --address) is interrupted with SIGINT while
    its second of three trials runs; `--resume` finishes the search, leaving the first trial alone."""
    extra = ["space.loss.gamma=grid [0, 0.5, 1]", "space.neuron.alpha_init=grid [0.2]", "fixed.train.epochs=2",
             "scheduler.type=fifo", "max_concurrent=1"]
    args = _overrides(tmp_path, shards, *extra)
    exp = tmp_path / "tune" / "quickstart_gamma_alpha"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "chorus.cli", "tune", SEARCH, *args, "--address", ray_address],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    def trial_results():
        found = {}
        for name in sorted(os.listdir(exp)) if exp.is_dir() else []:
            path = exp / name / "result.json"
            if path.is_file():
                found[name] = len(_lines(path))
        return found

    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = trial_results()
        if len(done) >= 2 and list(done.values())[0] == 2 and list(done.values())[1] >= 1:
            break
        time.sleep(0.3)
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGINT)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, log
    assert "--resume" in log
    before = trial_results()
    first = sorted(before)[0]
    first_results = _lines(exp / first / "result.json")
    assert len(first_results) == 2                                        # finished before the interrupt
    assert sum(n == 2 for n in before.values()) < 3                       # ... and not every trial did

    out = run_search(load_search(SEARCH, args), resume=True)
    assert [r["status"] for r in out.rows] == ["completed"] * 3, out.rows
    assert _lines(exp / first / "result.json") == first_results        # not rerun
    _, parent, children = _children(f"sqlite:///{tmp_path / 'mlflow.db'}", out.parent_run_id)
    trial_ids = sorted(c.data.tags["chorus.tune.trial_id"] for c in children)
    assert trial_ids == sorted(r["trial_id"] for r in out.rows)           # one child per trial, no reruns
    assert parent.info.status == "FINISHED" and all(c.info.status == "FINISHED" for c in children)
    second = sorted(before)[1]
    iterations = [json.loads(line)["training_iteration"] for line in _lines(exp / second / "result.json")]
    assert iterations == [1, 2]                                            # continued from its checkpoint


def test_pbt_clones_a_checkpoint_and_trains_on_with_the_perturbed_learning_rate(tmp_path, shards, ray_address):
    """Synchronous PBT over optim.lr (constant schedule, perturbation every epoch of 3): the weaker trial
    continues from the stronger one's checkpoint with a perturbed rate, and its training uses that rate."""
    spec = load_search(SEARCH, _overrides(
        tmp_path, shards, "space.optim.lr=grid [0.0003, 0.01]", "space.loss.gamma=grid [0]",
        "space.neuron.alpha_init=grid [0.2]", "fixed.schedule.name=constant", "fixed.schedule.warmup_epochs=0",
        "fixed.train.log_every=5", "scheduler.type=pbt", "scheduler.perturbation_interval=1",
        "scheduler.quantile_fraction=0.5", "scheduler.resample_probability=0", "scheduler.synch=true",
        "scheduler.mutations.optim.lr=loguniform [0.0001, 0.05]"))
    out = run_search(spec)
    assert [r["status"] for r in out.rows] == ["completed", "completed"]
    exploited = []
    for row in out.rows:
        logged = [json.loads(line) for line in _lines(os.path.join(out.experiment_dir, row["trial_id"], "run",
                                                                    "metrics.jsonl"))]
        rates = [m["train/lr"] for m in logged if "train/lr" in m]          # what the optimizer used
        if len(set(rates)) > 1:
            exploited.append(row["trial_id"])
            assert rates[-1] == pytest.approx(row["optim.lr"], rel=1e-6)    # the trial's final rate won
            assert row["optim.lr"] not in (0.0003, 0.01)                    # perturbed (x0.8 or x1.2)
    assert exploited, "PBT never exploited"
    _, _, children = _children(f"sqlite:///{tmp_path / 'mlflow.db'}", out.parent_run_id)
    assert sorted(c.data.tags["chorus.tune.trial_id"] for c in children) == sorted(r["trial_id"] for r in out.rows)
