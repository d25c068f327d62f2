"""Training runs log to a real MLflow server over HTTP, and survive losing it.

One server per module, started by ``infra/mlflow/start_server.sh`` on a free loopback port with its
own sqlite store and artifact folder; the real ``chorus train`` CLI logs to it.

- a run logs to the server; a fresh MLflow client reads back its metrics, parameters and artifacts;
- the server is stopped in the middle of a second run (the trainer is paused with SIGSTOP while the
  server goes away, so the stop falls between epochs on any machine speed): the run finishes, says
  that tracking was lost, and keeps every metric in its run folder; the server then comes back on the
  same store with the basic-auth option on: requests without the admin's password are refused, and
  with it, what the server received before the stop is there and matches the run's own record.
"""
from __future__ import annotations

import base64
import json
import re
import os
import signal
import sqlite3
import time
import urllib.error
import urllib.request

import pytest

from test_infra_support import (Service, child_env, free_port, listening_addresses, session_pids,
                                small_shards, start_mlflow, tool, wait_http)

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "chorus-Test-Admin-8d3f"


class TrackingServer:
    def __init__(self, home, port):
        self.home, self.port, self.svc = home, port, None
        self.uri = f"http://127.0.0.1:{port}"

    def start(self, auth: bool = False) -> float:
        env = {"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD} if auth else None
        self.svc = start_mlflow(self.home, self.port, auth=auth, env=env)
        return wait_http(f"{self.uri}/health", self.svc)

    def stop(self) -> None:
        if self.svc is not None:
            self.svc.stop()
            self.svc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = TrackingServer(tmp_path_factory.mktemp("mlflow") / "server", free_port())
    took = srv.start()
    print(f"mlflow server answered /health after {took:.1f} s")
    try:
        yield srv
    finally:
        srv.stop()


def _train(tmp_path, shards, uri, name, epochs):
    run_dir = tmp_path / name
    args = [tool("chorus"), "train", "recipes/quickstart.yaml", f"data.shards={shards}",
            f"train.epochs={epochs}", "data.batch_size=16", "train.progress=false", "train.log_every=2",
            "train.eval_test=false", f"tracking.uri={uri}", f"tracking.run_name={name}",
            "--out", str(run_dir)]
    svc = Service(args, tmp_path / f"{name}.log", env=child_env(OMP_NUM_THREADS="1"))
    return svc, run_dir


def _local_metrics(run_dir, key):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r[key]) for r in map(json.loads, lines) if key in r]


def test_training_logs_metrics_and_artifacts_over_http(server, tmp_path, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    shards = small_shards(tmp_path_factory)
    assert listening_addresses(server.port) == {"127.0.0.1"}, "the script binds loopback by default"
    svc, run_dir = _train(tmp_path, shards, server.uri, "over-http", epochs=2)
    try:
        assert svc.proc.wait(timeout=600) == 0, svc.output()[-5000:]
    finally:
        svc.stop()
    run_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    assert run_id and f"run {run_id}" in svc.output()

    client = MlflowClient(tracking_uri=server.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "over-http"
    assert run.data.params["loss.gamma"] == "1.0" and run.data.params["neuron.mps"] == "True"

    # Every metric the run recorded locally reached the server, at the same steps.
    for key in ("val/acc", "train/loss", "train/loss_tasg"):
        served = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        local = _local_metrics(run_dir, key)
        assert served and sorted(served) == sorted(local), key
    assert len(client.get_metric_history(run_id, "val/acc")) == 2            # one per epoch
    assert any(k.startswith("mps/alpha/") for k in run.data.metrics)

    top = {f.path for f in client.list_artifacts(run_id)}
    assert {"recipe.yaml", "summary.json", "per_timestep.md", "checkpoints"} <= top
    best = [f.path for f in client.list_artifacts(run_id, "checkpoints/best")]
    assert best, "the best checkpoint was uploaded"
    summary = client.download_artifacts(run_id, "summary.json", str(tmp_path / "dl"))
    assert json.load(open(summary))["mlflow_run_id"] == run_id
    # The server, not the client, wrote them: into its sqlite store and the artifact root it was given.
    stored = list((server.home / "artifacts").rglob("summary.json"))
    assert any(run_id in str(p) for p in stored), "the server stored the artifact in its artifact root"
    with sqlite3.connect(server.home / "mlflow.db") as db:
        count = db.execute("select count(*) from metrics where run_uuid = ? and key = 'val/acc'",
                           (run_id,)).fetchone()[0]
    assert count == 2


def test_run_continues_when_the_server_stops_midway(server, tmp_path, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    shards = small_shards(tmp_path_factory)
    epochs = 3
    svc, run_dir = _train(tmp_path, shards, server.uri, "server-lost", epochs=epochs)
    client = MlflowClient(tracking_uri=server.uri)
    paused = []
    try:
        # Wait until the server has the first epoch's validation accuracy of this run.
        deadline = time.monotonic() + 400
        run_id = None
        while time.monotonic() < deadline:
            assert svc.proc.poll() is None, "training ended before the server was stopped:\n" + svc.output()[-3000:]
            if run_id is None and (run_dir / "run.json").exists():
                run_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
            if run_id and client.get_metric_history(run_id, "val/acc"):
                break
            time.sleep(0.3)
        else:
            pytest.fail("the run never logged val/acc:\n" + svc.output()[-3000:])

        # Freeze the trainer, take the server away, let the trainer go on.
        paused = session_pids(svc.sid)
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        server.stop()
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        paused = []
        code = svc.proc.wait(timeout=600)
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        svc.stop()
    output = svc.output()
    assert code == 0, output[-5000:]

    # It said so, once, and finished every epoch with its metrics kept locally.
    warning = f"[chorus] WARNING: MLflow at {server.uri} failed"
    assert output.count(warning) == 1, output[-5000:]
    assert "Training goes on without MLflow; metrics continue in" in output
    # ... and the summary says what the server did get before it went (issue 18, item 12)
    assert re.search(r"MLflow: run \w+ at \S+, \d+ metric values logged .*before the server was lost", output), \
        output[-3000:]
    assert "full metrics in" in output
    local_acc = _local_metrics(run_dir, "val/acc")
    assert len(local_acc) == epochs
    assert json.loads((run_dir / "summary.json").read_text())["steps"] > 0

    # Back up on the same store, now with basic auth: only the admin's password gets in ...
    took = server.start(auth=True)
    print(f"mlflow server restarted with --auth in {took:.1f} s")
    search = "/api/2.0/mlflow/experiments/search?max_results=5"
    assert _status(server, search) == 401
    assert _status(server, search, "admin", "wrong-password") == 401
    assert _status(server, search, "admin", ADMIN_PASSWORD) == 200
    assert ADMIN_PASSWORD not in (server.home / "basic_auth.ini").read_text()
    assert (server.home / "flask_secret_key").stat().st_mode & 0o077 == 0

    # ... and what the server received before the stop is there, and matches the run's own record.
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = "admin", ADMIN_PASSWORD
    try:
        client = MlflowClient(tracking_uri=server.uri)
        served = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val/acc"))
        params = client.get_run(run_id).data.params
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    assert 1 <= len(served) < epochs
    assert served == sorted(local_acc)[:len(served)]
    assert params["train.epochs"] == str(epochs)


def _status(server, path, user=None, password=None) -> int:
    request = urllib.request.Request(server.uri + path)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            json.load(response)
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
