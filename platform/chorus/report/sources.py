"""Resolve what the user passed to ``chorus report`` (a run id, a run folder or a checkpoint) to a
:class:`~chorus.report.run_data.RunData`."""
from __future__ import annotations

import os
import re

from chorus.report.early_exit import measure_curve, read_curve
from chorus.report.from_checkpoint import is_checkpoint, load_checkpoint
from chorus.report.from_mlflow import load_run, resolve_run_folder
from chorus.report.run_data import ReportError, RunData

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def load(ref: str, tracking_uri: str | None = None, samples: int | None = None) -> RunData:
    """``ref``: an MLflow run id, a run folder (with ``run.json``) or a checkpoint folder."""
    from chorus.tracking import default_uri

    if os.path.isdir(ref):
        if is_checkpoint(ref):
            data = load_checkpoint(ref, samples=samples)
            data.early_exit = measure_curve(ref)
            return data
        run_id, uri = resolve_run_folder(ref)
        data = load_run(run_id, tracking_uri or uri or default_uri(), ref=ref)
        data.early_exit = read_curve(ref)
        return data
    if _RUN_ID.match(ref):
        return load_run(ref, tracking_uri or default_uri(), ref=ref)
    if os.path.exists(ref):
        raise ReportError(f"{ref!r} is a file; pass a checkpoint folder (with trainer_state.json), a run folder "
                          f"or an MLflow run id")
    raise ReportError(f"{ref!r} is neither an MLflow run id (32 hex digits) nor an existing run or checkpoint "
                      f"folder")
