"""Sources on small fixtures written in the real raw formats, sharded and read back exactly.

AEDAT4 is written by dv-processing (the iniVation library); AEDAT 2.0 / 3.1, N-Caltech101 binaries,
SHD and ModelNet files are written byte by byte / with h5py from their published layouts.
"""
import io
import json
import os
import struct
import tarfile

import h5py
import numpy as np
import pytest
import tonic.transforms as tt
import yaml

from chorus.data import DataError, make_loader, read_manifest, shard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def card(name, **changes):
    with open(os.path.join(ROOT, "datasets", name)) as f:
        data = yaml.safe_load(f)
    data.update(changes)
    return data


def stored(folder):
    """{(source, index or sample): (payload, label)} of every sample of a shard set."""
    manifest = read_manifest(folder)
    out = {}
    for info in manifest["splits"].values():
        for name in info["shards"]:
            members = {}
            with tarfile.open(os.path.join(folder, name)) as tar:
                for m in tar:
                    key, ext = m.name.split(".", 1)
                    members.setdefault(key, {})[ext] = tar.extractfile(m).read()
            for files in members.values():
                meta = json.loads(files["json"])
                payload = [v for k, v in files.items() if k.endswith(".npy")][0]
                out[(meta["source"], meta.get("sample", meta["index"]))] = (
                    np.load(io.BytesIO(payload)), int(files["cls"]))
    return out


def random_events(rng, n, width=128, height=128):
    t = np.sort(rng.integers(0, 2_000_000, n))
    return (rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))


def assert_events(stored_events, x, y, t, p):
    for name, values in (("x", x), ("y", y), ("t", t), ("p", p)):
        np.testing.assert_array_equal(stored_events[name].astype(np.int64), values, err_msg=name)


def test_cifar10dvs_aedat4_written_by_dv_processing(tmp_path):
    dv = pytest.importorskip("dv_processing")
    rng = np.random.default_rng(0)
    classes = ["airplane", "automobile", "bird"]
    written = {}
    for cls in classes:
        (tmp_path / "raw" / cls).mkdir(parents=True)
        for i in range(4):
            x, y, t, p = random_events(rng, 300)
            store = dv.EventStore()
            for e in zip(t.tolist(), x.tolist(), y.tolist(), p.tolist()):
                store.push_back(e[0], e[1], e[2], bool(e[3]))
            config = dv.io.MonoCameraWriter.EventOnlyConfig("DVS128", (128, 128))
            writer = dv.io.MonoCameraWriter(str(tmp_path / "raw" / cls / f"{cls}_{i}.aedat4"),
                                            config)
            writer.writeEvents(store)
            del writer
            written[(os.path.join(cls, f"{cls}_{i}.aedat4"), i)] = (x, y, t, p, classes.index(cls))
    manifest = shard(card("cifar10dvs.yaml", classes=classes,
                          split={"policy": "3:1-first", "val_fraction": 0.0}),
                     str(tmp_path / "raw"), str(tmp_path / "out"), workers=2, progress=False)
    assert [manifest["splits"][s]["num_samples"] for s in ("train", "val", "test")] == [9, 0, 3]
    got = stored(str(tmp_path / "out"))
    assert set(got) == set(written)
    for key, (x, y, t, p, label) in written.items():
        assert_events(got[key][0], x, y, t, p)
        assert got[key][1] == label
        assert got[key][0].dtype["x"] == np.uint8 and got[key][0].dtype["t"] == np.uint32
    # "3:1-first": the first three files of each class (natural order) train, the last one tests
    test_x, _ = next(iter(make_loader(str(tmp_path / "out"), "test", T=1, batch_size=3)))
    for i, cls in enumerate(classes):
        x, y, t, p, _ = written[(os.path.join(cls, f"{cls}_3.aedat4"), 3)]
        assert test_x[0, i].sum() == len(x)


