"""The streaming reader (chorus.data.make_loader) on real shards of the embedded N-Digits set."""
import io
import os
import tarfile

import numpy as np
import pytest
import tonic.transforms as tt
import torch
import yaml

from chorus.data import input_shape, make_loader, read_manifest, shard
from chorus.data.embedded import ndigits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_card(tmp_path, limit):
    with open(os.path.join(ROOT, "datasets", "ndigits.yaml")) as f:
        card = yaml.safe_load(f)
    card["options"]["limit"] = limit
    path = tmp_path / "ndigits-small.yaml"
    path.write_text(yaml.safe_dump(card))
    return str(path)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ndigits")
    out = tmp / "shards"
    shard(small_card(tmp, 150), None, str(out), workers=2, shard_size_mb=0.4, progress=False)
    return str(out)


def tar_samples(folder, split):
    """(json index, events) of every sample in stream order, read with tarfile alone."""
    manifest = read_manifest(folder)
    out = []
    for name in manifest["splits"][split]["shards"]:
        members = {}
        with tarfile.open(os.path.join(folder, name)) as tar:
            for m in tar:
                key, ext = m.name.split(".", 1)
                members.setdefault(key, {})[ext] = tar.extractfile(m).read()
        for key in members:                       # insertion order = tar order
            import json
            meta = json.loads(members[key]["json"])
            out.append((meta["index"], np.load(io.BytesIO(members[key]["events.npy"])),
                        int(members[key]["cls"])))
    return out


def test_events_round_trip_exactly(shards):
    images, labels = ndigits.load_digits_arrays()
    for split in ("train", "val", "test"):
        for index, events, label in tar_samples(shards, split):
            expected = ndigits.generate_sample(images[index], 0, index)
            assert events.dtype == expected.dtype
            np.testing.assert_array_equal(events, expected)
            assert label == labels[index]


def test_eval_frames_equal_tonic_and_two_ranks_two_workers_see_each_sample_once(shards):
    expected = tar_samples(shards, "test")
    to_frame = tt.ToFrame(sensor_size=(34, 34, 2), n_event_bins=4)
    loaders = [make_loader(shards, "test", T=4, size=34, batch_size=4, workers=2, rank=r,
                           world_size=2) for r in range(2)]
    assert len(loaders[0]) == len(loaders[1])
    xs, ys = [], []
    for loader in loaders:
        batches = list(loader)
        assert len(batches) == len(loader)
        for x, y in batches:
            assert x.dtype == torch.float32 and y.dtype == torch.int64
            xs.extend(x.transpose(0, 1))
            ys.extend(y.tolist())
    assert len(xs) == len(expected) == read_manifest(shards)["splits"]["test"]["num_samples"]
    for frame, label, (_, events, expected_label) in zip(xs, ys, expected):
        assert label == expected_label
        ref = to_frame(events.astype([("x", int), ("y", int), ("t", int), ("p", int)]))
        np.testing.assert_array_equal(frame.numpy(), ref)


def test_training_batches_deterministic_equal_across_workers_and_resumable(shards):
    kw = dict(T=3, size=16, batch_size=8, train=True, seed=5, augment=True)
    first = list(make_loader(shards, "train", epoch=0, workers=0, **kw))
    again = list(make_loader(shards, "train", epoch=0, workers=2, **kw))
    other = list(make_loader(shards, "train", epoch=1, workers=0, **kw))
    assert len(first) == read_manifest(shards)["splits"]["train"]["num_samples"] // 8
    assert first[0][0].shape == (3, 8, 2, 16, 16)
    for (x1, y1), (x2, y2) in zip(first, again):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(torch.cat([y for _, y in first]), torch.cat([y for _, y in other]))
    resumed = make_loader(shards, "train", epoch=0, workers=2, start_batch=3, **kw)
    assert len(resumed) == len(first) - 3
    for (x1, _), (x2, _) in zip(first[3:], list(resumed)):
        assert torch.equal(x1, x2)


def test_training_ranks_have_equal_batches_and_disjoint_samples(shards):
    kw = dict(T=2, batch_size=5, train=True, seed=1, world_size=2, workers=2)
    r0 = list(make_loader(shards, "train", rank=0, **kw))
    r1 = list(make_loader(shards, "train", rank=1, **kw))
    assert len(r0) == len(r1) > 0
    keys = lambda batches: {tuple(x[:, i].flatten()[:400].tolist()) for x, _ in batches
                            for i in range(x.shape[1])}
    assert not keys(r0) & keys(r1)


def test_input_shape(shards):
    manifest = read_manifest(shards)
    assert input_shape(manifest, 4, 48) == (2, 48, 48)
    assert input_shape(manifest, 4, None) == (2, 34, 34)
    x, _ = next(iter(make_loader(shards, "val", T=4, size=48, batch_size=2)))
    assert tuple(x.shape[2:]) == input_shape(manifest, 4, 48)


def test_prebinned_frame_shards_equal_reader_binning(shards, tmp_path):
    out = tmp_path / "frames"
    manifest = shard(small_card(tmp_path, 150), None, str(out), frames=4, size=16,
                     shard_size_mb=1, progress=False)
    assert manifest["kind"] == "frames"
    a = list(make_loader(str(out), "test", T=4, size=16, batch_size=16))
    b = list(make_loader(shards, "test", T=4, size=16, batch_size=16))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="pre-binned at T=4"):
        make_loader(str(out), "test", T=5, size=16, batch_size=16)


def test_tar_walker_equals_webdatasets_tarfile_expander(tmp_path):
    """The fast member walker yields what webdataset's tarfile-based expander yields, on a tar in
    webdataset's default (pax) format with a long member name, and skips what is not wanted."""
    import webdataset as wds

    from chorus.data.tarwalk import walk

    path = str(tmp_path / "pax.tar")
    long_key = "deep/" + "k" * 120
    with wds.TarWriter(path) as writer:                  # default: pax headers, float mtimes
        for key in ("a", long_key, "c"):
            writer.write({"__key__": key, "txt": f"text of {key}" * 50, "cls": 3})
    with open(path, "rb") as f:
        expected = [(m["fname"], m["data"]) for m in wds.tariterators.tar_file_iterator(f)]
    got = [(m["fname"], m["data"]) for m in walk(path, {0, 1, 2})]
    assert got == expected and len(got) == 6
    partial = [(m["fname"], m["data"]) for m in walk(path, {1})]
    assert [d is None for _, d in partial] == [True, True, False, False, True, True]
