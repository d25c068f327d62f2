"""Issue 18, item 12: when the tracking server dies mid-run, the final summary says what was recorded
where -- the MLflow run id and URI, how many metric values reached the server (checked against the
server's own store) and from which step on it was lost, and that metrics.jsonl holds everything."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from test_train_support import ROOT, env, ndigits_shards, start_mlflow_server, tiny

QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")


@pytest.mark.slow
def test_summary_counts_what_reached_the_server_before_it_was_lost(tmp_path_factory, tmp_path):
    shards = ndigits_shards(tmp_path_factory)
    server, uri, db = start_mlflow_server(tmp_path)
    out = tmp_path / "run"
    deadline = time.time() + 300
    try:
        args = tiny(shards, str(out), tmp_path, "train.checkpoint_every=4")
        args = [a for a in args if not a.startswith("tracking.uri=")] + [f"tracking.uri={uri}"]
        run = subprocess.Popen([sys.executable, "-m", "chorus.cli", "train", QUICKSTART, *args], env=env(),
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while run.poll() is None and time.time() < deadline:    # past the first checkpoint's flush
            if (out / "metrics.jsonl").exists() and any(json.loads(x)["step"] >= 6 for x in
                                                       (out / "metrics.jsonl").read_text().splitlines()):
                break
            time.sleep(0.02)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    rid = json.load(open(out / "run.json"))["mlflow_run_id"]
    m = re.search(r"MLflow: run (\w+) at (\S+), (\d+) metric values logged \(up to step (\d+)\) before the server "
                  r"was lost at step (\d+) .*; full metrics in (\S+)", err)
    assert m, err[-3000:]
    assert m.group(1) == rid and m.group(2) == uri
    assert m.group(6) == str(out / "metrics.jsonl")
    store = MlflowClient(db)                                 # the dead server's own store
    kept = [h for k in store.get_run(rid).data.metrics for h in store.get_metric_history(rid, k)]
    assert int(m.group(3)) == len(kept) > 0
    assert int(m.group(4)) == max(h.step for h in kept) < int(m.group(5))
    assert "not recorded" not in err
