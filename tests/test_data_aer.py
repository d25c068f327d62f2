"""AEDAT 3.1 packets as real DVS128 Gesture files hold them, against SpikingJelly's ``load_aedat_v3``.

The fixture is written byte by byte from the AEDAT 3.1 layout: packets of other types (a special
event packet, an IMU6 packet with 36-byte events) between polarity packets, and a polarity packet
whose ``eventTSOverflow`` is set. Only polarity events count, with ``overflow << 31`` added.
"""
import ast
import importlib.util
import os
import struct

import numpy as np
import pytest

from chorus.data import DataError, shard
from chorus.data.sources.aer import read_aer
from chorus.data.sources.dvsgesture import DVSGestureSource

from test_data_sources import assert_events, card, stored


def spikingjelly_load_aedat_v3():
    """SpikingJelly's ``load_aedat_v3`` as published (its package imports torchvision, which is not
    installed here, so the function is taken from the module's source and run on its own)."""
    spec = importlib.util.find_spec("spikingjelly")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "utils.py")
    tree = ast.parse(open(path).read())
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "load_aedat_v3"]
    from pathlib import Path
    from typing import Union

    namespace = {"np": np, "struct": struct, "Union": Union, "Path": Path}
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), namespace)
    return namespace["load_aedat_v3"]


def packet(etype, size, overflow, events: bytes, capacity):
    return struct.pack("<HHIIIIII", etype, 1, size, 4, overflow, capacity, capacity,
                       capacity) + events


def polarity(x, y, t, p):
    data = ((x.astype(np.uint32) << 17) | (y.astype(np.uint32) << 2)
            | (p.astype(np.uint32) << 1) | 1)
    body = np.empty(2 * len(x), dtype="<u4")
    body[0::2], body[1::2] = data, t
    return body.tobytes()


def write_mixed_aedat31(path, rng):
    """Polarity packets, a special packet, an IMU6 packet and a polarity packet past a TS overflow."""
    parts = []
    x, y, p = rng.integers(0, 128, 40), rng.integers(0, 128, 40), rng.integers(0, 2, 40)
    t = np.sort(rng.integers(2_000_000_000, 2**31 - 1, 40))
    parts.append(packet(1, 8, 0, polarity(x[:20], y[:20], t[:20], p[:20]), 20))
    # special events (type 0, 8 bytes: data word, timestamp), e.g. a timestamp reset marker
    special = np.array([(5 << 1) | 1, int(t[19]), (2 << 1) | 1, int(t[19]) + 1], dtype="<u4")
    parts.append(packet(0, 8, 0, special.tobytes(), 2))
    # IMU6 events (type 3, 36 bytes each: info, timestamp, 7 floats)
    imu = b"".join(struct.pack("<II7f", 1, int(t[20]), *rng.random(7)) for _ in range(3))
    parts.append(packet(3, 36, 0, imu, 3))
    parts.append(packet(1, 8, 0, polarity(x[20:30], y[20:30], t[20:30], p[20:30]), 10))
    # timestamps wrapped past 2**31: the packet header carries eventTSOverflow = 1
    t2 = np.sort(rng.integers(0, 1_000_000, 10))
    parts.append(packet(1, 8, 1, polarity(x[30:], y[30:], t2, p[30:]), 10))
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n")
        f.write(b"".join(parts))


def test_aedat31_packet_headers_match_spikingjelly(tmp_path):
    path = tmp_path / "user01_fluorescent.aedat"
    write_mixed_aedat31(path, np.random.default_rng(5))
    reference = spikingjelly_load_aedat_v3()(str(path))
    assert len(reference["t"]) == 40 and reference["t"].max() >= 2**31
    source = DVSGestureSource(card("dvsgesture.yaml"), str(tmp_path))
    events = source.load({"source": path.name, "start": 0, "end": 2**40})
    assert_events(events, reference["x"], reference["y"], reference["t"], reference["p"])


def test_dvsgesture_shards_samples_past_the_ts_overflow(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_mixed_aedat31(raw / "user01_fluorescent.aedat", np.random.default_rng(6))
    ref = spikingjelly_load_aedat_v3()(str(raw / "user01_fluorescent.aedat"))
    rows = [(2, 0, 2**31), (5, 2**31, 2**31 + 1_000_000)]
    (raw / "user01_fluorescent_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    (raw / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (raw / "trials_to_test.txt").write_text("")
    shard(card("dvsgesture.yaml", split={"policy": "official", "val_fraction": 0.0}), str(raw),
          str(tmp_path / "out"), progress=False)
    got = stored(str(tmp_path / "out"))
    for row, (cls, start, end) in enumerate(rows):
        m = (ref["t"] >= start) & (ref["t"] < end)
        assert m.sum() in (30, 10)
        events, label = got[("user01_fluorescent.aedat", row)]
        assert_events(events, ref["x"][m], ref["y"][m], ref["t"][m], ref["p"][m])
        assert label == cls - 1


def test_truncated_packet_header_is_a_data_error(tmp_path):
    path = tmp_path / "bad.aedat"
    write_mixed_aedat31(path, np.random.default_rng(7))
    with open(path, "ab") as f:
        f.write(b"\x01\x00\x01\x00")
    with pytest.raises(DataError, match="truncated AEDAT 3 packet header"):
        read_aer(str(path))
