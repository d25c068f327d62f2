"""Shard sets at a URL: the reader over a real HTTP server and a real S3-compatible server (moto),
both on 127.0.0.1, gives the very batches of the local folder, with the local reader's guarantees,
a node-local cache and clear errors (issue 14)."""
import json
import os
import shutil
import time
from types import SimpleNamespace

import pytest
import torch
import yaml

from chorus.data import DataError, make_loader, read_manifest, shard

from data_stores import HTTPStore, S3Store, fresh_clients

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytest.importorskip("s3fs", reason="pip install 'chorus-snn[s3,test]'")
pytest.importorskip("moto.server", reason="pip install 'moto[server]'")


def ndigits_card(limit):
    with open(os.path.join(ROOT, "datasets", "ndigits.yaml")) as f:
        card = yaml.safe_load(f)
    card["options"]["limit"] = limit
    return card


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("remote")
    card = ndigits_card(150)
    local = tmp / "shards"
    shard(card, None, str(local), shard_size_mb=0.4, progress=False)
    s3 = S3Store("chorus-remote").start()
    http = HTTPStore(str(tmp)).start()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in s3.env().items():
            mp.setenv(key, value)
        mp.setenv("CHORUS_CACHE_DIR", str(tmp / "chorus-cache"))
        fresh_clients()
        s3.create_bucket()
        shard(card, None, s3.url("nd"), shard_size_mb=0.4, progress=False)   # the upload path
        yield SimpleNamespace(local=str(local), s3=s3, http=http, tmp=tmp, card=card,
                              urls={"s3": s3.url("nd"), "http": http.url("shards")})
        http.stop()
        s3.stop()
        fresh_clients()


def batches(source, split, **kw):
    return list(make_loader(source, split, T=3, size=16, **kw))


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2)
                                    for (x1, y1), (x2, y2) in zip(a, b))


def test_upload_gives_the_local_bytes_and_no_leftovers(stores):
    keys = stores.s3.keys("nd/")
    local = sorted(n for n in os.listdir(stores.local) if not n.startswith("."))
    assert [k[3:] for k in keys] == local                   # no .progress.json, no .tmp left
    for name in local:
        with open(os.path.join(stores.local, name), "rb") as f:
            assert stores.s3.get(f"nd/{name}") == f.read(), name
    assert read_manifest(stores.urls["s3"])["folder"] == stores.urls["s3"]


@pytest.mark.parametrize("store", ["s3", "http"])
def test_two_ranks_two_epochs_and_evaluation_equal_the_local_folder(stores, store, tmp_path):
    url = stores.urls[store]
    cache = str(tmp_path / "cache")
    kw = dict(batch_size=8, train=True, seed=3, augment=True, world_size=2, workers=2)
    for epoch in range(2):
        per_rank = []
        for rank in range(2):
            remote = batches(url, "train", epoch=epoch, rank=rank, cache_dir=cache, **kw)
            assert same(remote, batches(stores.local, "train", epoch=epoch, rank=rank, **kw))
            per_rank.append(remote)
        assert len(per_rank[0]) == len(per_rank[1]) > 0
    seen = []
    for rank in range(2):
        remote = batches(url, "test", batch_size=4, rank=rank, world_size=2, cache_dir=cache)
        assert same(remote, batches(stores.local, "test", batch_size=4, rank=rank, world_size=2))
        seen.extend(y for _, y in remote)
    assert len(torch.cat(seen)) == read_manifest(url)["splits"]["test"]["num_samples"]


def test_resume_mid_epoch_and_worker_processes_equal_threads(stores, tmp_path):
    url = stores.urls["s3"]
    kw = dict(batch_size=8, train=True, seed=5, augment=True, epoch=1,
              cache_dir=str(tmp_path / "cache"))
    full = batches(url, "train", workers=2, **kw)
    assert same(batches(url, "train", workers=2, start_batch=4, **kw), full[4:])
    assert same(batches(url, "train", workers=2, worker_kind="processes", **kw), full)
    assert same(batches(stores.local, "train", workers=3, worker_kind="processes",
                        start_batch=2, **kw), full[2:])


