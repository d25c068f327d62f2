"""`chorus train recipes/quickstart.yaml data.shards=s3://…` against a real S3-compatible server
(moto) on 127.0.0.1 gives exactly the test accuracy of the same run from the local folder
(issue 14's training bar), and a bad URL is named before anything is written."""
import json
import os
import subprocess
import sys

import pytest

from chorus.data import shard

from data_stores import S3Store, fresh_clients

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "recipes", "quickstart.yaml")
pytest.importorskip("s3fs", reason="pip install 'chorus-snn[s3,test]'")
pytest.importorskip("moto.server", reason="pip install 'moto[server]'")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train-s3")
    store = S3Store("chorus-train").start()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in store.env().items():
            mp.setenv(key, value)
        fresh_clients()
        store.create_bucket()
        local = tmp / "ndigits"                      # the quickstart's own data: all of N-Digits
        shard(os.path.join(ROOT, "datasets", "ndigits.yaml"), None, str(local), workers=2,
              progress=False)
        for name in sorted(os.listdir(local)):
            store.put(f"ndigits/{name}", (local / name).read_bytes())
        yield store, str(local), tmp
        store.stop()
        fresh_clients()


def train(shards, out, tmp, env):
    cmd = [sys.executable, "-m", "chorus.cli", "train", QUICKSTART, f"data.shards={shards}",
           "train.epochs=1", "train.max_steps=12", "diagnostics.every=0", "train.progress=false",
           f"train.out_dir={out}", "tracking.enabled=false", f"data.cache_dir={tmp / 'cache'}"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.slow
def test_quickstart_from_the_bucket_gives_the_test_accuracy_of_the_folder(s3):
    store, local, tmp = s3
    env = {**os.environ, **store.env(), "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    results = {}
    for name, shards in (("folder", local), ("bucket", store.url("ndigits"))):
        proc = train(shards, tmp / f"run-{name}", tmp, env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(tmp / f"run-{name}" / "summary.json") as f:
            results[name] = json.load(f)
    folder, bucket = results["folder"]["test"], results["bucket"]["test"]
    assert folder["samples"] == bucket["samples"] == 355
    assert bucket["acc"] == folder["acc"] and bucket == folder          # exactly, every timestep
    assert results["bucket"]["steps"] == results["folder"]["steps"] == 12
    assert len([n for n in os.listdir(tmp / "cache") if n.endswith(".tar")]) >= 2


def test_a_url_without_a_shard_set_is_named_before_anything_is_written(s3):
    store, _, tmp = s3
    env = {**os.environ, **store.env(), "MLFLOW_DISABLE_TELEMETRY": "true"}
    url = store.url("missing")
    proc = train(url, tmp / "run-missing", tmp, env)
    assert proc.returncode == 2
    assert f"data.shards: cannot read '{url}'" in proc.stderr and "no manifest.json" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp / "run-missing").exists()
