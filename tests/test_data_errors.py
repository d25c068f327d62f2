"""Bad input: every problem gives a DataError naming shard and key, or (skip) a warning and a count."""
import io
import os
import tarfile

import numpy as np
import pytest
import webdataset as wds
import yaml

from chorus.data import DataError, make_loader, read_manifest, shard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small(tmp_path, name, **options):
    with open(os.path.join(ROOT, "datasets", name)) as f:
        card = yaml.safe_load(f)
    card["options"].update(options)
    card["split"]["val_fraction"] = 0.0
    out = tmp_path / name.replace(".yaml", "")
    shard(card, None, str(out), progress=False)
    return str(out)


def rewrite(folder, split, change):
    """Rewrite the first shard of ``split`` with ``change(samples)`` applied (a real tar again)."""
    name = read_manifest(folder)["splits"][split]["shards"][0]
    path = os.path.join(folder, name)
    samples = {}
    with tarfile.open(path) as tar:
        for m in tar:
            key, ext = m.name.split(".", 1)
            samples.setdefault(key, {"__key__": key})[ext] = tar.extractfile(m).read()
    samples = list(samples.values())
    change(samples)
    with wds.TarWriter(path, encoder=False) as writer:
        for sample in samples:
            writer.write(sample)
    return path, samples


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture()
def digits(tmp_path):
    return small(tmp_path, "ndigits.yaml", limit=24)


def events_of(sample):
    return np.load(io.BytesIO(sample["events.npy"]))


def outside(samples):
    ev = events_of(samples[2])
    ev["x"][5] = 40
    samples[2]["events.npy"] = npy(ev)


def empty(samples):
    samples[1]["events.npy"] = npy(events_of(samples[1])[:0])


def no_label(samples):
    del samples[3]["cls"]


def broken_npy(samples):
    samples[0]["events.npy"] = b"\x93NUMPY garbage"


@pytest.mark.parametrize("change,message,index", [
    (outside, "events outside the 34x34 sensor", 2),
    (empty, "empty event stream", 1),
    (no_label, "missing key 'cls'", 3),
    (broken_npy, "not a readable .npy", 0)])
def test_bad_sample_names_shard_and_key_or_is_skipped_and_counted(digits, change, message,
                                                                  index):
    path, samples = rewrite(digits, "train", change)
    key = samples[index]["__key__"]
    n = read_manifest(digits)["splits"]["train"]["num_samples"]
    with pytest.raises(DataError) as info:
        list(make_loader(digits, "train", T=2, batch_size=n, workers=0))
    assert message in str(info.value) and path in str(info.value) and key in str(info.value)
    loader = make_loader(digits, "train", T=2, batch_size=n, workers=2, on_error="skip")
    with pytest.warns(UserWarning, match="skipped"):
        batches = list(loader)
    assert len(batches) == 1 and batches[0][0].shape[1] == n - 1
    assert loader.skipped == 1


def test_truncated_tar_is_named_and_skip_counts_the_lost_samples(digits):
    name = read_manifest(digits)["splits"]["train"]["shards"][0]
    path = os.path.join(digits, name)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    n = read_manifest(digits)["splits"]["train"]["num_samples"]
    with pytest.raises(DataError, match="truncated") as info:
        list(make_loader(digits, "train", T=2, batch_size=4))
    assert path in str(info.value)
    loader = make_loader(digits, "train", T=2, batch_size=n, on_error="skip")
    with pytest.warns(UserWarning):
        (x, y), = list(loader)
    assert 0 < loader.skipped < n and x.shape[1] == n - loader.skipped


def test_corrupt_header_in_the_middle_is_not_a_silent_short_epoch(digits):
    name = read_manifest(digits)["splits"]["train"]["shards"][0]
    path = os.path.join(digits, name)
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    with open(path, "r+b") as f:                 # scribble over the 4th member's header
        f.seek(members[3].offset)
        f.write(b"\xff" * 512)
    with pytest.raises(DataError, match="corrupt tar header at byte") as info:
        list(make_loader(digits, "train", T=2, batch_size=2))
    assert path in str(info.value)


def test_nan_points(tmp_path):
    folder = small(tmp_path, "shapes3d.yaml", per_class=2)

    def nan(samples):
        pts = np.load(io.BytesIO(samples[0]["points.npy"]))
        pts[7, 1] = np.nan
        samples[0]["points.npy"] = npy(pts)
    path, samples = rewrite(folder, "train", nan)
    with pytest.raises(DataError, match="1 points are NaN") as info:
        list(make_loader(folder, "train", T=1, batch_size=2))
    assert path in str(info.value) and samples[0]["__key__"] in str(info.value)


def test_raw_events_outside_the_sensor_are_refused_at_shard_time(tmp_path):
    raw = tmp_path / "raw" / "accordion"
    raw.mkdir(parents=True)
    (raw / "image_0001.bin").write_bytes(bytes([250, 10, 0, 0, 5]))   # x = 250 >= 240
    with open(os.path.join(ROOT, "datasets", "ncaltech101.yaml")) as f:
        card = yaml.safe_load(f)
    card["classes"] = ["accordion"]
    with pytest.raises(DataError, match="image_0001.bin.*outside the 240x180 sensor"):
        shard(card, str(tmp_path / "raw"), str(tmp_path / "out"), progress=False)


def test_missing_or_bad_shard_folder(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        make_loader(str(tmp_path), "train", T=2, batch_size=2)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest.json: not valid JSON"):
        make_loader(str(tmp_path), "train", T=2, batch_size=2)


def test_numpy_path_without_numba_gives_the_same_errors(digits, monkeypatch):
    from chorus.data import binning_jit

    monkeypatch.setattr(binning_jit, "kernel", lambda: None)
    path, samples = rewrite(digits, "train", outside)
    with pytest.raises(DataError, match="events outside the 34x34 sensor") as info:
        list(make_loader(digits, "train", T=2, batch_size=4))
    assert path in str(info.value) and samples[2]["__key__"] in str(info.value)
