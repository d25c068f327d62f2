"""N-Motion: a temporal embedded event dataset, generated on the spot (docs/method.md, "Shards").

A bright shape (disc, square, ring, cross or diamond, random size, random start) moves over a dark
32×32 sensor that wraps around, along two straight legs at right angles: first in direction A, then in direction B ⟂ A
(A, B ∈ right, left, up, down). The class is the ordered pair (A, B): 8 classes. The shape carries no
information, so the class depends on the motion over time only:

- the first quarter of a recording shows leg A alone, which leaves two classes open (B is one of the
  two directions at right angles to A): the first timestep cannot know the answer;
- (A, B) and (B, A) contain the same two motions in the opposite order, so order matters;
- played backwards (t → D − t, ON ↔ OFF), a recording of (A, B) is a recording of (−B, −A) from the end
  point (:func:`reverse_class`; exact when jitter and noise are off).

Events follow a level-crossing sensor: each pixel has a contrast threshold C (with a small per-pixel
mismatch) and a random level offset, and it emits one event per level of its log intensity crossed
between two positions of the shape (ON upwards, OFF downwards), spread evenly over that step. Because
the levels are fixed, a path run backwards crosses the same levels the other way. Timestamps are in µs;
background-activity events are added. Everything is drawn from ``numpy.random.default_rng([seed,
index])``: deterministic per seed and sample, whatever the process that generates it.
"""
from __future__ import annotations

import numpy as np

from chorus.data.embedded.events import EVENT_DTYPE, sorted_events  # noqa: F401 (EVENT_DTYPE re-exported)

SENSOR = 32                        # pixels
LEG_US = 150_000                   # each of the two legs lasts 150 ms
STEPS_PER_LEG = 32                 # shape positions sampled this often along a leg
LEG_PX = (6.0, 10.0)               # length of each leg, pixels (uniform)
RADIUS_PX = (3.0, 5.5)             # shape size (uniform)
THRESHOLD = 0.3                    # mean log-intensity contrast threshold C
THRESHOLD_MISMATCH = 0.05          # relative per-pixel spread of C
NOISE_RATE_HZ = 2.0                # background activity per pixel
BACKGROUND = 0.05                  # intensity of the dark screen; the shape adds up to 1.0
DISTRACTORS = 1                    # shapes that go straight on, in a random direction
DISTRACTOR_INK = 0.6               # their brightness (the shape that turns has 1.0)
JITTER = 0.2                       # timestamp jitter, fraction of one step
SHAPES = ("disc", "square", "ring", "cross", "diamond")
DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
OPPOSITE = {"right": "left", "left": "right", "up": "down", "down": "up"}
CLASSES = [(a, b) for a in DIRECTIONS for b in DIRECTIONS if DIRECTIONS[a][0] * DIRECTIONS[b][0]
           + DIRECTIONS[a][1] * DIRECTIONS[b][1] == 0 and a != b]
CLASS_NAMES = [f"{a}-{b}" for a, b in CLASSES]
PER_CLASS = 200



def reverse_class(label: int) -> int:
    """The class of a recording of ``label`` played backwards: (A, B) → (−B, −A)."""
    a, b = CLASSES[label]
    return CLASSES.index((OPPOSITE[b], OPPOSITE[a]))


def swap_class(label: int) -> int:
    """The class with the same two motions in the other order: (A, B) → (B, A)."""
    a, b = CLASSES[label]
    return CLASSES.index((b, a))