def test_cache_serves_epoch_two_without_downloading_and_is_named_by_sha256(stores, tmp_path):
    url, http = stores.urls["http"], stores.http
    cache = tmp_path / "cache"
    before = http.tar_gets("shards/")
    first = batches(url, "train", batch_size=8, train=True, epoch=0, cache_dir=str(cache))
    fetched = http.tar_gets("shards/") - before
    manifest = read_manifest(stores.local)
    assert set(fetched.values()) == {1} and len(fetched) == len(manifest["splits"]["train"]["shards"])
    second = batches(url, "train", batch_size=8, train=True, epoch=1, cache_dir=str(cache))
    assert http.tar_gets("shards/") - before == fetched           # epoch 2: nothing downloaded
    assert same(second, batches(stores.local, "train", batch_size=8, train=True, epoch=1))
    assert same(first, batches(stores.local, "train", batch_size=8, train=True, epoch=0))
    cached = sorted(n[:-4] for n in os.listdir(cache) if n.endswith(".tar"))
    assert cached == sorted(manifest["splits"]["train"]["sha256"])


def test_a_training_run_reads_the_manifest_once_and_each_shard_once(stores, tmp_path):
    """Two epochs, validation and test from the HTTP store: one manifest request for the whole run
    (not one per loader: from a bucket each is a request) and one download per shard (the cache)."""
    from chorus.config import load_recipe
    from chorus.train import run

    from test_train_support import tiny

    http = stores.http
    quickstart = os.path.join(ROOT, "recipes", "quickstart.yaml")
    overrides = tiny(stores.urls["http"], str(tmp_path / "run"), tmp_path, "tracking.enabled=false",
                     f"data.cache_dir={tmp_path / 'cache'}", "diagnostics.every=0", "data.batch_size=8")
    before = http.counts.copy()
    result = run(load_recipe(quickstart, overrides))
    gets = http.counts - before
    assert gets["/shards/manifest.json"] == 1
    manifest = read_manifest(stores.local)
    shards = {f"/shards/{n}" for info in manifest["splits"].values() for n in info["shards"]}
    assert {p: n for p, n in gets.items() if p.endswith(".tar")} == {p: 1 for p in shards}
    assert len(result["history"]) == 2 and result["test"]["samples"] == manifest["splits"]["test"]["num_samples"]

@pytest.mark.parametrize("store", ["s3", "http"])
def test_a_shard_that_differs_from_the_manifest_is_refused_and_not_cached(stores, store, tmp_path):
    test = read_manifest(stores.local)["splits"]["test"]
    name, digest = test["shards"][0], test["sha256"][0]
    with open(os.path.join(stores.local, name), "rb") as f:
        data = bytearray(f.read())
    data[700] ^= 0xFF                                  # one byte inside the first sample's data
    if store == "s3":
        for key in stores.s3.keys("nd/"):
            stores.s3.put("bad/" + key[3:], stores.s3.get(key))
        stores.s3.put(f"bad/{name}", bytes(data))
        url = stores.s3.url("bad")
    else:
        shutil.copytree(stores.local, stores.tmp / f"bad-{tmp_path.name}")
        with open(stores.tmp / f"bad-{tmp_path.name}" / name, "wb") as f:
            f.write(data)
        url = stores.http.url(f"bad-{tmp_path.name}")
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        batches(url, "test", batch_size=4, cache_dir=str(cache))
    message = str(info.value)
    assert f"{url}/{name}" in message and "sha256" in message and "nothing was cached" in message
    left = os.listdir(cache)                  # the shards fetched ahead are cached, not this one
    assert f"{digest}.tar" not in left and not [n for n in left if ".part" in n], left


@pytest.mark.parametrize("store", ["s3", "http"])
def test_server_stopped_mid_epoch_gives_a_bounded_error_naming_the_url_and_resume_works(
        stores, store, tmp_path):
    url = stores.urls[store]
    server = stores.s3 if store == "s3" else stores.http
    kw = dict(batch_size=8, train=True, seed=2, epoch=0)
    expected = batches(stores.local, "train", **kw)
    got = []
    loader = make_loader(url, "train", T=3, size=16, workers=2, retries=1, prefetch_shards=1,
                         cache_dir=str(tmp_path / "cache"), **kw)
    try:
        with pytest.raises(DataError) as info:
            for batch in loader:
                got.append(batch)
                if len(got) == 2:
                    server.stop()
                    stopped = time.monotonic()
        elapsed = time.monotonic() - stopped
    finally:
        server.start()                                 # the same port again
    assert elapsed < 30, f"gave up only after {elapsed:.1f} s"
    message = str(info.value)
    assert f"{url}/train-" in message and ".tar" in message and "2 tries" in message, message
    assert 2 <= len(got) < len(expected) and same(got, expected[:len(got)])
    resumed = batches(url, "train", workers=2, start_batch=len(got),
                      cache_dir=str(tmp_path / "cache"), **kw)
    assert same(got + resumed, expected)


