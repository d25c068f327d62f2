"""MLflow tracking against a real sqlite store, and an unreachable server that must not stop training."""
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mlflow.tracking import MlflowClient

from chorus.tracking import Tracker, reachable


def sqlite_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def test_run_records_params_metrics_artifacts_and_nesting(tmp_path):
    uri = sqlite_uri(tmp_path)
    parent = Tracker(uri=uri, experiment="e", local_dir=str(tmp_path / "p"))
    pid = parent.start("parent", {})
    tr = Tracker(uri=uri, experiment="e", local_dir=str(tmp_path / "run"))
    rid = tr.start("child", {"optim.lr": 0.1, "optim.betas": [0.9, 0.99]}, tags={"k": "v"}, parent_run_id=pid)
    for s in range(3):
        tr.log_metrics({"train/loss": 1.0 / (s + 1), "val/acc_step_1": 0.5, "bad": float("nan")}, step=s)
    tr.log_text("| t |\n", "per_timestep.md")
    f = tmp_path / "recipe.yaml"
    f.write_text("a: 1\n")
    tr.log_artifact(str(f))
    tr.end()
    c = MlflowClient(uri)
    run = c.get_run(rid)
    assert run.data.params["optim.lr"] == "0.1" and run.data.params["optim.betas"] == "[0.9, 0.99]"
    assert run.data.tags["mlflow.parentRunId"] == pid and run.data.tags["k"] == "v"
    assert run.info.status == "FINISHED"
    hist = c.get_metric_history(rid, "train/loss")
    assert [(m.step, round(m.value, 4)) for m in hist] == [(0, 1.0), (1, 0.5), (2, 0.3333)]
    assert "bad" not in run.data.metrics            # non-finite values are skipped, not sent
    arts = {a.path for a in c.list_artifacts(rid)}
    assert {"per_timestep.md", "recipe.yaml"} <= arts
    assert "mlruns" in run.info.artifact_uri         # artifacts beside the database
    local = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in local] == [0, 1, 2]


def test_resume_reopens_the_same_run(tmp_path):
    uri = sqlite_uri(tmp_path)
    a = Tracker(uri=uri, experiment="e")
    rid = a.start("r", {"x": 1})
    a.log_metrics({"m": 1.0}, 0)
    b = Tracker(uri=uri, experiment="e")
    assert b.start("r", {"x": 1}, resume_run_id=rid) == rid
    b.log_metrics({"m": 2.0}, 1)
    b.end()
    assert [m.value for m in MlflowClient(uri).get_metric_history(rid, "m")] == [1.0, 2.0]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_server_warns_once_and_keeps_metrics_locally(tmp_path):
    err = io.StringIO()
    tr = Tracker(uri=f"http://127.0.0.1:{_closed_port()}", experiment="e", local_dir=str(tmp_path), stream=err)
    assert tr.start("r", {"a": 1}) is None
    for s in range(5):
        tr.log_metrics({"train/loss": float(s)}, s)
    tr.log_text("x", "x.md")
    tr.end()
    assert err.getvalue().count("WARNING") == 1 and "unreachable" in err.getvalue()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 5
    assert "not recorded" in tr.location()


@pytest.mark.slow
def test_server_dying_mid_run_loses_nothing_already_logged(tmp_path):
    """A real `mlflow server` on a sqlite store is killed mid-run: training-side calls go on (one
    warning), the metrics logged before are still in the server's store, the rest in metrics.jsonl."""
    port = _closed_port()
    db = f"sqlite:///{tmp_path / 'server.db'}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", db, "--artifacts-destination",
         str(tmp_path / "art"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while not reachable(uri, timeout=1)[0]:
            assert time.time() < deadline and server.poll() is None, "mlflow server did not start"
            time.sleep(0.5)
        err = io.StringIO()
        tr = Tracker(uri=uri, experiment="e", local_dir=str(tmp_path / "run"), stream=err)
        rid = tr.start("r", {"a": 1})
        for s in range(3):
            tr.log_metrics({"m": float(s)}, s)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    t0 = time.time()
    for s in range(3, 6):
        tr.log_metrics({"m": float(s)}, s)
    tr.end()
    assert time.time() - t0 < 60
    assert err.getvalue().count("WARNING") == 1
    kept = MlflowClient(db).get_metric_history(rid, "m")
    assert [m.value for m in kept] == [0.0, 1.0, 2.0]
    local = [json.loads(x)["m"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert local == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_resume_of_a_run_missing_from_the_store_starts_a_new_one(tmp_path):
    err = io.StringIO()
    tr = Tracker(uri=sqlite_uri(tmp_path), experiment="e", stream=err)
    rid = tr.start("r", {"x": 1}, resume_run_id="0" * 32)
    assert rid and rid != "0" * 32 and "starting a new run" in err.getvalue() and not tr.failed


def test_a_checkpoint_of_another_run_does_not_cut_this_runs_log(tmp_path):
    """PBT clones the stronger trial's checkpoint into the weaker trial: that checkpoint's metrics.jsonl
    offsets belong to the other trial's log, so resuming from it must leave this log whole (it once cut
    it mid-line and the trial died on a JSON error), while a mark of this very log still cuts it back."""
    from chorus.tracking import Tracker

    def tracker(name):
        tr = Tracker(enabled=False, local_dir=str(tmp_path / name))
        for step in range(1, 4):
            tr.log_metrics({"train/loss": 1.0 / step, "train/lr": 0.01}, step=step)
        return tr

    strong, weak = tracker("strong"), tracker("weak")
    strong.log_metrics({"train/loss": 0.1}, step=4)
    foreign = strong.mark()
    before = (tmp_path / "weak" / "metrics.jsonl").read_text()
    weak.resume_log({**foreign, "bytes": 100})                # an offset inside a line of this log
    assert (tmp_path / "weak" / "metrics.jsonl").read_text() == before
    weak.resume_log(foreign)
    assert (tmp_path / "weak" / "metrics.jsonl").read_text() == before

    own = weak.mark()                                         # a real resume of this run: rows after it go
    weak.log_metrics({"train/loss": 9.0}, step=4)
    weak.resume_log(own)
    assert (tmp_path / "weak" / "metrics.jsonl").read_text() == before
