"""CIFAR10-DVS sources: one folder per class, AEDAT4 files (tonic's layout) or the original ``.aedat``.

- ``aedat4-folders``: ``RAW/<class>/*.aedat4`` read with ``tonic.io.read_aedat4`` (the ``aedat``
  package), as tonic's ``CIFAR10DVS`` does.
- ``aedat-folders``: the original recordings ``RAW/<class>/*.aedat`` (jAER AEDAT 2.0 big-endian
  address/timestamp pairs of a DVS128; AEDAT 3.x polarity packets are read too) with :func:`chorus.data.sources.aer.read_aer`,
  with SpikingJelly's orientation (x = 127 − row field, y = 127 − column field, p = 1 − p), so that
  frames match what SpikingJelly's ``CIFAR10DVS`` produces from the same files.
"""
from __future__ import annotations

import os

import numpy as np

from chorus.data.errors import DataError
from chorus.data.sources.aer import EVENTS, read_aer
from chorus.data.sources.folders import class_files
from chorus.data.sources.layout import class_folders, find_root


class AEDAT4FolderSource:
    kind = "events"
    suffix = ".aedat4"

    def __init__(self, card: dict, raw: str):
        self.card = card
        self.raw = raw

    def items(self) -> list[dict]:
        # RAW or below: the class folders the ten class zips unpack to, tonic's CIFAR10DVS/ root
        self.raw = find_root(self.raw, class_folders(self.card["classes"], self.suffix),
                             self.card.get("_path", "<card>"))
        return class_files(self.raw, self.card["classes"], self.suffix, self.card["_path"])

    def load(self, item: dict) -> np.ndarray:
        from tonic.io import read_aedat4

        path = os.path.join(self.raw, item["source"])
        try:
            events = read_aedat4(path)
        except Exception as exc:  # the aedat decoder raises plain exceptions on broken files
            raise DataError(f"unreadable AEDAT4 file ({exc})", where=path) from exc
        # the decoder names polarity 'on' (titled 'p'): give it plain x, y, t, p fields
        out = np.empty(len(events), dtype=EVENTS)
        out["x"], out["y"], out["t"] = events["x"], events["y"], events["t"]
        out["p"] = events["on"] if "on" in (events.dtype.names or ()) else events["p"]
        return out


class AEDATFolderSource(AEDAT4FolderSource):
    suffix = ".aedat"

    def load(self, item: dict) -> np.ndarray:
        address, t = read_aer(os.path.join(self.raw, item["source"]))
        events = np.empty(len(address), dtype=EVENTS)
        events["x"] = 127 - ((address >> 8) & 0x7F)
        events["y"] = 127 - ((address >> 1) & 0x7F)
        events["t"] = t
        events["p"] = 1 - (address & 1)
        return events
