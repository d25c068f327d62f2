"""Read a training run back from MLflow for ``chorus report``: metrics, histories, diagnostics PNGs.

A run is named by its MLflow run id, or by its run folder (``runs/NAME-STAMP``, whose ``run.json``
holds the run id and the tracking URI, written by ``chorus.train.run``). The diagnostics the training
loop logged (docs/architecture.md, "Diagnostics") are the metrics of the last diagnostics epoch and the
figures under ``diagnostics/epoch_{e:03d}/``.
"""
from __future__ import annotations

import json
import os
import re
import tempfile

from chorus.report.run_data import ReportError, RunData

HISTORY_PREFIXES = ("mps/alpha/",)
HISTORY_KEYS = ("val/acc", "val/acc_step_1", "train/loss", "epoch")
_DIAG_DIR = re.compile(r"^diagnostics/epoch_(\d+)$")


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def resolve_run_folder(path: str) -> tuple[str, str]:
    """``(run_id, tracking_uri)`` from a run folder's ``run.json``."""
    info = os.path.join(path, "run.json")
    if not os.path.isfile(info):
        raise ReportError(f"{path!r} is a folder but not a chorus run folder (no run.json) nor a checkpoint "
                          f"(no trainer_state.json)")
    with open(info) as f:
        data = json.load(f)
    if not data.get("mlflow_run_id"):
        raise ReportError(f"run folder {path!r} was not recorded in MLflow (run.json has no mlflow_run_id); "
                          f"pass one of its checkpoints instead")
    return data["mlflow_run_id"], data.get("tracking_uri")


def _epoch_of_steps(client, run_id: str) -> dict[int, float]:
    """optimizer step → epoch, from the ``epoch`` metric the loop logs at each epoch end and the
    fractional ``train/epoch`` it logs with the training loss."""
    out = {m.step: m.value for m in client.get_metric_history(run_id, "train/epoch")}
    out.update({m.step: m.value for m in client.get_metric_history(run_id, "epoch")})
    return out


def _latest_diagnostics(client, run_id: str) -> tuple[int | None, dict[str, bytes]]:
    try:
        folders = [f.path for f in client.list_artifacts(run_id, "diagnostics") if f.is_dir]
    except Exception:  # noqa: BLE001 - an artifact store without that folder
        folders = []
    epochs = sorted((int(m.group(1)), p) for p in folders if (m := _DIAG_DIR.match(p)))
    if not epochs:
        return None, {}
    epoch, folder = epochs[-1]
    out = {}
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, folder, tmp)
        for name in sorted(os.listdir(local)):
            if name.endswith(".png"):
                with open(os.path.join(local, name), "rb") as f:
                    out[name] = f.read()
    return epoch, out


def load_run(run_id: str, tracking_uri: str, ref: str | None = None) -> RunData:
    """Read run ``run_id`` from the store at ``tracking_uri``; errors name the run and the store."""
    from mlflow.exceptions import MlflowException

    if tracking_uri.startswith("sqlite:///") and not os.path.isfile(tracking_uri[len("sqlite:///"):]):
        raise ReportError(f"there is no MLflow store at {tracking_uri} to look up run {run_id!r}; "
                          f"pass --tracking-uri (or set MLFLOW_TRACKING_URI), a run folder or a checkpoint")
    client = _client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise ReportError(f"MLflow run {run_id!r} was not found at {tracking_uri} "
                          f"({str(e).splitlines()[0][:160]}); pass --tracking-uri, a run folder or a "
                          f"checkpoint") from None
    metrics = dict(run.data.metrics)
    name = run.data.tags.get("mlflow.runName") or run.info.run_name or run_id[:8]
    diag_epoch, figures = _latest_diagnostics(client, run_id)
    if not any(k.startswith(("membrane/", "firing/")) for k in metrics):
        raise ReportError(f"MLflow run {run_id} ({name}) has no diagnostics: it was trained with "
                          f"diagnostics.every=0. Train with diagnostics.every=N, or pass a checkpoint folder "
                          f"of that run (runs/.../checkpoints/step_*) to measure it now")
    steps = _epoch_of_steps(client, run_id)
    histories = {}
    keys = [k for k in metrics if k.startswith(HISTORY_PREFIXES)] + [k for k in HISTORY_KEYS if k in metrics]
    for key in keys:
        hist = client.get_metric_history(run_id, key)
        points = {}
        for m in sorted(hist, key=lambda m: (m.step, m.timestamp)):
            points[steps.get(m.step, m.step)] = m.value  # one point per step (the last logged)
        histories[key] = sorted(points.items())
    return RunData(ref=ref or run_id, source=f"MLflow run {run_id} at {tracking_uri}", name=name,
                   params=dict(run.data.params), metrics=metrics, histories=histories, figures=figures,
                   diag_epoch=diag_epoch)
