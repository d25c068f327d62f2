"""MLflow for a search: one parent run, one nested child run per trial.

The driver opens the parent run (through :class:`chorus.tracking.Tracker`, the same tracker training
uses) and hands its id to every trial as ``tracking.parent_run_id``; the training loop of each trial
creates the child run under it, named after the Ray trial id, and logs the trial's parameters, metric
curves and per-timestep table there. A trial that the scheduler stops, or that Ray kills, cannot end
its own run: :class:`ChildRunCloser` (a Ray Tune callback on the driver) ends it, and
:meth:`SearchRuns.close_open_children` ends whatever is still open when the search returns.
"""
from __future__ import annotations

import json
from typing import Any, Optional

TRIAL_TAG = "chorus.tune.trial_id"
STATUS_TAG = "chorus.tune.status"
SEARCH_TAG = "chorus.tune.search"


class SearchRuns:
    """The parent run of one search (``uri``, ``experiment``); all methods are no-ops when disabled."""

    def __init__(self, uri: str, experiment: str, enabled: bool = True):
        from chorus.tracking import Tracker

        self.uri = uri
        self.experiment = experiment
        self.tracker = Tracker(enabled=enabled, uri=uri, experiment=experiment)

    @property
    def run_id(self) -> Optional[str]:
        return self.tracker.run_id

    @property
    def live(self) -> bool:
        return self.tracker._live()

    def start(self, name: str, params: dict[str, Any], resume_run_id: Optional[str] = None) -> Optional[str]:
        """Open the parent run (or reopen it when resuming); returns its id."""
        return self.tracker.start(name, params, tags={SEARCH_TAG: name}, resume_run_id=resume_run_id)

    def children(self) -> list:
        """The child runs of the parent (MLflow ``Run`` objects)."""
        if not self.live:
            return []
        client = self.tracker.client
        return client.search_runs(
            [self.tracker.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'",
            max_results=10000,
        )

    def close_child(self, trial_id: str, status: str, label: str) -> None:
        """End trial ``trial_id``'s child run if it is still RUNNING (``status`` FINISHED/FAILED/KILLED)
        and tag it ``chorus.tune.status = label``."""
        close_child(self.uri, self.run_id, trial_id, status, label, client=self.tracker.client)

    def close_open_children(self) -> int:
        """End every child run still RUNNING (as KILLED); returns how many."""
        n = 0
        for run in self.children():
            if run.info.status == "RUNNING":
                self.tracker.client.set_terminated(run.info.run_id, status="KILLED")
                n += 1
        return n

    def label_children(self, labels: dict[str, str]) -> None:
        """Tag each child with its trial's final status (``{trial_id: label}``)."""
        for run in self.children():
            label = labels.get(run.data.tags.get(TRIAL_TAG) or run.info.run_name)
            if label:
                self.tracker.client.set_tag(run.info.run_id, STATUS_TAG, label)

    def add_missing_tables(self, last_metrics: dict[str, dict]) -> int:
        """Give every child run without ``per_timestep.md`` (a trial Ray stopped before the loop could
        write it) the per-timestep table of its last reported epoch; ``last_metrics`` maps trial id to
        its last metrics. Returns how many tables were added."""
        added = 0
        for run in self.children():
            trial_id = run.data.tags.get(TRIAL_TAG) or run.info.run_name
            metrics = last_metrics.get(trial_id)
            if not metrics:
                continue
            names = {a.path for a in self.tracker.client.list_artifacts(run.info.run_id)}
            if "per_timestep.md" in names:
                continue
            val = {k[len("val/"):]: float(v) for k, v in metrics.items()
                   if k.startswith("val/") and isinstance(v, (int, float))}
            if not any(k.startswith("acc_step_") for k in val):
                continue
            title = f"{trial_id}: val accuracy per timestep at epoch {int(metrics.get('epoch', 0))} (last reported)"
            self.tracker.client.log_text(run.info.run_id, timestep_markdown(val, title) + "\n", "per_timestep.md")
            self.tracker.client.log_text(run.info.run_id, json.dumps(val, indent=1), "per_timestep.json")
            added += 1
        return added

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self.tracker.log_metrics(metrics, step=0)

    def log_artifact(self, path: str, artifact_path: Optional[str] = None) -> None:
        self.tracker.log_artifact(path, artifact_path)

    def set_tag(self, key: str, value: str) -> None:
        self.tracker.set_tag(key, value)

    def end(self, status: str = "FINISHED") -> None:
        self.tracker.end(status)


def timestep_markdown(val: dict[str, float], title: str) -> str:
    """Markdown table of ``acc_step_t`` (each timestep alone) and ``acc_first_k`` (anytime) in %."""
    T = sum(1 for k in val if k.startswith("acc_step_"))
    cols = range(1, T + 1)
    return "\n".join([
        f"**{title}**",
        "| k / t | " + " | ".join(str(t) for t in cols) + " |",
        "|---|" + "---|" * T,
        "| acc of step t alone | " + " | ".join(f"{100 * val.get(f'acc_step_{t}', float('nan')):.2f}" for t in cols) + " |",
        "| acc of first k (anytime) | " + " | ".join(f"{100 * val.get(f'acc_first_{t}', float('nan')):.2f}" for t in cols) + " |",
        f"\nensemble accuracy (mean of all {T} outputs): {100 * val.get('acc', float('nan')):.2f}%",
    ])


def _trial_children(uri: str, parent_run_id: str, trial_id: str, client=None, tag: str = TRIAL_TAG):
    """(client, the child runs of ``parent_run_id`` whose tag ``tag`` is ``trial_id``: a search's trial
    id, or a study's pair, ``chorus.study.pair``)."""
    if client is None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`{tag}` = '{trial_id}'",
    )
    return client, runs


