"""Events and spikes → T frames (DESIGN.md "Shards": binning happens in the reader), vectorised.

Follows tonic's ``ToFrame`` conventions exactly (overlap 0):

- ``mode="count"`` (``n_event_bins=T``): each frame takes ``n // T`` consecutive events; the last
  ``n % T`` events are dropped.
- ``mode="time"`` (``n_time_bins=T``): window ``w = (t[-1] - t[0]) // T`` (integer µs); frame k holds
  events with ``t0 + k·w <= t < t0 + (k+1)·w``; later events are dropped.

Frames are event counts per polarity ``[T, 2, H, W]``. Resizing to ``size`` maps coordinates as
``x·size // W`` (the sum over the covered pixels, like tonic's ``Downsample`` then ``ToFrame``) when
shrinking, and repeats pixels (nearest neighbour) when growing.
"""
from __future__ import annotations

import numpy as np


def event_bins(t: np.ndarray, T: int, mode: str) -> np.ndarray:
    """Frame index of each event (``-1`` = dropped), following tonic's slicers."""
    n = len(t)
    if mode == "count":
        per_bin = n // T
        if per_bin == 0:
            return np.full(n, -1, dtype=np.int64)
        index = np.arange(n, dtype=np.int64) // per_bin
    elif mode == "time":
        t = t.astype(np.int64)
        window = (int(t[-1]) - int(t[0])) // T
        if window == 0:
            return np.full(n, -1, dtype=np.int64)
        index = (t - t[0]) // window
    else:
        raise ValueError(f"bin mode must be 'count' or 'time', got {mode!r}")
    index[index >= T] = -1
    return index


def events_to_frames(events: np.ndarray, sensor_size, T: int, size: int | None = None,
                     mode: str = "count") -> np.ndarray:
    """Counts ``float32 [T, 2, S, S]`` (``[T, 2, H, W]`` when ``size`` is None) from (x, y, t, p)."""
    width, height = int(sensor_size[0]), int(sensor_size[1])
    bins = event_bins(events["t"], T, mode)
    keep = bins >= 0
    x = events["x"][keep].astype(np.int64)
    y = events["y"][keep].astype(np.int64)
    p = (events["p"][keep].astype(np.int64) > 0).astype(np.int64)
    b = bins[keep]
    out_w, out_h = width, height
    if size is not None and size < width:
        x = x * size // width
        out_w = size
    if size is not None and size < height:
        y = y * size // height
        out_h = size
    flat = ((b * 2 + p) * out_h + y) * out_w + x
    frames = np.bincount(flat, minlength=T * 2 * out_h * out_w).astype(np.float32)
    frames = frames.reshape(T, 2, out_h, out_w)
    if size is not None and (size > out_w or size > out_h):
        rows = np.arange(size) * out_h // size if size > out_h else np.arange(out_h)
        cols = np.arange(size) * out_w // size if size > out_w else np.arange(out_w)
        frames = frames[:, :, rows][:, :, :, cols]
    return frames


def spikes_to_bins(spikes: np.ndarray, channels: int, T: int, duration: float) -> np.ndarray:
    """Spike counts ``float32 [T, channels]``: bin k covers ``[k, k+1)·duration/T``; later dropped."""
    t = spikes["t"].astype(np.float64)
    unit = spikes["unit"].astype(np.int64)
    bins = np.floor(t / duration * T).astype(np.int64)
    keep = (bins >= 0) & (bins < T)
    flat = bins[keep] * channels + unit[keep]
    counts = np.bincount(flat, minlength=T * channels).astype(np.float32)
    return counts.reshape(T, channels)