def _held(folder) -> int:
    """Bytes of shard files in ``folder`` now: the reader's prefetch thread may evict a file between the
    listing and its stat (it is then gone and holds nothing)."""
    total = 0
    for entry in os.scandir(folder):
        if ".tar" in entry.name:
            try:
                total += entry.stat().st_size
            except FileNotFoundError:
                pass
    return total


def test_cache_full_evicts_least_recently_used_and_never_exceeds_its_bound(stores, tmp_path):
    url = stores.urls["s3"]
    sizes = read_manifest(stores.local)["splits"]["train"]["bytes"]
    bound = 3 * max(sizes)
    cache = tmp_path / "cache"
    kw = dict(batch_size=8, train=True, seed=1, epoch=0)
    loader = make_loader(url, "train", T=3, size=16, cache_dir=str(cache), cache_gb=bound / 2**30,
                         **kw)
    got = []
    for batch in loader:
        got.append(batch)
        assert _held(cache) <= bound
    assert same(got, batches(stores.local, "train", **kw))
    assert 1 <= len([n for n in os.listdir(cache) if n.endswith(".tar")]) <= 3
    small = tmp_path / "small"
    with pytest.warns(UserWarning, match="not cached"):
        tiny = batches(url, "train", cache_dir=str(small), cache_gb=min(sizes) / 2 / 2**30, **kw)
    assert same(tiny, got) and not [n for n in os.listdir(small) if ".tar" in n]


def test_bad_samples_name_the_url_and_key_and_skip_is_counted_as_locally(stores, tmp_path):
    from test_data_errors import outside, rewrite

    from chorus.data.manifest import sha256_file

    bad = tmp_path / "bad"
    shutil.copytree(stores.local, bad)
    path, samples = rewrite(str(bad), "test", outside)
    manifest = read_manifest(str(bad))
    manifest["splits"]["test"]["sha256"][0] = sha256_file(path)     # a set written that way
    manifest["splits"]["test"]["bytes"][0] = os.path.getsize(path)
    manifest.pop("folder")
    with open(bad / "manifest.json", "w") as f:
        json.dump(manifest, f)
    for name in sorted(os.listdir(bad)):
        with open(bad / name, "rb") as f:
            stores.s3.put(f"skip-{tmp_path.name}/{name}", f.read())
    url = stores.s3.url(f"skip-{tmp_path.name}")
    with pytest.raises(DataError) as info:
        batches(url, "test", batch_size=4, cache_gb=0)
    name = os.path.basename(path)
    assert f"{url}/{name}: sample '{samples[2]['__key__']}'" in str(info.value)
    remote = make_loader(url, "test", T=3, size=16, batch_size=4, on_error="skip", cache_gb=0)
    local = make_loader(str(bad), "test", T=3, size=16, batch_size=4, on_error="skip")
    procs = make_loader(url, "test", T=3, size=16, batch_size=4, on_error="skip", cache_gb=0,
                        workers=2, worker_kind="processes")
    with pytest.warns(UserWarning, match="events outside"):
        expected = list(local)
        assert same(list(remote), expected) and same(list(procs), expected)
    assert remote.skipped == local.skipped == procs.skipped == 1
    with pytest.raises(DataError, match=f"{name}: sample '{samples[2]['__key__']}'"):
        list(make_loader(url, "test", T=3, size=16, batch_size=4, workers=2,
                         worker_kind="processes", cache_dir=str(tmp_path / "cache")))


def test_missing_manifest_and_missing_store_package_are_named(stores):
    with pytest.raises(DataError, match=r"s3://chorus-remote/nothing: no manifest.json"):
        read_manifest(stores.s3.url("nothing"))
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match=r"gcsfs \(pip install 'chorus-snn\[gcs\]'\)"):
            read_manifest("gs://some-bucket/shards")


def test_s3_reads_leave_the_crc32_to_the_manifest_sha256_unless_the_environment_asks(stores, monkeypatch):
    """botocore's own CRC32 of each whole-object response is a second pass over a shard that the
    sha256 check covers: off for our S3 reads; AWS_RESPONSE_CHECKSUM_VALIDATION still decides."""
    from chorus.data.urls import filesystem

    monkeypatch.delenv("AWS_RESPONSE_CHECKSUM_VALIDATION", raising=False)
    fs, _ = filesystem(stores.urls["s3"])
    assert fs.config_kwargs["response_checksum_validation"] == "when_required"
    assert read_manifest(stores.urls["s3"])["folder"] == stores.urls["s3"]
    monkeypatch.setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_supported")
    fs, _ = filesystem(stores.urls["s3"])
    assert "response_checksum_validation" not in fs.config_kwargs
    assert filesystem(stores.urls["http"])[0].protocol[0].startswith("http")
