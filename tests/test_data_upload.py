"""`chorus shard --out s3://…` against a real S3-compatible server (moto) on 127.0.0.1: killed and
resumed it uploads the bytes of an uninterrupted local run; `--verify` reads the bucket; ranks of
one node sharing a cache download each shard once (counted by the HTTP server)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from chorus.data import read_manifest, shard

from data_stores import HTTPStore, S3Store, fresh_clients

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytest.importorskip("s3fs", reason="pip install 'chorus-snn[s3,test]'")
pytest.importorskip("moto.server", reason="pip install 'moto[server]'")


def card_file(tmp_path, limit):
    with open(os.path.join(ROOT, "datasets", "ndigits.yaml")) as f:
        card = yaml.safe_load(f)
    card["options"]["limit"] = limit
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    return str(path)


@pytest.fixture()
def s3(tmp_path, monkeypatch):
    store = S3Store("chorus-upload").start()
    for key, value in store.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CHORUS_CACHE_DIR", str(tmp_path / "chorus-cache"))
    fresh_clients()
    store.create_bucket()
    yield store
    store.stop()
    fresh_clients()


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "chorus.cli", "shard", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_killed_upload_resumes_to_the_bytes_of_an_uninterrupted_local_run(s3, tmp_path):
    card = card_file(tmp_path, 200)
    clean = tmp_path / "clean"
    shard(card, None, str(clean), workers=1, shard_size_mb=0.2, progress=False)
    url = s3.url("digits")
    proc = cli(card, "--out", url, "--workers", "2", "--shard-size", "0.2", "--quiet",
               start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if "digits/.progress.json" in s3.keys("digits/"):
            done = json.loads(s3.get("digits/.progress.json"))["done"]
            if sum(len(v) for v in done.values()) >= 3:
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "digits/manifest.json" not in s3.keys("digits/"), "finished before it was killed"
    resumed = cli(card, "--out", url, "--workers", "1", "--shard-size", "0.2", "--quiet")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    local = sorted(n for n in os.listdir(clean) if not n.startswith("."))
    assert [k[len("digits/"):] for k in s3.keys("digits/")] == local
    for name in local:
        assert s3.get(f"digits/{name}") == (clean / name).read_bytes(), name
    verify = cli("--verify", url)
    assert verify.wait(timeout=120) == 0 and "OK" in verify.stdout.read()
    name = read_manifest(url)["splits"]["train"]["shards"][1]
    data = bytearray(s3.get(f"digits/{name}"))
    data[600] ^= 0xFF
    s3.put(f"digits/{name}", bytes(data))
    verify = cli("--verify", url)
    assert verify.wait(timeout=120) == 1 and f"{url}/{name}: sha256" in verify.stderr.read()


READER = """
import sys
from chorus.data import make_loader
n = 0
for x, y in make_loader(sys.argv[1], "train", T=2, size=8, batch_size=4, cache_dir=sys.argv[2],
                        workers=int(sys.argv[3])):
    n += len(y)
print(n)
"""


@pytest.mark.slow
def test_two_ranks_sharing_one_cache_download_each_shard_once(tmp_path):
    folder = tmp_path / "served"
    manifest = shard(card_file(tmp_path, 150), None, str(folder / "digits"), shard_size_mb=0.4,
                     progress=False)
    http = HTTPStore(str(folder), delay=0.3).start()      # each shard takes 0.3 s to come
    try:
        cache = str(tmp_path / "cache")
        procs = [subprocess.Popen([sys.executable, "-c", READER, http.url("digits"), cache,
                                   str(workers)], stdout=subprocess.PIPE, text=True)
                 for workers in (0, 2)]
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        http.stop()
    assert [p.returncode for p in procs] == [0, 0]
    total = manifest["splits"]["train"]["num_samples"]
    assert [int(o) for o in outputs] == [total] * 2            # evaluation order: every sample
    gets = http.tar_gets("digits/")
    assert len(gets) == len(manifest["splits"]["train"]["shards"])
    assert set(gets.values()) == {1}, gets                    # no shard downloaded twice
    assert sorted(n[:-4] for n in os.listdir(cache) if n.endswith(".tar")) == \
        sorted(manifest["splits"]["train"]["sha256"])


def test_a_second_writer_of_one_url_on_this_machine_is_refused(s3, tmp_path):
    from chorus.data.sink import RemoteSink
    from chorus.folder_lock import FolderLockedError

    url = s3.url("locked")
    with RemoteSink(url).lock():
        with pytest.raises(FolderLockedError, match=f"pid {os.getpid()} on host"):
            shard(card_file(tmp_path, 20), None, url, progress=False)
    assert s3.keys("locked/") == []                              # nothing was written
    shard(card_file(tmp_path, 20), None, url, progress=False)     # free again
    assert "locked/manifest.json" in s3.keys("locked/")
