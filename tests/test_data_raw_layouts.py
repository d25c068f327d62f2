"""`chorus shard CARD --raw DIR` with DIR as the official archives unpack (issue 13, raw layouts):
the folder an archive was unpacked into, its inner folder and tonic's data root give the same
shards, for every card; otherwise the error says which folder to pass.

The fixtures are tiny datasets in the real file formats (written by the writers of
test_data_sources.py), laid out as the archives unpack: ``Caltech101.zip`` → ``Caltech101/<class>``
(beside ``Caltech101_annotations/``), ``modelnet40_ply_hdf5_2048.zip`` →
``modelnet40_ply_hdf5_2048/`` whose ``train_files.txt`` names ``data/modelnet40_ply_hdf5_2048/…``,
the CIFAR10-DVS class zips → ``<class>/``, ``DvsGesture.tar.gz`` → ``DvsGesture/``, SHD's
``shd_*.h5.gz`` → ``shd_*.h5``; tonic keeps them under ``NCALTECH101/``, ``CIFAR10DVS/``, ``SHD/``.
"""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from chorus.data import DataError, read_manifest, shard

from test_data_sources import (random_events, write_aedat2, write_aedat31,
                               write_ncaltech_bin)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def card(name):
    return os.path.join(ROOT, "datasets", name)


def classes_of(name):
    with open(card(name)) as f:
        return yaml.safe_load(f)["classes"]


