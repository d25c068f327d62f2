"""N-Digits: scikit-learn's handwritten digits recorded as an event camera would (docs/method.md "Shards").

The embedded event dataset that needs no download. Each 8×8 digit (real handwriting shipped inside
scikit-learn) is upscaled onto a 34×34 sensor and moved along three saccades, as N-MNIST was recorded
with an ATIS camera on a pan-tilt unit. Every sensor pixel keeps a reference log intensity and emits
an ON (p=1) or OFF (p=0) event each time the log intensity moves past its contrast threshold C from
that reference; the reference then moves by C. Timestamps are in µs. A few background-activity events
are added. Everything is drawn from ``numpy.random.default_rng([seed, index])``: deterministic per
seed and per sample, whatever the process that generates it.
"""
from __future__ import annotations

import numpy as np

from chorus.data.embedded.events import EVENT_DTYPE, sorted_events  # noqa: F401 (EVENT_DTYPE re-exported)

SENSOR = 34                    # pixels, as N-MNIST
SCALE = 3.0                    # 8 px digit -> 24 px on the sensor
SACCADE_US = 100_000           # each of the three saccades lasts 100 ms
STEPS_PER_SACCADE = 32         # intensity sampled this often along a saccade
THRESHOLD = 0.25               # mean log-intensity contrast threshold C
THRESHOLD_MISMATCH = 0.05      # relative per-pixel spread of C
NOISE_RATE_HZ = 0.5            # background activity per pixel
BACKGROUND = 0.05              # intensity of the dark screen; ink adds up to 1.0
# Saccade corners (pixels): out along two sides of a triangle and back to the start.
CORNERS = np.array([[0.0, 0.0], [3.0, 2.0], [-2.0, 3.0], [0.0, 0.0]])



def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 scikit-learn digits as float images in [0, 1] ``[N, 8, 8]`` and labels ``[N]``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float64), digits.target.astype(np.int64)


def _render(image: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Log intensity ``[S, 34, 34]`` seen by the sensor when the upscaled digit is displaced by
    each of ``shifts`` ``[S, 2]`` (x, y in pixels): bilinear interpolation inside the image's
    extent, no ink outside it.

    The displacement is a translation, so interpolation is separable: with the hat weights
    ``w(u, k) = max(0, 1 - |u - k|)`` of each sensor row (column) over image rows (columns),
    the frame is ``W_rows · image · W_colsᵀ``."""
    centre = (SENSOR - 1) / 2.0
    img_centre = (image.shape[0] - 1) / 2.0
    coords = np.arange(SENSOR, dtype=np.float64)
    grid = np.arange(image.shape[0], dtype=np.float64)
    rows = (coords[None, :] - centre - shifts[:, 1, None]) / SCALE + img_centre     # [S, 34]
    cols = (coords[None, :] - centre - shifts[:, 0, None]) / SCALE + img_centre
    w_rows = np.maximum(0.0, 1.0 - np.abs(rows[:, :, None] - grid))                  # [S, 34, 8]
    w_cols = np.maximum(0.0, 1.0 - np.abs(cols[:, :, None] - grid))
    last = image.shape[0] - 1                     # outside the image's extent: no ink at all
    w_rows[(rows < 0) | (rows > last)] = 0.0
    w_cols[(cols < 0) | (cols > last)] = 0.0
    ink = w_rows @ image @ w_cols.transpose(0, 2, 1)
    return np.log(BACKGROUND + np.clip(ink, 0.0, 1.0))


def generate_sample(image: np.ndarray, seed: int, index: int) -> np.ndarray:
    """Events of one digit: a structured array (x, y, t, p) sorted by t (µs)."""
    rng = np.random.default_rng([seed, index])
    corners = CORNERS + rng.normal(0.0, 0.3, size=CORNERS.shape)
    corners[-1] = corners[0]
    threshold = THRESHOLD * (1.0 + THRESHOLD_MISMATCH * rng.standard_normal((SENSOR, SENSOR)))
    fractions = np.arange(1, STEPS_PER_SACCADE + 1) / STEPS_PER_SACCADE
    path = np.concatenate([corners[:1]] + [corners[leg] + (corners[leg + 1] - corners[leg])
                                           * fractions[:, None] for leg in range(3)])
    levels = _render(image, path)                  # the start, then every step of the saccades
    reference = levels[0]
    dt = SACCADE_US / STEPS_PER_SACCADE
    crossings = np.zeros((len(path) - 1, SENSOR, SENSOR), dtype=np.int64)
    for step in range(1, len(path)):           # each pixel's reference follows its own crossings
        crossings[step - 1] = np.trunc((levels[step] - reference) / threshold)
        reference = reference + crossings[step - 1] * threshold
    steps, rows, cols = np.nonzero(crossings)   # step by step, row-major within a step
    counts = np.abs(crossings[steps, rows, cols])
    polarity = np.repeat((crossings[steps, rows, cols] > 0).astype(np.uint8), counts)
    starts = np.repeat(steps * dt, counts)
    rows = np.repeat(rows, counts)
    cols = np.repeat(cols, counts)
    # the j-th of n crossings of a pixel in a step happens at fraction (j+1)/(n+1) of the step
    order = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    frac = (order + 1) / np.repeat(counts + 1, counts)
    times = starts + frac * dt + rng.uniform(-0.1, 0.1, size=rows.size) * dt
    return sorted_events([cols], [rows], [times], [polarity], 3 * SACCADE_US, SENSOR, rng, NOISE_RATE_HZ)
