"""What the embedded generators share: the event record (x, y, t, p) and the last step of every
recording -- uniform background noise added, times clipped to the recording, events sorted by time
(docs/method.md, "Data flow": raw events are (x, y, t, p) rows in time order)."""
from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype([("x", np.uint8), ("y", np.uint8), ("t", np.uint32), ("p", np.uint8)])


def sorted_events(xs: list, ys: list, ts: list, ps: list, duration: float, sensor: int, rng=None,
                  noise_rate_hz: float = 0.0) -> np.ndarray:
    """The parts (lists of arrays) as one event array sorted by t, with ``noise_rate_hz`` per pixel of
    uniform noise over ``duration`` µs on a ``sensor`` × ``sensor`` array (drawn from ``rng``)."""
    xs, ys, ts, ps = list(xs), list(ys), list(ts), list(ps)
    if rng is not None and noise_rate_hz > 0:
        n_noise = rng.poisson(noise_rate_hz * sensor * sensor * duration * 1e-6)
        xs.append(rng.integers(0, sensor, n_noise))
        ys.append(rng.integers(0, sensor, n_noise))
        ts.append(rng.uniform(0, duration, n_noise))
        ps.append(rng.integers(0, 2, n_noise))
    t = np.clip(np.concatenate(ts), 0, duration - 1).astype(np.uint32)
    order = np.argsort(t, kind="stable")
    events = np.empty(t.size, dtype=EVENT_DTYPE)
    for name, parts in (("x", xs), ("y", ys), ("p", ps)):
        events[name] = np.concatenate(parts)[order]
    events["t"] = t[order]
    return events
