"""One sample in a shard (docs/method.md "Shards"): encode, decode and validate its payload.

A sample is a WebDataset group of files sharing a key: the payload (``events.npy``, ``spikes.npy``,
``points.npy`` or ``frames.npy``), ``cls`` (the label as decimal text) and ``json`` (source file and
original index). Events are stored as a structured array with the narrowest dtypes the sensor allows:
x/y in uint8 up to 256 pixels (uint16 beyond), t in µs as uint32 when it fits (int64 otherwise), p as
uint8. Validation is shared by the writer (naming the raw file) and the reader (naming the shard).
"""
from __future__ import annotations

import ast
import functools
import io
import json
import re

import numpy as np

from chorus.data.errors import DataError

PAYLOAD_KEY = {"events": "events.npy", "spikes": "spikes.npy", "points": "points.npy",
               "frames": "frames.npy"}


def narrow_uint(max_value: int) -> np.dtype:
    """The narrowest unsigned integer dtype holding 0..max_value."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def event_dtype(sensor_size, t_max: int) -> np.dtype:
    """Structured dtype (x, y, t, p) for a sensor ``[W, H, P]`` and timestamps up to ``t_max`` µs."""
    width, height = int(sensor_size[0]), int(sensor_size[1])
    t_type = np.dtype(np.uint32) if 0 <= t_max <= np.iinfo(np.uint32).max else np.dtype(np.int64)
    return np.dtype([("x", narrow_uint(width - 1)), ("y", narrow_uint(height - 1)),
                     ("t", t_type), ("p", np.uint8)])


def compact_events(events: np.ndarray, sensor_size, where: str) -> np.ndarray:
    """Validate raw events (any x, y, t, p dtypes) and return them in the compact dtype, sorted by t."""
    check_events(events, sensor_size, where=where, key=None, signed_polarity=True)
    t = events["t"].astype(np.int64)
    order = np.argsort(t, kind="stable") if np.any(np.diff(t) < 0) else None
    out = np.empty(len(events), dtype=event_dtype(sensor_size, int(t.max()) if len(t) else 0))
    if int(t.min()) < 0:
        raise DataError(f"negative timestamp {int(t.min())}", where=where)
    for name in ("x", "y", "t", "p"):
        column = events[name] if order is None else events[name][order]
        out[name] = column.astype(np.int64) if name != "p" else (column.astype(np.int64) > 0)
    return out


def check_event_fields(events: np.ndarray, *, where: str, key: str | None) -> None:
    """Raise :class:`DataError` for missing fields or an empty stream."""
    names = events.dtype.names or ()
    for field in ("x", "y", "t", "p"):
        if field not in names:
            raise DataError(f"events have no field {field!r} (fields: {names})", where=where, key=key)
    if len(events) == 0:
        raise DataError("empty event stream", where=where, key=key)


def check_events(events: np.ndarray, sensor_size, *, where: str, key: str | None,
                 signed_polarity: bool = False) -> None:
    """Raise :class:`DataError` for missing fields, an empty stream, events outside the sensor or
    polarity not 0/1. ``signed_polarity`` (raw files at shard time only, which are stored as
    ``p > 0``) also accepts -1; shards hold 0/1, as the reader and the binning kernel require."""
    check_event_fields(events, where=where, key=key)
    width, height = int(sensor_size[0]), int(sensor_size[1])
    x, y, p = events["x"], events["y"], events["p"]
    inside = (int(x.max()) < width and int(y.max()) < height
              and (x.dtype.kind == "u" or int(x.min()) >= 0)
              and (y.dtype.kind == "u" or int(y.min()) >= 0))
    if not inside:
        x, y = x.astype(np.int64), y.astype(np.int64)
        bad = (x < 0) | (x >= width) | (y < 0) | (y >= height)
        i = int(np.argmax(bad))
        raise DataError(f"{int(bad.sum())} events outside the {width}x{height} sensor "
                        f"(first: index {i}, x={int(x[i])}, y={int(y[i])})", where=where, key=key)
    if int(p.max()) > 1 or int(p.min()) < (-1 if signed_polarity else 0):
        raise DataError(f"polarity values {np.unique(p)[:5].tolist()} are not 0/1",
                        where=where, key=key)


def check_points(points: np.ndarray, *, where: str, key: str | None) -> None:
    """Raise :class:`DataError` for point clouds that are not finite ``[N, 3+]`` float arrays."""
    if points.ndim != 2 or points.shape[1] < 3 or points.shape[0] == 0:
        raise DataError(f"points have shape {points.shape}, expected [N, 3] or [N, 6]",
                        where=where, key=key)
    if not np.isfinite(points).all():
        n = int((~np.isfinite(points)).any(axis=1).sum())
        raise DataError(f"{n} points are NaN or infinite", where=where, key=key)


def check_spikes(spikes: np.ndarray, channels: int, *, where: str, key: str | None) -> None:
    """Raise :class:`DataError` for spike trains with bad fields, units or times."""
    names = spikes.dtype.names or ()
    if "t" not in names or "unit" not in names:
        raise DataError(f"spikes need fields t and unit (fields: {names})", where=where, key=key)
    if len(spikes) == 0:
        raise DataError("empty spike train", where=where, key=key)
    if not np.isfinite(spikes["t"].astype(np.float64)).all():
        raise DataError("spike times are NaN or infinite", where=where, key=key)
    unit = spikes["unit"].astype(np.int64)
    if unit.min() < 0 or unit.max() >= channels:
        raise DataError(f"spike units outside 0..{channels - 1} (max {int(unit.max())})",
                        where=where, key=key)


def encode(kind: str, payload: np.ndarray, label: int, meta: dict) -> dict[str, bytes]:
    """WebDataset member files (without ``__key__``) for one sample."""
    buffer = io.BytesIO()
    np.save(buffer, payload, allow_pickle=False)
    return {PAYLOAD_KEY[kind]: buffer.getvalue(), "cls": str(int(label)).encode(),
            "json": json.dumps(meta, sort_keys=True).encode()}


_SHAPE = re.compile(r"'shape':\s*\(([^)]*)\)")


@functools.lru_cache(maxsize=64)
def _dtype(descr: str) -> np.dtype:
    return np.lib.format.descr_to_dtype(ast.literal_eval(descr))


def load_npy(data: bytes) -> np.ndarray:
    """A read-only array over the bytes of an ``.npy`` file (format 1.0/2.0, C order).

    The same result as ``np.load`` without parsing the whole header each time: the dtype text is
    cached and the shape read with a regular expression; anything unusual goes to ``np.load``."""
    if data[:6] != b"\x93NUMPY" or data[6] not in (1, 2):
        return np.load(io.BytesIO(data), allow_pickle=False)
    if data[6] == 1:
        length, start = int.from_bytes(data[8:10], "little"), 10
    else:
        length, start = int.from_bytes(data[8:12], "little"), 12
    header = data[start:start + length].decode("latin1")
    shape = _SHAPE.search(header)
    if "'fortran_order': False" not in header or shape is None or "'descr': " not in header:
        return np.load(io.BytesIO(data), allow_pickle=False)
    descr = header.split("'descr': ", 1)[1].split(", 'fortran_order'", 1)[0]
    dims = tuple(int(d) for d in shape.group(1).replace(" ", "").split(",") if d)
    dtype = _dtype(descr)
    count = int(np.prod(dims)) if dims else 1
    if dtype.hasobject or len(data) < start + length + count * dtype.itemsize:
        return np.load(io.BytesIO(data), allow_pickle=False)     # raises its own clear error
    array = np.frombuffer(data, dtype=dtype, count=count, offset=start + length)
    return array.reshape(dims)


def decode(kind: str, sample: dict, *, where: str,
           num_classes: int | None = None) -> tuple[np.ndarray, int]:
    """Payload array and label of a sample read back from a shard; names shard and key on errors.
    With ``num_classes`` (the manifest's), a label outside ``0..num_classes-1`` is an error."""
    key = str(sample.get("__key__", "?"))
    payload_key = PAYLOAD_KEY[kind]
    for needed in (payload_key, "cls"):
        if needed not in sample:
            present = sorted(k for k in sample if not k.startswith("__"))
            raise DataError(f"missing key {needed!r} (has {present})", where=where, key=key)
    try:
        payload = load_npy(sample[payload_key])
    except Exception as exc:  # numpy raises several types for broken .npy bytes
        raise DataError(f"{payload_key} is not a readable .npy array ({exc})",
                        where=where, key=key) from exc
    try:
        label = int(sample["cls"].decode() if isinstance(sample["cls"], bytes) else sample["cls"])
    except ValueError as exc:
        raise DataError(f"cls {sample['cls']!r} is not an integer label", where=where,
                        key=key) from exc
    if num_classes is not None and not 0 <= label < int(num_classes):
        raise DataError(f"label {label} outside the manifest's {int(num_classes)} classes "
                        f"(0..{int(num_classes) - 1})", where=where, key=key)
    return payload, label
