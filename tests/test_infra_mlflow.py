"""infra/mlflow/start_server.sh checks that need no running server.

The server itself is started for real, logged to by training runs over HTTP, stopped midway and
restarted with the basic-auth option in tests/test_scale_mlflow.py (one server for those tests).
"""
from __future__ import annotations

import subprocess

from test_infra_support import REPO, child_env

SCRIPT = REPO / "infra" / "mlflow" / "start_server.sh"


def test_auth_without_admin_password_refuses_to_start(tmp_path):
    env = child_env()
    env.pop("MLFLOW_AUTH_ADMIN_PASSWORD", None)
    result = subprocess.run(["bash", str(SCRIPT), "--home", str(tmp_path), "--auth"],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "MLFLOW_AUTH_ADMIN_PASSWORD" in result.stderr


def test_unknown_option_is_refused_and_help_lists_every_option(tmp_path):
    bad = subprocess.run(["bash", str(SCRIPT), "--hots", "0.0.0.0"], env=child_env(),
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown option: --hots" in bad.stderr
    usage = subprocess.run(["bash", str(SCRIPT), "--help"], env=child_env(),
                           capture_output=True, text=True, timeout=30, check=True).stdout
    handled = {line.split(")")[0].strip() for line in SCRIPT.read_text().splitlines()
               if line.strip().startswith("--") and ")" in line}
    assert handled, "the option parser was found"
    for option in handled - {"--"}:
        assert option in usage, f"{option} is not documented in --help"
