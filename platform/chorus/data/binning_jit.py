"""Compiled event binning (numba): the loop behind :func:`chorus.data.binning.batch_event_frames`.

One pass over a sample's events adds 1 to ``out[frame, b, p, lut_y[y], lut_x[x]]``, with tonic's
frame conventions (docs/method.md "Shards"; see :mod:`chorus.data.binning`). Compiled on first use and
cached on disk; ``available()`` is False where numba is missing, and the numpy path is used.
The kernel first checks every event (coordinates on the sensor, polarity 0/1) and adds nothing
if one is off; the caller turns that into a clear error.
"""
from __future__ import annotations

import os

_kernel = None
_tried = False


def _build():
    import numba

    @numba.njit(cache=True, nogil=True)
    def bin_sample(x, y, t, p, lut_x, lut_y, out, b, count_mode):
        """Add one sample's events to ``out[:, b]``; -1, or the index of the first event off the
        sensor (or with polarity not 0/1), in which case nothing was added."""
        T = out.shape[0]
        n = t.shape[0]
        width = lut_x.shape[0]
        height = lut_y.shape[0]
        for i in range(n):
            if x[i] < 0 or x[i] >= width or y[i] < 0 or y[i] >= height or p[i] < 0 or p[i] > 1:
                return i
        if n == 0:
            return -1
        if count_mode:
            per_bin = n // T
            if per_bin == 0:
                return -1
            for i in range(per_bin * T):
                out[i // per_bin, b, p[i], lut_y[y[i]], lut_x[x[i]]] += 1.0
        else:
            t0 = numba.int64(t[0])
            window = (numba.int64(t[n - 1]) - t0) // T
            if window == 0:
                return -1
            for i in range(n):
                frame = (numba.int64(t[i]) - t0) // window
                if frame < T:
                    out[frame, b, p[i], lut_y[y[i]], lut_x[x[i]]] += 1.0
        return -1

    return bin_sample


def kernel():
    """The compiled function, or None without numba (or with CHORUS_NO_JIT=1)."""
    global _kernel, _tried
    if not _tried:
        _tried = True
        if os.environ.get("CHORUS_NO_JIT") != "1":
            try:
                _kernel = _build()
            except ImportError:
                _kernel = None
    return _kernel


def warm_up(sensor_size) -> None:
    """Compile (or load) the kernel for the shard dtypes of this sensor before the reader threads
    start, so that they do not all compile it at once (and any process forked later inherits it)."""
    import numpy as np

    from chorus.data.records import event_dtype

    compiled = kernel()
    if compiled is None:
        return
    events = np.zeros(4, dtype=event_dtype(sensor_size, 0))
    out = np.zeros((1, 1, 2, 1, 1), dtype=np.float32)
    lut = np.zeros(max(int(sensor_size[0]), int(sensor_size[1])), dtype=np.int64)
    events["x"], events["y"] = 0, 0
    for count_mode in (True, False):
        compiled(events["x"], events["y"], events["t"], events["p"], lut, lut, out, 0, count_mode)