def write_aedat2(path, x, y, t, p):
    """jAER AEDAT 2.0 DVS128 file: '#' header lines, big-endian (address, timestamp) pairs."""
    address = (y.astype(np.uint32) << 8) | (x.astype(np.uint32) << 1) | p.astype(np.uint32)
    body = np.empty(2 * len(x), dtype=">u4")
    body[0::2], body[1::2] = address, t
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
                b"# Data format is int32 address, int32 timestamp (8 bytes total)\r\n")
        f.write(body.tobytes())


def spikingjelly_cifar10dvs_reader():
    """SpikingJelly's own ``_load_origin_data`` for CIFAR10-DVS, run as published.

    Its module imports torchvision (a CUDA build that cannot load next to CPU torch), so the reader's
    functions and constants are taken from the module's source and run on their own."""
    import ast
    import importlib.util

    import loguru

    spec = importlib.util.find_spec("spikingjelly")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "cifar10_dvs.py")
    tree = ast.parse(open(path).read())
    wanted = {"_read_bits", "_skip_header", "_load_raw_events", "_parse_raw_address",
              "_load_events", "_load_origin_data"}
    body = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in wanted:
            body.append(node)
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            if all(t.id.endswith(("_mask", "_shift")) or t.id == "EVT_DVS" for t in node.targets):
                body.append(node)
    from pathlib import Path
    from typing import Union

    namespace = {"np": np, "logger": loguru.logger, "Union": Union, "Path": Path}
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), namespace)
    assert wanted <= set(namespace)
    return namespace["_load_origin_data"]


def test_cifar10dvs_original_aedat_matches_spikingjelly(tmp_path):
    load_origin_data = spikingjelly_cifar10dvs_reader()
    rng = np.random.default_rng(1)
    classes = card("cifar10dvs-aedat.yaml")["classes"]
    for cls in classes:
        (tmp_path / "raw" / cls).mkdir(parents=True)
        for i in range(2):
            write_aedat2(tmp_path / "raw" / cls / f"cifar10_{cls}_{i}.aedat",
                         *random_events(rng, 200))
    shard(card("cifar10dvs-aedat.yaml", split={"policy": "1:1-first", "val_fraction": 0.0}),
          str(tmp_path / "raw"), str(tmp_path / "out"), progress=False)
    got = stored(str(tmp_path / "out"))
    assert len(got) == 20
    for (source, _), (events, label) in got.items():
        reference = load_origin_data(str(tmp_path / "raw" / source))
        assert_events(events, reference["x"], reference["y"], reference["t"], reference["p"])
        assert classes[label] == source.split("/")[0]


def write_aedat31(path, x, y, t, p, packet=150):
    """AEDAT 3.1: text header, then packets (28-byte header + 8-byte polarity events)."""
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n")
        for start in range(0, len(x), packet):
            sl = slice(start, start + packet)
            n = len(x[sl])
            f.write(struct.pack("<HHIIIIII", 1, 1, 8, 4, 0, n, n, n))
            data = ((x[sl].astype(np.uint32) << 17) | (y[sl].astype(np.uint32) << 2)
                    | (p[sl].astype(np.uint32) << 1) | 1)
            body = np.empty(2 * n, dtype="<u4")
            body[0::2], body[1::2] = data, t[sl]
            f.write(body.tobytes())