def close_child(uri: str, parent_run_id: Optional[str], trial_id: str, status: str, label: str,
                client=None, tag: str = TRIAL_TAG) -> None:
    """End the RUNNING child run of ``parent_run_id`` whose trial is ``trial_id``; tag its label."""
    if not parent_run_id:
        return
    client, runs = _trial_children(uri, parent_run_id, trial_id, client, tag)
    for run in runs:
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status=status)
        client.set_tag(run.info.run_id, STATUS_TAG, label)


def supersede_children(uri: str, parent_run_id: Optional[str], trial_id: str, client=None,
                       tag: str = TRIAL_TAG) -> int:
    """Before trial ``trial_id`` starts again from scratch (no checkpoint: a driver or trial killed
    before its first report), retire the child runs of its earlier attempts: end them KILLED, tag them
    ``chorus.tune.status = superseded`` and delete them (MLflow's soft delete: the run and its metrics
    stay in the store, ``mlflow runs restore`` brings them back), so the search keeps one child per
    trial and the rerun, which logs every step again, is that child (``tag``: which tag names the trial).
    Returns how many were retired."""
    if not parent_run_id:
        return 0
    client, runs = _trial_children(uri, parent_run_id, trial_id, client, tag)
    for run in runs:
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status="KILLED")
        client.set_tag(run.info.run_id, STATUS_TAG, "superseded")
        client.set_tag(run.info.run_id, "chorus.tune.superseded",
                       "the trial was restarted from scratch (no checkpoint); the rerun is the trial's child")
        client.delete_run(run.info.run_id)
    return len(runs)


def _tune_callback_base():
    from ray.tune import Callback

    return Callback


class ChildRunCloser(_tune_callback_base()):
    """Ray Tune callback (driver side): when a trial ends, end its child run if it is still open.

    Holds only plain data (it is pickled with the experiment state for ``Tuner.restore``). A child is
    found by its tag ``tag`` equal to the trial id, or, with ``config_key``, to the trial's config value
    of that key (a study's pair)."""

    def __init__(self, uri: str, parent_run_id: Optional[str], tag: str = TRIAL_TAG,
                 config_key: Optional[str] = None):
        self.uri = uri
        self.parent_run_id = parent_run_id
        self.tag = tag
        self.config_key = config_key
        self._client = None          # made on first use, never pickled

    def __getstate__(self):
        return {"uri": self.uri, "parent_run_id": self.parent_run_id, "tag": self.tag,
                "config_key": self.config_key, "_client": None}

    def __setstate__(self, state):
        self.__dict__.update({"tag": TRIAL_TAG, "config_key": None, **state})

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._close(trial, "FINISHED", "ended")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial, "FAILED", "failed")

    def _close(self, trial, status: str, label: str) -> None:
        try:
            if self._client is None and self.parent_run_id:
                from mlflow.tracking import MlflowClient

                self._client = MlflowClient(tracking_uri=self.uri)
            key = trial.config.get(self.config_key) if self.config_key else trial.trial_id
            close_child(self.uri, self.parent_run_id, str(key), status, label, client=self._client, tag=self.tag)
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not stop the search
            print(f"[chorus tune] could not close the MLflow run of trial {trial.trial_id}: {exc}")
