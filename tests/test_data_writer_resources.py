"""``shard`` releases what it opened: no source kept after a serial run, no open h5 file or
``.tar.tmp`` stream after a failing source; an h5 file failing its key check is not cached."""
import os

import h5py
import numpy as np
import pytest

from chorus.data import DataError, shard
from chorus.data import writer
from chorus.data.cards import load_card
from chorus.data.sources.modelnet import ModelNetH5Source

from test_data_sources import card


def open_files():
    """Paths of this process's open file descriptors (the kernel's own table)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return out


def write_shd(raw, bad_test_sample=None):
    rng = np.random.default_rng(8)
    raw.mkdir()
    for name, n in (("shd_train.h5", 6), ("shd_test.h5", 4)):
        with h5py.File(raw / name, "w") as f:
            times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
            units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
            f.create_dataset("labels", data=rng.integers(0, 3, n).astype(np.uint16))
            for i in range(n):
                k = 30
                times[i] = np.sort(rng.uniform(0, 1.3, k)).astype(np.float16)
                # a sample with one unit fewer than times: the source raises DataError on it
                short = name == "shd_test.h5" and i == bad_test_sample
                units[i] = rng.integers(0, 700, k - 1 if short else k).astype(np.uint16)


def test_serial_shard_keeps_no_source_and_no_h5_handle(tmp_path):
    raw = tmp_path / "raw"
    write_shd(raw)
    shard(card("shd.yaml", split={"policy": "official", "val_fraction": 0.0}), str(raw),
          str(tmp_path / "out"), workers=1, progress=False)
    assert writer._STATE == {}
    assert not [p for p in open_files() if p.startswith(str(raw))]


def test_failing_source_leaves_no_open_file(tmp_path):
    raw = tmp_path / "raw"
    write_shd(raw, bad_test_sample=1)          # train shard done, test shard open at the failure
    out = tmp_path / "out"
    before = len(open_files())
    with pytest.raises(DataError, match="29 units"):
        shard(card("shd.yaml", split={"policy": "official", "val_fraction": 0.0}), str(raw),
              str(out), workers=1, progress=False)
    leaked = [p for p in open_files() if p.startswith((str(raw), str(out)))]
    assert leaked == []
    assert len(open_files()) <= before
    assert writer._STATE == {}
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    assert "train-000000.tar" in os.listdir(out)   # finished shards stay for a resume


def test_modelnet_h5_failing_key_check_is_not_cached(tmp_path):
    with h5py.File(tmp_path / "ply_data_train0.h5", "w") as f:
        f["data"] = np.zeros((2, 4, 3), np.float32)          # no "label"
    source = ModelNetH5Source(load_card(card("modelnet40.yaml")), str(tmp_path))
    for _ in range(2):                                         # a retry must check again
        with pytest.raises(DataError, match="missing dataset 'label'"):
            source._open("ply_data_train0.h5")
    assert source._files == {}
    assert not [p for p in open_files() if p.startswith(str(tmp_path))]
