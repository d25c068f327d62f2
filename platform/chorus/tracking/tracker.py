"""MLflow tracking that never stops training (docs/method.md, "Recipes and runs": metric names).

One :class:`Tracker` per run, active on the main process only. Every metric is also appended to
``metrics.jsonl`` in the run folder, and every artifact (text or file) is also written there under its
artifact path (a file already inside the run folder is not copied again), so the run folder holds every
result with or without MLflow, and a tracking server that goes away loses nothing: the tracker says so
once, stops calling MLflow, and training goes on. Uses ``MlflowClient`` (no global active run),
so ``chorus.train.run`` can be called in-process by Ray Tune and nested under a parent run.

With ``hold`` (the training loop sets it) MLflow receives metrics only as far as a checkpoint covers
them: rows wait in ``pending`` until :meth:`flush` (after each checkpoint, and at the end), and a
checkpoint records :meth:`mark` (where ``metrics.jsonl`` stood). A resumed run calls
:meth:`resume_log` with its checkpoint's mark: rows after it are cut from ``metrics.jsonl`` and the
rows MLflow may lack (those between the previous flush and the mark) are sent unless already there,
so each step's metrics appear once in both (issue 18, item 2).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from typing import Any

from chorus.tracking import store

_MAX_BATCH = 100


class Tracker:
    def __init__(self, *, enabled: bool = True, uri: str | None = None, experiment: str = "chorus",
                 local_dir: str | None = None, stream=None, artifacts: str | None = None):
        self.enabled = enabled
        self.uri = store.absolute(uri or store.default_uri())
        self.artifacts = artifacts
        self.experiment = experiment
        self.local_dir = local_dir
        self.stream = stream if stream is not None else sys.stderr
        self.client = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.failed = False
        self.warnings: list[str] = []
        self.hold = False
        self.pending: list[tuple[dict, int, int]] = []   # (metrics, step, timestamp ms) not yet sent
        self.pending_from = 0        # metrics.jsonl size where ``pending`` began
        self.sent = 0                # metric values MLflow accepted
        self.last_sent_step: int | None = None
        self.lost_at_step: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, run_name: str, params: dict[str, Any], tags: dict[str, str] | None = None,
              parent_run_id: str | None = None, resume_run_id: str | None = None) -> str | None:
        """Create (or reopen, on resume) the MLflow run; returns its id, or None when offline."""
        if not self.enabled:
            return None
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        ok, why = store.reachable(self.uri)
        if not ok:
            self._go_offline(f"tracking server {self.uri} is unreachable ({why})")
            return None
        try:
            from mlflow.tracking import MlflowClient

            store.prepare(self.uri)
            self.client = MlflowClient(tracking_uri=self.uri)
            exp = self.client.get_experiment_by_name(self.experiment)
            root = store.artifact_root(self.uri, self.artifacts)
            if exp is None:
                self.experiment_id = self.client.create_experiment(self.experiment, artifact_location=root)
            else:
                self.experiment_id = exp.experiment_id
                if not store.same_root(exp.artifact_location, root):
                    print(f"[chorus] note: MLflow experiment '{self.experiment}' was made with its artifacts in "
                          f"{exp.artifact_location} (not {root}); MLflow keeps them there"
                          + (f", and the run folder {self.local_dir} holds them too" if self.local_dir else ""),
                          file=self.stream, flush=True)
            if resume_run_id:
                try:
                    self.client.update_run(resume_run_id, status="RUNNING")
                    self.run_id = resume_run_id
                    return self.run_id
                except Exception as e:  # noqa: BLE001 - e.g. resumed against another store: start afresh
                    print(f"[chorus] MLflow run {resume_run_id} not found at {self.uri} ({type(e).__name__}); "
                          f"starting a new run", file=self.stream, flush=True)
            all_tags = dict(tags or {})
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id
            self.log_params(params)
        except Exception as e:  # noqa: BLE001 - any tracking failure must not stop training
            self._go_offline(f"could not start an MLflow run at {self.uri} ({type(e).__name__}: {e})")
        return self.run_id

    def end(self, status: str = "FINISHED") -> None:
        """Send what is still held (the run's last rows, e.g. test metrics) and close the run."""
        if self.pending:
            self.flush()
        if self._live():
            self._call(self.client.set_terminated, self.run_id, status=status)

    # -- logging -------------------------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        if not self._live():
            return
        from mlflow.entities import Param

        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), _MAX_BATCH):
            self._call(self.client.log_batch, self.run_id, params=items[i:i + _MAX_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log finite numbers at ``step`` (always to metrics.jsonl; to MLflow if live, now or -- with
        ``hold`` -- at the next :meth:`flush`)."""
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        now = time.time()
        self._local({"step": int(step), "time": now, **clean})
        if not self._live() or not clean:
            return
        if self.hold:
            self.pending.append((clean, int(step), int(now * 1000)))
        else:
            self._send(clean, int(step), int(now * 1000))

    def _send(self, clean: dict[str, float], step: int, ts: int) -> None:
        from mlflow.entities import Metric

        items = [Metric(k, v, ts, step) for k, v in clean.items()]
        for i in range(0, len(items), _MAX_BATCH):
            if not self._live():
                break
            self._call(self.client.log_batch, self.run_id, metrics=items[i:i + _MAX_BATCH])
            if self.failed:
                self.lost_at_step = step
            else:
                self.sent += len(items[i:i + _MAX_BATCH])
                self.last_sent_step = step

    def flush(self) -> None:
        """Send the held rows to MLflow (after a checkpoint that covers them)."""
        rows, self.pending = self.pending, []
        for clean, step, ts in rows:
            if self._live():
                self._send(clean, step, ts)
        self.pending_from = self._local_size()

    def mark(self) -> dict | None:
        """Where metrics.jsonl stands, for a checkpoint's state (``None`` without a run folder)."""
        if not self.local_dir:
            return None
        return {"bytes": self._local_size(), "pending_from": self.pending_from,
                "log": os.path.realpath(os.path.join(self.local_dir, "metrics.jsonl"))}

    def resume_log(self, mark: dict | None) -> None:
        """Continue the log of a resumed run from a checkpoint's :meth:`mark` (see the module's note)."""
        path = os.path.join(self.local_dir or "", "metrics.jsonl")
        if not mark or not self.local_dir or not os.path.isfile(path):
            return
        if mark.get("log") != os.path.realpath(path) or int(mark["bytes"]) > os.path.getsize(path):
            # another run's checkpoint (a PBT exploit clones the stronger trial's): its offsets say
            # nothing about this log, which simply goes on
            self.pending_from = self._local_size()
            return
        end, start = int(mark["bytes"]), min(int(mark["pending_from"]), int(mark["bytes"]))
        with open(path, "rb+") as f:
            f.seek(start)
            unsent = f.read(max(end - start, 0)).decode().splitlines()
            f.truncate(end)
        self.pending_from = end
        if self._live() and unsent:
            self._send_missing([json.loads(line) for line in unsent if line.strip()])

    def _send_missing(self, rows: list[dict]) -> None:
        """Send the metrics of ``rows`` (metrics.jsonl records) that MLflow does not hold yet."""
        keys = {k for row in rows for k in row if k not in ("step", "time")}
        have = set()
        for key in keys:
            hist = self._call(self.client.get_metric_history, self.run_id, key) or []
            have |= {(key, m.step, m.timestamp) for m in hist}
        for row in rows:
            step, ts = int(row["step"]), int(row["time"] * 1000)
            clean = {k: v for k, v in row.items() if k not in ("step", "time") and (k, step, ts) not in have}
            if clean and self._live():
                self._send(clean, step, ts)

    def log_text(self, text: str, artifact_file: str) -> None:
        """``text`` as the artifact ``artifact_file`` (and the file of that name in the run folder)."""
        if self.local_dir:
            dest = os.path.join(self.local_dir, artifact_file)
            os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
            with open(dest, "w") as f:
                f.write(text)
        if self._live():
            self._call(self.client.log_text, self.run_id, text, artifact_file)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """A file, or a folder's contents, under ``artifact_path`` (copied into the run folder as well,
        unless it is already there)."""
        self._mirror(path, artifact_path)
        if not self._live():
            return
        if os.path.isdir(path):
            self._call(self.client.log_artifacts, self.run_id, path, artifact_path)
        else:
            self._call(self.client.log_artifact, self.run_id, path, artifact_path)

    def set_tag(self, key: str, value: str) -> None:
        if self._live():
            self._call(self.client.set_tag, self.run_id, key, value)

    # -- where and how -------------------------------------------------------------------------------
    def location(self) -> str:
        if not self.enabled:
            return "MLflow: tracking disabled (tracking.enabled=false)"
        local = os.path.join(self.local_dir, "metrics.jsonl") if self.local_dir else "nowhere"
        if self.run_id is not None and self.failed:      # the run exists on the server, in part
            where = (f"at step {self.lost_at_step}" if self.lost_at_step is not None else
                     f"after step {self.last_sent_step}" if self.last_sent_step is not None else "after the run started")
            last = f" (up to step {self.last_sent_step})" if self.last_sent_step is not None else ""
            return (f"MLflow: run {self.run_id} at {self.uri}, {self.sent} metric values logged{last} before "
                    f"the server was lost {where} ({self.warnings[0]}); full metrics in {local}")
        if self.run_id is None or self.failed:
            return f"MLflow: not recorded ({self.warnings[0] if self.warnings else 'offline'}); metrics in {local}"
        return (f"MLflow: {self.uri}  experiment '{self.experiment}' (id {self.experiment_id})  run {self.run_id}\n"
                f"        view with: mlflow ui --backend-store-uri {self.uri}")

    def _live(self) -> bool:
        return self.enabled and not self.failed and self.client is not None and self.run_id is not None

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            self._go_offline(f"MLflow at {self.uri} failed ({type(e).__name__}: {str(e)[:200]})")
            return None

    def _go_offline(self, why: str) -> None:
        if not self.failed:
            self.failed = True
            self.warnings.append(why)
            where = f"; metrics continue in {os.path.join(self.local_dir, 'metrics.jsonl')}" if self.local_dir else ""
            print(f"[chorus] WARNING: {why}. Training goes on without MLflow{where}.", file=self.stream,
                  flush=True)

    def _mirror(self, path: str, artifact_path: str | None) -> None:
        """Copy an artifact into the run folder at its artifact path; skip what is already inside it."""
        if not self.local_dir:
            return
        root, src = os.path.realpath(self.local_dir), os.path.realpath(path)
        if os.path.commonpath([root, src]) == root:
            return
        dest = os.path.join(self.local_dir, artifact_path or "")
        if os.path.isdir(path):
            shutil.copytree(path, dest, dirs_exist_ok=True)
        else:
            os.makedirs(dest, exist_ok=True)
            shutil.copy2(path, os.path.join(dest, os.path.basename(path)))

    def _local_size(self) -> int:
        path = os.path.join(self.local_dir or "", "metrics.jsonl")
        return os.path.getsize(path) if self.local_dir and os.path.isfile(path) else 0

    def _local(self, record: dict) -> None:
        if not self.local_dir:
            return
        os.makedirs(self.local_dir, exist_ok=True)
        with open(os.path.join(self.local_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")


def _param_value(v: Any) -> str:
    s = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return s[:6000]


class NullTracker(Tracker):
    """The tracker of non-main processes: records nothing."""

    def __init__(self):
        super().__init__(enabled=False)

    def log_metrics(self, metrics, step):  # noqa: D102
        return None

    def location(self) -> str:
        return ""

    def mark(self):  # noqa: D102
        return None

    def resume_log(self, mark) -> None:  # noqa: D102
        return None
