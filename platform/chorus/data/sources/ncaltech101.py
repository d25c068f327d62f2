"""N-Caltech101 source: ``RAW/<class>/image_NNNN.bin`` in the 40-bit ATIS event format.

``RAW`` may be the ``Caltech101`` folder of ``Caltech101.zip`` or the folder it was unpacked into
(beside ``Caltech101_annotations``, whose ``annotation_*.bin`` files are not events), or tonic's
data root (``NCALTECH101/Caltech101``): :func:`chorus.data.sources.layout.find_root`.

Each event is 5 bytes: x, y, then polarity (bit 7) and a 23-bit µs timestamp (bits 22–16 in the
third byte, 15–0 in the last two); read with ``tonic.io.read_mnist_file`` as tonic does. Recordings
have different sizes; the card's sensor is the largest (240×180). ``BACKGROUND_Google`` is skipped
unless the card lists it among the classes.
"""
from __future__ import annotations

import os

import numpy as np

from chorus.data.errors import DataError
from chorus.data.sources.aer import EVENTS
from chorus.data.sources.folders import class_files
from chorus.data.sources.layout import class_folders, find_root


class NCaltech101Source:
    kind = "events"

    def __init__(self, card: dict, raw: str):
        self.card = card
        self.raw = raw

    def items(self) -> list[dict]:
        # RAW or below: Caltech101/ of Caltech101.zip (not Caltech101_annotations/), tonic's root
        self.raw = find_root(self.raw, class_folders(self.card["classes"], ".bin", "image_"),
                             self.card.get("_path", "<card>"))
        return class_files(self.raw, self.card["classes"], ".bin", self.card["_path"],
                           ignore=("BACKGROUND_Google",))

    def load(self, item: dict) -> np.ndarray:
        from tonic.io import read_mnist_file

        path = os.path.join(self.raw, item["source"])
        size = os.path.getsize(path)
        if size % 5:
            raise DataError(f"{size} bytes is not a whole number of 5-byte events (truncated?)",
                            where=path)
        return read_mnist_file(path, dtype=EVENTS)
