"""Where runs are recorded: the tracking URI and a reachability probe.

Default: the embedded store ``sqlite:///<cwd>/mlruns/mlflow.db``. The standard ``MLFLOW_TRACKING_URI``
selects another store or a server. A sqlite store keeps the artifacts of the experiments Chorus makes
beside its database (``<db folder>/artifacts``) or where ``tracking.artifacts`` names, never relative to
the working folder (a relative sqlite path is made absolute once, here).
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


def absolute(uri: str) -> str:
    """``sqlite:///relative/mlflow.db`` as the absolute URI MLflow would open from here; others unchanged."""
    if uri.startswith("sqlite:///") and not uri[len("sqlite:///"):].startswith("/"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def artifact_root(uri: str, named: str | None = None) -> str | None:
    """Artifact location for new experiments: ``named`` (a folder, made absolute, or a URI), else for a
    sqlite store the folder ``artifacts`` beside the database file; None lets the server decide."""
    if named:
        return named if "://" in named else Path(named).expanduser().resolve().as_uri()
    uri = absolute(uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.parent / "artifacts").as_uri()
    return None


def same_root(location: str | None, root: str | None) -> bool:
    """Whether an experiment's artifact ``location`` lies under ``root`` (both as MLflow gives them)."""
    if not root or not location:
        return True
    def plain(x: str) -> str:
        return x[len("file://"):] if x.startswith("file://") else x
    return plain(location).rstrip("/").startswith(plain(root).rstrip("/"))


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
