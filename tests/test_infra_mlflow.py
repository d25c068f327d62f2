"""infra/mlflow/start_server.sh starts a real MLflow tracking server that clients log to over HTTP.

Each test starts the server on a free loopback port with its own sqlite store and artifact folder,
and stops it (every process of its session) when done.
"""
from __future__ import annotations

import base64
import json
import sqlite3
import urllib.error
import urllib.request

import pytest

from test_infra_support import free_port, listening_addresses, start_mlflow, wait_http

ADMIN_PASSWORD = "chorus-Test-Admin-8d3f"


@pytest.fixture
def server(tmp_path):
    port = free_port()
    svc = start_mlflow(tmp_path / "server", port)
    try:
        startup = wait_http(f"http://127.0.0.1:{port}/health", svc)
        yield svc, port, startup
    finally:
        svc.stop()


def test_server_binds_loopback_and_stores_runs_and_artifacts(server, tmp_path):
    from mlflow.tracking import MlflowClient

    svc, port, startup = server
    home = tmp_path / "server"
    print(f"mlflow server answered /health after {startup:.1f} s")
    assert listening_addresses(port) == {"127.0.0.1"}, "the default is loopback only"

    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
    experiment = client.create_experiment("infra-test")
    run = client.create_run(experiment, run_name="over-http")
    run_id = run.info.run_id
    for step, loss in enumerate([1.0, 0.5, 0.25]):
        client.log_metric(run_id, "train/loss", loss, step=step)
    client.log_param(run_id, "neuron.alpha_init", "0.5")
    artifact = tmp_path / "resolved_recipe.yaml"
    artifact.write_text("name: quickstart\n")
    client.log_artifact(run_id, str(artifact), artifact_path="recipe")
    client.set_terminated(run_id)

    # Read back through a fresh client, over HTTP.
    reader = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
    history = reader.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert reader.get_run(run_id).data.params == {"neuron.alpha_init": "0.5"}
    assert reader.get_run(run_id).info.status == "FINISHED"
    assert [f.path for f in reader.list_artifacts(run_id, "recipe")] == ["recipe/resolved_recipe.yaml"]
    local = reader.download_artifacts(run_id, "recipe/resolved_recipe.yaml", str(tmp_path / "dl"))
    assert open(local).read() == "name: quickstart\n"

    # The server, not the client, wrote them: into the sqlite store and the artifact root it was given.
    with sqlite3.connect(home / "mlflow.db") as db:
        rows = db.execute("select key, value from metrics where run_uuid = ?", (run_id,)).fetchall()
    assert sorted(rows) == [("train/loss", 0.25), ("train/loss", 0.5), ("train/loss", 1.0)]
    stored = list((home / "artifacts").rglob("resolved_recipe.yaml"))
    assert len(stored) == 1 and run_id in str(stored[0])


def _rest(port: int, path: str, user: str | None = None, password: str | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            json.load(response)
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.slow
def test_basic_auth_option_requires_credentials(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    port = free_port()
    home = tmp_path / "auth-server"
    svc = start_mlflow(home, port, auth=True, env={"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        wait_http(f"http://127.0.0.1:{port}/health", svc)
        search = "/api/2.0/mlflow/experiments/search?max_results=5"
        assert _rest(port, search) == 401
        assert _rest(port, search, "admin", "wrong-password") == 401
        assert _rest(port, search, "admin", ADMIN_PASSWORD) == 200

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        run = client.create_run(client.create_experiment("auth-test"))
        client.log_metric(run.info.run_id, "val/acc", 0.75)
        assert client.get_run(run.info.run_id).data.metrics == {"val/acc": 0.75}

        # The password is never written to disk by the script; the CSRF key is, owner-only.
        assert ADMIN_PASSWORD not in (home / "basic_auth.ini").read_text()
        assert (home / "flask_secret_key").stat().st_mode & 0o077 == 0
    finally:
        svc.stop()


def test_auth_without_admin_password_refuses_to_start(tmp_path):
    import subprocess

    from test_infra_support import REPO, child_env

    env = child_env()
    env.pop("MLFLOW_AUTH_ADMIN_PASSWORD", None)
    result = subprocess.run(
        ["bash", str(REPO / "infra/mlflow/start_server.sh"), "--home", str(tmp_path), "--auth"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2 and "MLFLOW_AUTH_ADMIN_PASSWORD" in result.stderr
