"""Sources of the embedded datasets (N-Digits, N-Motion, Shapes3D): generated, not read from disk."""
from __future__ import annotations

import numpy as np

from chorus.data.embedded import ndigits, nmotion, shapes3d


class NDigitsSource:
    """scikit-learn's 1797 digits as event streams (:mod:`chorus.data.embedded.ndigits`)."""

    needs_raw = False
    kind = "events"

    def __init__(self, card: dict, raw=None):
        self.seed = int(card["options"].get("seed", 0))
        self.limit = card["options"].get("limit")       # first N digits only (small test sets)
        self._images = None
        self._labels = None

    def _load(self):
        if self._images is None:
            self._images, self._labels = ndigits.load_digits_arrays()

    def items(self) -> list[dict]:
        self._load()
        labels = self._labels if self.limit is None else self._labels[:int(self.limit)]
        return [{"label": int(label), "source": "sklearn.datasets.load_digits", "index": i}
                for i, label in enumerate(labels)]

    def load(self, item: dict) -> np.ndarray:
        self._load()
        return ndigits.generate_sample(self._images[item["index"]], self.seed, item["index"])


class NMotionSource:
    """Shapes moving along two legs at right angles, class = the ordered pair of directions
    (:mod:`chorus.data.embedded.nmotion`)."""

    needs_raw = False
    kind = "events"

    def __init__(self, card: dict, raw=None):
        options = card["options"]
        self.seed = int(options.get("seed", 0))
        self.per_class = int(options.get("per_class", nmotion.PER_CLASS))
        self.distractors = int(options.get("distractors", nmotion.DISTRACTORS))

    def items(self) -> list[dict]:
        n = self.per_class * len(nmotion.CLASSES)
        return [{"label": i % len(nmotion.CLASSES), "source": "procedural", "index": i} for i in range(n)]

    def load(self, item: dict) -> np.ndarray:
        return nmotion.generate_sample(item["label"], self.seed, item["index"], self.distractors)


class Shapes3DSource:
    """Procedural point clouds of 10 solids (:mod:`chorus.data.embedded.shapes3d`)."""

    needs_raw = False
    kind = "points"

    def __init__(self, card: dict, raw=None):
        options = card["options"]
        self.seed = int(options.get("seed", 0))
        self.per_class = int(options.get("per_class", shapes3d.PER_CLASS))
        self.points = int(card.get("num_points", shapes3d.POINTS))

    def items(self) -> list[dict]:
        n = self.per_class * len(shapes3d.CLASSES)
        return [{"label": i % len(shapes3d.CLASSES), "source": "procedural", "index": i}
                for i in range(n)]

    def load(self, item: dict) -> np.ndarray:
        return shapes3d.generate_sample(item["label"], self.seed, item["index"], self.points)
