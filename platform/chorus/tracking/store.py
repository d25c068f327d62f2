"""Where runs are recorded: the tracking URI and a reachability probe.

Default: the embedded store ``sqlite:///<cwd>/mlruns/mlflow.db`` with artifacts under ``mlruns/``
(an absolute path: MLflow 3 needs one). The standard ``MLFLOW_TRACKING_URI`` selects a server.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path


def default_uri() -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return "sqlite:///" + str(Path("mlruns").resolve() / "mlflow.db")


def artifact_root(uri: str) -> str | None:
    """Artifact location for new experiments in a sqlite store: beside the database file."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.parent / "artifacts").as_uri()
    return None


def prepare(uri: str) -> None:
    """Create the folder of a sqlite store."""
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)


def reachable(uri: str, timeout: float = 3.0) -> tuple[bool, str]:
    """For http(s) servers, GET /health; local stores are always reachable."""
    if not uri.startswith(("http://", "https://")):
        return True, ""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200, f"HTTP {r.status}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return False, str(getattr(e, "reason", e))