def _distance(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (pixels, < 0 inside) of sensor points from a shape of size ``r`` at the origin."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "disc":
        return np.hypot(dx, dy) - r
    if shape == "square":
        return np.maximum(ax, ay) - 0.8 * r
    if shape == "ring":
        return np.abs(np.hypot(dx, dy) - 0.8 * r) - 0.3 * r
    if shape == "cross":
        w = 0.35 * r
        return np.minimum(np.maximum(ax - w, ay - r), np.maximum(ax - r, ay - w))
    return ax + ay - 1.2 * r                                  # diamond


def ink(shape: str, r: float, centres: np.ndarray) -> np.ndarray:
    """Intensity ``[S, 32, 32]`` in [0, 1] of the shape centred at each of ``centres`` ``[S, 2]`` (x, y);
    the edge is anti-aliased over one pixel. The sensor wraps around (a torus): a shape leaving on one
    side comes back on the other, so where it is says nothing about where it has been."""
    coords = np.arange(SENSOR, dtype=np.float64)
    half = SENSOR / 2.0
    dx = np.mod(coords[None, None, :] - centres[:, 0, None, None] + half, SENSOR) - half
    dy = np.mod(coords[None, :, None] - centres[:, 1, None, None] + half, SENSOR) - half
    return np.clip(0.5 - _distance(shape, dx, dy, r), 0.0, 1.0)


def render(movers: list[dict]) -> np.ndarray:
    """Log intensity ``[S, 32, 32]`` of every mover (``shape``, ``radius``, ``start``, ``legs``, and its
    brightness ``ink``, default 1) along its path; where two overlap the brighter wins."""
    seen = np.max([m.get("ink", 1.0) * ink(m["shape"], m["radius"], path_of(m["start"], m["legs"]))
                   for m in movers], axis=0)
    return np.log(BACKGROUND + seen)


def path_of(start: np.ndarray, legs: list[np.ndarray]) -> np.ndarray:
    """Positions ``[1 + S·len(legs), 2]``: the start, then every step along each leg."""
    fractions = np.arange(1, STEPS_PER_LEG + 1)[:, None] / STEPS_PER_LEG
    points, here = [start[None, :]], start
    for leg in legs:
        points.append(here + leg * fractions)
        here = here + leg
    return np.concatenate(points)


def record(levels: np.ndarray, threshold: np.ndarray, offset: np.ndarray, dt: float,
           rng: np.random.Generator | None = None, jitter: float = JITTER) -> tuple[np.ndarray, ...]:
    """Level-crossing events of the log intensities ``levels`` ``[S+1, H, W]``: ``(x, y, t, p)`` arrays,
    the j-th of n crossings of a pixel in step k at time (k + (j+1)/(n+1))·dt (± jitter·dt)."""
    quant = np.floor((levels - offset) / threshold).astype(np.int64)
    crossings = np.diff(quant, axis=0)                               # [S, H, W]
    steps, rows, cols = np.nonzero(crossings)
    signed = crossings[steps, rows, cols]
    counts = np.abs(signed)
    order = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    frac = (order + 1) / np.repeat(counts + 1, counts)
    times = (np.repeat(steps, counts) + frac) * dt
    if rng is not None and jitter > 0:
        times = times + rng.uniform(-jitter, jitter, size=times.size) * dt
    return (np.repeat(cols, counts), np.repeat(rows, counts), times,
            np.repeat((signed > 0).astype(np.uint8), counts))


def _mover(rng: np.random.Generator, directions: tuple[str, str]) -> dict:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    r = float(rng.uniform(*RADIUS_PX))
    legs = [np.array(DIRECTIONS[d]) * rng.uniform(*LEG_PX) for d in directions]
    return {"shape": shape, "radius": r, "start": rng.uniform(0.0, SENSOR, size=2), "legs": legs}


def draw_motion(label: int, rng: np.random.Generator, distractors: int = DISTRACTORS) -> list[dict]:
    """The movers of one sample of class ``label``: first the one that turns from A to B, then
    ``distractors`` that go straight on in a random direction, dimmer (``DISTRACTOR_INK``; shape, size
    and the two legs' lengths drawn alike). Starts are uniform over the (wrapping) sensor whatever the class."""
    movers = [_mover(rng, CLASSES[label])]
    for _ in range(distractors):
        d = list(DIRECTIONS)[int(rng.integers(len(DIRECTIONS)))]
        movers.append(dict(_mover(rng, (d, d)), ink=DISTRACTOR_INK))
    return movers


def events_of(movers: list[dict], threshold: np.ndarray, offset: np.ndarray, rng=None, jitter: float = JITTER,
              noise_rate_hz: float = NOISE_RATE_HZ) -> np.ndarray:
    """The structured event array (x, y, t, p), sorted by t, of the drawn ``movers``."""
    levels = render(movers)
    dt = LEG_US / STEPS_PER_LEG
    xs, ys, ts, ps = record(levels, threshold, offset, dt, rng, jitter)
    duration = len(movers[0]["legs"]) * LEG_US
    return sorted_events([xs], [ys], [ts], [ps], duration, SENSOR, rng, noise_rate_hz)


def sensor_of(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel contrast threshold and level offset of one recording."""
    threshold = THRESHOLD * (1.0 + THRESHOLD_MISMATCH * rng.standard_normal((SENSOR, SENSOR)))
    return threshold, rng.uniform(0.0, 1.0, (SENSOR, SENSOR)) * threshold


def generate_sample(label: int, seed: int, index: int, distractors: int = DISTRACTORS) -> np.ndarray:
    """Events of sample ``index`` of class ``label``: a structured array (x, y, t, p) sorted by t (µs)."""
    rng = np.random.default_rng([seed, index])
    motion = draw_motion(label, rng, distractors)
    threshold, offset = sensor_of(rng)
    return events_of(motion, threshold, offset, rng)