def cli_shard(card_path, raw, out):
    proc = subprocess.run([sys.executable, "-m", "chorus.cli", "shard", card_path, "--raw",
                           str(raw), "--out", str(out), "--workers", "1", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return read_manifest(str(out))


def shard_bytes(folder):
    return {n: open(os.path.join(folder, n), "rb").read()
            for n in sorted(os.listdir(folder)) if n.endswith(".tar")}


def test_ncaltech101_unpacked_folder_inner_folder_and_tonic_root(tmp_path):
    rng = np.random.default_rng(0)
    unpacked = tmp_path / "unpacked"
    for cls in classes_of("ncaltech101.yaml") + ["BACKGROUND_Google"]:
        for i in (1, 2):
            (unpacked / "Caltech101" / cls).mkdir(parents=True, exist_ok=True)
            x, y, t, p = random_events(rng, 20, width=200, height=150)
            write_ncaltech_bin(unpacked / "Caltech101" / cls / f"image_{i:04d}.bin", x, y,
                               np.sort(t % (1 << 23)), p)
            (unpacked / "Caltech101_annotations" / cls).mkdir(parents=True, exist_ok=True)
            (unpacked / "Caltech101_annotations" / cls / f"annotation_{i:04d}.bin").write_bytes(
                bytes(range(40)))                    # not events: must not be picked
    (unpacked / "ReadMe(Caltech101)-SINAPSE-G.txt").write_text("readme\n")
    tonic_root = tmp_path / "tonic"
    shutil.copytree(unpacked / "Caltech101", tonic_root / "NCALTECH101" / "Caltech101")
    outer = cli_shard(card("ncaltech101.yaml"), unpacked, tmp_path / "a")
    inner = cli_shard(card("ncaltech101.yaml"), unpacked / "Caltech101", tmp_path / "b")
    assert outer["splits"]["train"]["num_samples"] == 200
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    shard(card("ncaltech101.yaml"), str(tonic_root), str(tmp_path / "c"), progress=False)
    assert shard_bytes(tmp_path / "c") == shard_bytes(tmp_path / "a")
    assert inner["stats"]["raw_bytes_per_event"] == outer["stats"]["raw_bytes_per_event"] == 5


def write_modelnet_h5(folder, rng):
    folder.mkdir(parents=True)
    for name, n in (("ply_data_train0.h5", 6), ("ply_data_test0.h5", 3)):
        with h5py.File(folder / name, "w") as f:
            f["data"] = rng.normal(size=(n, 2048, 3)).astype(np.float32)
            f["label"] = rng.integers(0, 40, (n, 1)).astype(np.uint8)
    for split in ("train", "test"):
        (folder / f"{split}_files.txt").write_text(
            f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n")
    (folder / "shape_names.txt").write_text("\n".join(classes_of("modelnet40.yaml")) + "\n")


def test_modelnet40_h5_unpacked_folder_inner_folder_and_pointnet_data_folder(tmp_path):
    rng = np.random.default_rng(1)
    unpacked = tmp_path / "unpacked"
    write_modelnet_h5(unpacked / "modelnet40_ply_hdf5_2048", rng)
    repo = tmp_path / "pointnet"                    # PointNet's own place: data/modelnet40_…
    shutil.copytree(unpacked, repo / "data")
    outer = cli_shard(card("modelnet40.yaml"), unpacked, tmp_path / "a")
    cli_shard(card("modelnet40.yaml"), unpacked / "modelnet40_ply_hdf5_2048", tmp_path / "b")
    cli_shard(card("modelnet40.yaml"), repo, tmp_path / "c")
    assert outer["splits"]["test"]["num_samples"] == 3
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b") == shard_bytes(tmp_path / "c")


def test_modelnet_text_cifar10dvs_dvsgesture_and_shd_as_unpacked(tmp_path):
    rng = np.random.default_rng(2)
    # ModelNet40 text: modelnet40_normal_resampled.zip -> modelnet40_normal_resampled/
    text = tmp_path / "mn" / "modelnet40_normal_resampled"
    classes = classes_of("modelnet40-text.yaml")
    text.mkdir(parents=True)
    (text / "modelnet40_shape_names.txt").write_text("\n".join(classes) + "\n")
    (text / "modelnet40_train.txt").write_text("airplane_0001\nbed_0001\n")
    (text / "modelnet40_test.txt").write_text("airplane_0627\n")
    for shape_id in ("airplane_0001", "bed_0001", "airplane_0627"):
        (text / shape_id.rsplit("_", 1)[0]).mkdir(exist_ok=True)
        np.savetxt(text / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt",
                   rng.normal(size=(1100, 6)), delimiter=",", fmt="%.6f")
    # CIFAR10-DVS original .aedat: the ten class zips unpack to <class>/
    c10 = tmp_path / "c10"
    for cls in classes_of("cifar10dvs-aedat.yaml"):
        (c10 / "extracted" / cls).mkdir(parents=True)
        for i in range(2):
            write_aedat2(c10 / "extracted" / cls / f"cifar10_{cls}_{i}.aedat",
                         *random_events(rng, 50))
    # DVS128 Gesture: DvsGesture.tar.gz -> DvsGesture/
    gesture = tmp_path / "gesture" / "DvsGesture"
    gesture.mkdir(parents=True)
    for trial in ("user01_fluorescent", "user29_natural"):
        write_aedat31(gesture / f"{trial}.aedat", *random_events(rng, 300))
        (gesture / f"{trial}_labels.csv").write_text(
            "class,startTime_usec,endTime_usec\n1,0,900000\n2,900000,1900000\n")
    (gesture / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (gesture / "trials_to_test.txt").write_text("user29_natural.aedat\n")
    # SHD: gunzipped in place, and tonic's SHD/ root
    shd = tmp_path / "shd" / "SHD"
    shd.mkdir(parents=True)
    for name, n in (("shd_train.h5", 4), ("shd_test.h5", 2)):
        with h5py.File(shd / name, "w") as f:
            times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
            units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
            f["labels"] = rng.integers(0, 20, n).astype(np.uint16)
            for i in range(n):
                times[i] = np.sort(rng.uniform(0, 1.2, 30)).astype(np.float32)
                units[i] = rng.integers(0, 700, 30).astype(np.uint16)
    cases = [("modelnet40-text.yaml", text.parent, text), ("cifar10dvs-aedat.yaml", c10,
             c10 / "extracted"), ("dvsgesture.yaml", gesture.parent, gesture),
             ("shd.yaml", shd.parent, shd)]
    for name, outer, inner in cases:
        a = shard(card(name), str(outer), str(tmp_path / f"{name}-outer"), progress=False)
        shard(card(name), str(inner), str(tmp_path / f"{name}-inner"), progress=False)
        assert sum(s["num_samples"] for s in a["splits"].values()) > 0, name
        assert shard_bytes(tmp_path / f"{name}-outer") == shard_bytes(tmp_path / f"{name}-inner")


def test_cifar10dvs_aedat4_in_tonics_root(tmp_path):
    dv = pytest.importorskip("dv_processing")
    rng = np.random.default_rng(3)
    root = tmp_path / "tonic" / "CIFAR10DVS"
    for cls in classes_of("cifar10dvs.yaml"):
        (root / cls).mkdir(parents=True)
        x, y, t, p = random_events(rng, 40)
        store = dv.EventStore()
        for e in zip(t.tolist(), x.tolist(), y.tolist(), p.tolist()):
            store.push_back(e[0], e[1], e[2], bool(e[3]))
        writer = dv.io.MonoCameraWriter(str(root / cls / f"{cls}_0.aedat4"),
                                        dv.io.MonoCameraWriter.EventOnlyConfig("DVS128", (128, 128)))
        writer.writeEvents(store)
        del writer
    a = shard(card("cifar10dvs.yaml"), str(tmp_path / "tonic"), str(tmp_path / "a"), progress=False)
    shard(card("cifar10dvs.yaml"), str(root), str(tmp_path / "b"), progress=False)
    assert sum(s["num_samples"] for s in a["splits"].values()) == 10
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")


def test_errors_say_which_folder_to_pass(tmp_path):
    archives = tmp_path / "downloads"
    archives.mkdir()
    (archives / "shd_train.h5.gz").write_bytes(b"\x1f\x8b")
    (archives / "shd_test.h5.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(DataError) as info:
        shard(card("shd.yaml"), str(archives), str(tmp_path / "o"), progress=False)
    message = str(info.value)
    assert "shd_train.h5 and shd_test.h5" in message and "pass the folder" in message
    assert "shd_train.h5.gz" in message and "unpack them first" in message
    twice = tmp_path / "twice"
    for copy in ("a", "b"):
        write_modelnet_h5(twice / copy / "modelnet40_ply_hdf5_2048", np.random.default_rng(0))
    with pytest.raises(DataError, match=r"several folders hold train_files.txt and test_files.txt"
                                        r": a/modelnet40_ply_hdf5_2048, b/modelnet40_ply_hdf5_2048"):
        shard(card("modelnet40.yaml"), str(twice), str(tmp_path / "o2"), progress=False)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()   # nothing made