def test_dvsgesture_cut_by_labels_csv_with_official_split(tmp_path):
    rng = np.random.default_rng(2)
    raw = tmp_path / "raw"
    raw.mkdir()
    trials = {"user01_fluorescent": "train", "user02_led": "train", "user29_natural": "test"}
    expected = {}
    for trial in trials:
        x, y, t, p = random_events(rng, 1000)
        write_aedat31(raw / f"{trial}.aedat", x, y, t, p)
        rows = [(3, 100_000, 600_000), (1, 700_000, 1_200_000), (11, 1_300_000, 1_900_000)]
        (raw / f"{trial}_labels.csv").write_text(
            "class,startTime_usec,endTime_usec\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
        for row, (cls, start, end) in enumerate(rows):
            m = (t >= start) & (t < end)
            expected[(f"{trial}.aedat", row)] = (x[m], y[m], t[m], p[m], cls - 1)
    (raw / "trials_to_train.txt").write_text("user01_fluorescent.aedat\nuser02_led.aedat\n")
    (raw / "trials_to_test.txt").write_text("user29_natural.aedat\n")
    manifest = shard(card("dvsgesture.yaml", split={"policy": "official", "val_fraction": 0.0}),
                     str(raw), str(tmp_path / "out"), workers=2, progress=False)
    assert manifest["splits"]["test"]["num_samples"] == 3
    assert manifest["splits"]["train"]["num_samples"] == 6
    got = stored(str(tmp_path / "out"))
    assert set(got) == set(expected)
    for key, (x, y, t, p, label) in expected.items():
        assert_events(got[key][0], x, y, t, p)
        assert got[key][1] == label
    # the reader's 48x48 frames equal tonic's Downsample + ToFrame on the same events
    to_frame = tt.Compose([tt.Downsample(spatial_factor=0.375),
                           tt.ToFrame(sensor_size=(48, 48, 2), n_time_bins=4)])
    (x, y), = list(make_loader(str(tmp_path / "out"), "test", T=4, size=48, batch_size=3,
                                bins="time"))
    for i, row in enumerate(range(3)):          # stream order = csv row order
        ex, ey, et, ep, label = expected[("user29_natural.aedat", row)]
        events = np.zeros(len(ex), dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
        events["x"], events["y"], events["t"], events["p"] = ex, ey, et, ep
        np.testing.assert_array_equal(x[:, i].numpy(), to_frame(events))
        assert int(y[i]) == label


def write_ncaltech_bin(path, x, y, t, p):
    """40-bit ATIS events: x, y, p<<7 | t[22:16], t[15:8], t[7:0]."""
    raw = np.zeros((len(x), 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    path.write_bytes(raw.tobytes())


def test_ncaltech101_binaries_and_a_truncated_file(tmp_path):
    rng = np.random.default_rng(3)
    raw = tmp_path / "raw"
    expected = {}
    for label, cls in enumerate(["accordion", "airplanes"]):
        (raw / cls).mkdir(parents=True)
        for i in range(1, 4):
            x, y, t, p = random_events(rng, 250, width=233, height=170)
            t = t % (1 << 23)
            t.sort()
            write_ncaltech_bin(raw / cls / f"image_{i:04d}.bin", x, y, t, p)
            expected[(os.path.join(cls, f"image_{i:04d}.bin"), i - 1)] = (x, y, t, p, label)
    (raw / "BACKGROUND_Google").mkdir()
    write_ncaltech_bin(raw / "BACKGROUND_Google" / "image_0001.bin", *random_events(rng, 5))
    the_card = card("ncaltech101.yaml", classes=["accordion", "airplanes"],
                    split={"policy": "2:1-first", "val_fraction": 0.0})
    shard(the_card, str(raw), str(tmp_path / "out"), progress=False)
    got = stored(str(tmp_path / "out"))
    assert set(got) == set(expected)
    for key, (x, y, t, p, label) in expected.items():
        assert_events(got[key][0], x, y, t, p)
        assert got[key][1] == label
    broken = raw / "airplanes" / "image_0002.bin"
    broken.write_bytes(broken.read_bytes()[:-3])
    with pytest.raises(DataError, match="image_0002.bin.*5-byte events"):
        shard(the_card, str(raw), str(tmp_path / "out2"), progress=False)


def test_shd_h5_round_trip_and_binning(tmp_path):
    rng = np.random.default_rng(4)
    raw = tmp_path / "raw"
    raw.mkdir()
    written = {}
    for name, n in (("shd_train.h5", 12), ("shd_test.h5", 5)):
        with h5py.File(raw / name, "w") as f:
            times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
            units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
            labels = rng.integers(0, 3, n)
            f.create_dataset("labels", data=labels.astype(np.uint16))
            for i in range(n):
                k = int(rng.integers(50, 400))
                tt_ = np.sort(rng.uniform(0, 1.3, k)).astype(np.float16)
                uu = rng.integers(0, 700, k).astype(np.uint16)
                times[i], units[i] = tt_, uu
                written[(name, i)] = (tt_, uu, int(labels[i]))
    out = str(tmp_path / "out")
    manifest = shard(card("shd.yaml", split={"policy": "official", "val_fraction": 0.25}),
                     str(raw), out, progress=False)
    assert manifest["splits"]["test"]["num_samples"] == 5
    assert manifest["splits"]["val"]["num_samples"] > 0
    got = stored(out)
    assert set(got) == set(written)
    for key, (t, u, label) in written.items():
        assert got[key][0]["t"].dtype == np.float16
        np.testing.assert_array_equal(got[key][0]["t"], t)
        np.testing.assert_array_equal(got[key][0]["unit"], u)
        assert got[key][1] == label
    (x, y), = list(make_loader(out, "test", T=7, batch_size=5))
    assert x.shape == (7, 5, 700)
    for i in range(5):
        key = ("shd_test.h5", i)
        t, u, label = written[key]
        ref = np.zeros((7, 700), dtype=np.float32)
        for ti, ui in zip(t.astype(np.float64), u):
            if int(ti / 1.4 * 7) < 7:
                ref[int(ti / 1.4 * 7), ui] += 1
        np.testing.assert_array_equal(x[:, i].numpy(), ref)
        assert int(y[i]) == label


def test_modelnet_h5_and_text_layouts(tmp_path):
    rng = np.random.default_rng(5)
    raw = tmp_path / "h5"
    raw.mkdir()
    written = {}
    for name, n in (("ply_data_train0.h5", 8), ("ply_data_test0.h5", 4)):
        data = rng.normal(size=(n, 2048, 3)).astype(np.float32)
        labels = rng.integers(0, 40, (n, 1)).astype(np.uint8)
        with h5py.File(raw / name, "w") as f:
            f["data"], f["label"] = data, labels
        for i in range(n):
            written[(name, i)] = (data[i], int(labels[i, 0]))
    (raw / "train_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\n")
    (raw / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n")
    out = str(tmp_path / "out_h5")
    shard(card("modelnet40.yaml", split={"policy": "official", "val_fraction": 0.0}), str(raw),
          out, progress=False)
    got = stored(out)
    assert set(got) == set(written)
    for key, (points, label) in written.items():
        np.testing.assert_array_equal(got[key][0], points)
        assert got[key][1] == label
    x, y = next(iter(make_loader(out, "test", T=4, batch_size=4)))
    assert x.shape == (4, 1024, 3)
    for i in range(4):
        np.testing.assert_array_equal(x[i].numpy(), written[("ply_data_test0.h5", i)][0][:1024])

    text = tmp_path / "text"
    classes = ["bathtub", "bed"]
    (text / "bathtub").mkdir(parents=True)
    (text / "bed").mkdir()
    (text / "modelnet10_shape_names.txt").write_text("bathtub\nbed\n")
    (text / "modelnet10_train.txt").write_text("bathtub_0001\nbed_0001\nbed_0002\n")
    (text / "modelnet10_test.txt").write_text("bathtub_0107\n")
    values = {}
    for shape_id in ("bathtub_0001", "bed_0001", "bed_0002", "bathtub_0107"):
        cloud = rng.normal(size=(1500, 6)).astype(np.float32)
        cls = shape_id.rsplit("_", 1)[0]
        np.savetxt(text / cls / f"{shape_id}.txt", cloud, delimiter=",", fmt="%.6f")
        values[shape_id] = np.loadtxt(text / cls / f"{shape_id}.txt", delimiter=",",
                                      dtype=np.float32)
    out = str(tmp_path / "out_text")
    shard(card("modelnet10.yaml", classes=classes, split={"policy": "official",
                                                           "val_fraction": 0.0}),
          str(text), out, progress=False)
    got = stored(out)
    assert len(got) == 4
    for (source, _), (points, label) in got.items():
        shape_id = os.path.basename(source)[:-4]
        assert points.shape == (1024, 6)
        np.testing.assert_array_equal(points, values[shape_id][:1024])
        assert classes[label] == shape_id.rsplit("_", 1)[0]
