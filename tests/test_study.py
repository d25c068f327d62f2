"""``chorus study`` (issue 16.2) on a tiny study (2 arms × 2 seeds, a few steps each, real runs of the
loop and a real MLflow store): its tables against numbers recomputed here from the runs' own result
files, the MLflow parent and children, a resume that skips finished pairs and trains only the missing
one, and bad study files refused with exit 2 before anything is written."""
import json
import os
import shutil

import numpy as np
import pytest
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from scipy import stats as scipy_stats

from chorus.cli import main
from test_train_support import ROOT, ndigits_shards

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


def fixed(shards, tmp):
    return {"data.shards": shards, "data.size": 16, "data.T": 3, "data.batch_size": 16, "model.args.width": 0.5,
            "train.epochs": 4, "neuron.v_threshold": 0.5, "optim.name": "adamw",
            "optim.lr": 0.005, "diagnostics.every": 0, "train.log_every": 4,
            "tracking.uri": f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"}


def write_study(tmp, shards, **change):
    study = {"name": "tiny", "recipe": QUICKSTART, "fixed": fixed(shards, tmp), "progress": False,
             "arms": {"vanilla": {"neuron.mps": False, "loss.gamma": 0.0},
                      "mps_tasg": {"neuron.mps": True, "neuron.mps_init": "first", "loss.gamma": 1.0}},
             "seeds": [0, 1], "out_dir": str(tmp / "studies")}
    study.update(change)
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    shards = ndigits_shards(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("study")
    path = write_study(tmp, shards)
    assert main(["study", path]) == 0
    return tmp, path, tmp / "studies" / "tiny"


@pytest.mark.slow
def test_tables_equal_numbers_recomputed_from_the_runs_result_files(done, capsys):
    tmp, _, folder = done
    study = json.load(open(folder / "study.json"))
    assert list(study["arms"]) == ["vanilla", "mps_tasg"] and study["split"] == "test" and study["missing"] == []
    for arm in ("vanilla", "mps_tasg"):
        files = [json.load(open(folder / arm / f"seed_{s}" / "per_timestep.json")) for s in (0, 1)]
        got = study["arms"][arm]["metrics"]
        assert set(got) == {"acc", "acc_step_1", "acc_step_2", "acc_step_3", "acc_first_1", "acc_first_2",
                            "acc_first_3"}
        for key, s in got.items():
            values = np.array([f[key] for f in files])
            assert s["n"] == 2 and s["values"] == pytest.approx(values.tolist())
            assert s["mean"] == pytest.approx(values.mean(), abs=1e-12)
            assert s["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
    means = [s["mean"] for a in study["arms"].values() for s in a["metrics"].values()]
    assert len({round(v, 9) for v in means}) > 2, means              # the runs learned: the keys differ
    ref = [json.load(open(folder / "vanilla" / f"seed_{s}" / "per_timestep.json"))["acc"] for s in (0, 1)]
    for arm in ("vanilla", "mps_tasg"):
        files = [json.load(open(folder / arm / f"seed_{s}" / "per_timestep.json")) for s in (0, 1)]
        cell = f"{100 * np.mean([f['acc'] for f in files]):.2f} ± {100 * np.std([f['acc'] for f in files], ddof=1):.2f}"
        if arm != "vanilla":                     # Welch's t-test against the first arm (scipy's p here)
            p = scipy_stats.ttest_ind([f["acc"] for f in files], ref, equal_var=False).pvalue
            cell += "**" if p < 0.01 else "*" if p < 0.05 else ""
        assert f"| {arm} | 2 | {cell} |" in open(folder / "study.md").read()
    # α at the end only for the MPS arm: the last mps/alpha values of each run's metrics.jsonl
    assert study["arms"]["vanilla"]["alpha"] == {}
    last = []
    for s in (0, 1):
        recs = [json.loads(x) for x in open(folder / "mps_tasg" / f"seed_{s}" / "metrics.jsonl")]
        last.append([r for r in recs if any(k.startswith("mps/alpha/") for k in r)][-1])
    layer = next(k for k in last[0] if k.startswith("mps/alpha/"))[len("mps/alpha/"):]
    assert study["arms"]["mps_tasg"]["alpha"][layer]["mean"] == pytest.approx(
        np.mean([r[f"mps/alpha/{layer}"] for r in last]))
    # the seeds really differ: each run's recipe carries its own seed
    seeds = [yaml.safe_load(open(folder / "vanilla" / f"seed_{s}" / "recipe.yaml"))["train"]["seed"] for s in (0, 1)]
    assert seeds == [0, 1]


@pytest.mark.slow
def test_one_mlflow_parent_with_a_child_per_arm_and_seed(done):
    tmp, _, folder = done
    state = json.load(open(folder / "study_state.json"))
    c = MlflowClient(state["tracking_uri"])
    parent = c.get_run(state["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    study = json.load(open(folder / "study.json"))
    assert parent.data.metrics["study/vanilla/acc_mean"] == pytest.approx(study["arms"]["vanilla"]["metrics"]["acc"]["mean"])
    kids = c.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((k.data.tags["chorus.study.arm"], k.data.tags["chorus.study.seed"]) for k in kids) == [
        ("mps_tasg", "0"), ("mps_tasg", "1"), ("vanilla", "0"), ("vanilla", "1")]
    assert all(k.info.status == "FINISHED" for k in kids)
    assert {"study.json", "study.md", "study.html"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}


@pytest.mark.slow
def test_every_pair_ran_as_a_ray_trial_in_a_worker_process(done):
    tmp, _, folder = done
    state = json.load(open(folder / "study_state.json"))
    c = MlflowClient(state["tracking_uri"])
    parent = c.get_run(state["mlflow_run_id"])
    kids = {(k.data.tags["chorus.study.arm"], int(k.data.tags["chorus.study.seed"])): k for k in
            c.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")}
    experiment = folder / "ray" / "call_1"
    assert {f"{a}-seed_{s}" for a in ("vanilla", "mps_tasg") for s in (0, 1)} <= set(os.listdir(experiment))
    trial_ids = set()
    for arm in ("vanilla", "mps_tasg"):
        for seed in (0, 1):
            trial = json.load(open(folder / arm / f"seed_{seed}" / "ray_trial.json"))
            # trained in a Ray worker process, not in this (the driver's) process
            assert trial["driver_pid"] == os.getpid() and trial["pid"] != os.getpid()
            assert trial["pair"] == f"{arm}/seed_{seed}" and trial["experiment"] == str(experiment)
            assert kids[(arm, seed)].data.tags["chorus.tune.trial_id"] == trial["trial_id"]
            assert kids[(arm, seed)].data.tags["chorus.study.pair"] == f"{arm}/seed_{seed}"
            # Ray's own record of the trial: its config names the pair, one result per epoch
            records = experiment / f"{arm}-seed_{seed}"
            assert json.load(open(records / "params.json")) == {"pair": f"{arm}/seed_{seed}"}
            results = [json.loads(x) for x in open(records / "result.json")]
            assert [r["trial_id"] for r in results] == [trial["trial_id"]] * 4
            assert [r["epoch"] for r in results] == [1.0, 2.0, 3.0, 4.0]
            trial_ids.add(trial["trial_id"])
    assert len(trial_ids) == 4


@pytest.mark.slow
def test_rerun_needs_resume_skips_finished_pairs_and_refuses_a_changed_arm(done, capsys):
    tmp, path, folder = done
    before = {p: os.path.getmtime(folder / p / "summary.json") for p in ("vanilla/seed_0", "mps_tasg/seed_1")}
    capsys.readouterr()
    assert main(["study", path]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["study", path, "--resume", "arms.vanilla.loss.gamma=0.5"]) == 2
    err = capsys.readouterr().err
    assert "'arms.vanilla'" in err and "loss.gamma" in err and err.count("\n") == 1
    shutil.rmtree(folder / "mps_tasg" / "seed_0")               # one pair lost: only it is trained again
    assert main(["study", path, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "trained 1, skipped 3 finished, failed 0" in err
    for p, t in before.items():
        assert os.path.getmtime(folder / p / "summary.json") == t
    assert (folder / "mps_tasg" / "seed_0" / "per_timestep.json").is_file()
    study = json.load(open(folder / "study.json"))
    assert study["arms"]["mps_tasg"]["metrics"]["acc"]["n"] == 2


@pytest.mark.slow
def test_a_pair_trained_again_from_scratch_keeps_one_mlflow_child(done):
    """After the resume above retrained the lost pair from scratch, its earlier child is retired
    (KILLED, tagged superseded, deleted: restorable), so the study still has one child per pair."""
    tmp, _, folder = done
    state = json.load(open(folder / "study_state.json"))
    c = MlflowClient(state["tracking_uri"])
    exp = c.get_run(state["mlflow_run_id"]).info.experiment_id
    where = f"tags.mlflow.parentRunId = '{state['mlflow_run_id']}'"
    kids = c.search_runs([exp], where)
    assert sorted((k.data.tags["chorus.study.arm"], k.data.tags["chorus.study.seed"]) for k in kids) == [
        ("mps_tasg", "0"), ("mps_tasg", "1"), ("vanilla", "0"), ("vanilla", "1")]
    assert all(k.info.status == "FINISHED" for k in kids)
    retired = c.search_runs([exp], where, run_view_type=ViewType.DELETED_ONLY)
    assert [(k.data.tags["chorus.study.pair"], k.data.tags["chorus.tune.status"]) for k in retired] == [
        ("mps_tasg/seed_0", "superseded")]
    now = next(k for k in kids if k.data.tags["chorus.study.pair"] == "mps_tasg/seed_0")
    trial = json.load(open(folder / "mps_tasg" / "seed_0" / "ray_trial.json"))
    assert now.data.tags["chorus.tune.trial_id"] == trial["trial_id"] and trial["resumed_from"] is None
    assert trial["experiment"] == str(folder / "ray" / "call_2")


@pytest.mark.slow
def test_a_pair_whose_loss_turns_non_finite_is_reported_and_the_study_goes_on(tmp_path_factory, capsys):
    shards = ndigits_shards(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("study_fail")
    arms = {"vanilla": {"neuron.mps": False, "loss.gamma": 0.0}, "blowup": {"optim.name": "sgd", "optim.lr": 1e8},
            "tasg": {"neuron.mps": False, "loss.gamma": 1.0}}
    path = write_study(tmp, shards, name="fail", arms=arms, seeds=[0], concurrency=2,
                       fixed={**fixed(shards, tmp), "train.epochs": 1})
    capsys.readouterr()
    assert main(["study", path]) == 1
    err = capsys.readouterr().err
    assert "[chorus] study: blowup seed 0 failed: NonFiniteLoss: non-finite loss" in err, err[-3000:]
    assert "trained 2, skipped 0 finished, failed 1" in err
    folder = tmp / "studies" / "fail"
    study = json.load(open(folder / "study.json"))
    assert [(f["arm"], f["seed"]) for f in study["failed"]] == [("blowup", 0)]
    assert study["arms"]["vanilla"]["metrics"]["acc"]["n"] == 1 and study["arms"]["tasg"]["metrics"]["acc"]["n"] == 1
    # the pair after the failed one trained (the study went on), in a Ray worker
    assert (folder / "tasg" / "seed_0" / "per_timestep.json").is_file()
    trials = {a: json.load(open(folder / a / "seed_0" / "ray_trial.json")) for a in arms}
    assert all(t["pid"] != os.getpid() for t in trials.values())
    # concurrency 2: the first two pairs trained at the same time, in two Ray worker processes
    assert trials["vanilla"]["pid"] != trials["blowup"]["pid"] and len({t["trial_id"] for t in trials.values()}) == 3
    assert "2 at a time" in err
    state = json.load(open(folder / "study_state.json"))
    c = MlflowClient(state["tracking_uri"])
    assert c.get_run(state["mlflow_run_id"]).info.status == "FAILED"
    kids = c.search_runs([c.get_run(state["mlflow_run_id"]).info.experiment_id],
                         f"tags.mlflow.parentRunId = '{state['mlflow_run_id']}'")
    assert {k.data.tags["chorus.study.arm"]: k.info.status for k in kids} == {
        "vanilla": "FINISHED", "blowup": "FAILED", "tasg": "FINISHED"}


@pytest.mark.parametrize("change, named", [
    ({"arms": {}}, "'arms'"),
    ({"arms": {"MPS+TASG": {"neuron.mps": True}}}, "'arms'"),
    ({"seeds": []}, "'seeds'"),
    ({"seeds": [0, 0]}, "'seeds'"),
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"recipe": "nowhere.yaml"}, "'recipe'"),
    ({"arms": {"vanilla": {"neuron.mps": "maybe"}}}, "'arms.vanilla'"),
    ({"arms": {"vanilla": {"neuron.nothing": 1}}}, "'arms.vanilla'"),
    ({"fixed": {"train.epochs": 0}}, "'fixed'"),
    ({"split": "train"}, "'split'"),
    ({"concurrency": 0}, "'concurrency'"),
])
def test_bad_study_files_exit_2_naming_the_key_and_write_nothing(tmp_path, capsys, change, named):
    shards = str(tmp_path / "no-shards-needed")
    path = write_study(tmp_path, shards, **change)
    assert main(["study", path]) == 2
    err = capsys.readouterr().err
    assert named in err and path in err and "Traceback" not in err and err.count("\n") == 1, err
    assert sorted(os.listdir(tmp_path)) == ["study.yaml"]           # no study folder, no MLflow store


def test_missing_shards_and_an_empty_file_exit_2_and_write_nothing(tmp_path, capsys):
    path = write_study(tmp_path, str(tmp_path / "missing"))
    assert main(["study", path]) == 2
    assert "data.shards" in capsys.readouterr().err
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert main(["study", str(empty)]) == 2
    assert "chorus study --help-recipe" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["empty.yaml", "study.yaml"]


def test_help_recipe_lists_the_study_keys(capsys):
    assert main(["study", "--help-recipe"]) == 0
    out = capsys.readouterr().out
    for key in ("recipe", "arms", "seeds", "fixed", "split", "tracking.experiment"):
        assert key in out
