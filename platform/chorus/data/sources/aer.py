"""Shared event-camera helpers: the stored event dtype and a jAER AEDAT 2.0 / 3.x reader.

AEDAT 2.0 is a text header then big-endian ``(address, timestamp)`` uint32 pairs. AEDAT 3.x is a
text header then packets: a 28-byte little-endian header (``eventType`` u16, ``eventSource`` u16,
``eventSize``, ``eventTSOffset``, ``eventTSOverflow``, ``eventCapacity``, ``eventNumber``,
``eventValid``, all u32) and ``eventCapacity`` events of ``eventSize`` bytes. Only polarity packets
(type 1) hold DVS events; their 31-bit timestamps are widened with ``eventTSOverflow << 31``, as the
AEDAT 3.1 format and SpikingJelly's ``load_aedat_v3`` do. Other packets (special, IMU, frames…)
are skipped by their size.
"""
from __future__ import annotations

import struct

import numpy as np

from chorus.data.errors import DataError

EVENTS = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
POLARITY = 1
_PACKET = struct.Struct("<HHIIIIII")


def _packets(data: bytes, path: str) -> tuple[np.ndarray, np.ndarray]:
    addresses, times, pos = [], [], 0
    while pos < len(data):
        if len(data) - pos < _PACKET.size:
            raise DataError(f"truncated AEDAT 3 packet header at byte {pos} of the data",
                            where=path)
        etype, _, size, ts_offset, overflow, capacity, _, _ = _PACKET.unpack_from(data, pos)
        pos += _PACKET.size
        length = capacity * size
        if etype == POLARITY:
            if size < 8 or ts_offset + 4 > size:
                raise DataError(f"polarity packet at byte {pos - _PACKET.size} has eventSize "
                                f"{size}, eventTSOffset {ts_offset}", where=path)
            count = min(capacity, (len(data) - pos) // size)   # whole events only, as readers do
            view = np.ndarray((count,), dtype=np.dtype({"names": ["a", "t"],
                                                        "formats": ["<u4", "<u4"],
                                                        "offsets": [0, ts_offset],
                                                        "itemsize": size}),
                              buffer=data, offset=pos)
            addresses.append(view["a"].astype(np.int64))
            times.append(view["t"].astype(np.int64) | (np.int64(overflow) << 31))
        pos += length
    if not addresses:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(addresses), np.concatenate(times)


def read_aer(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``(address, timestamp)`` int64 arrays of the DVS events of an AEDAT 2.0 or 3.x file."""
    from tonic.io import read_aedat_header_from_file

    try:
        version, start, _ = read_aedat_header_from_file(path)
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except Exception as exc:     # tonic's header parser raises plain exceptions on odd headers
        raise DataError(f"unreadable AEDAT file ({type(exc).__name__}: {exc})",
                        where=path) from exc
    if 2 <= version < 3:
        pairs = np.frombuffer(data, dtype=[("a", ">u4"), ("t", ">u4")], count=len(data) // 8)
        return pairs["a"].astype(np.int64), pairs["t"].astype(np.int64)
    if 3 <= version < 4:
        return _packets(data, path)
    raise DataError(f"AEDAT version {version} is not supported (2.0 or 3.x)", where=path)
