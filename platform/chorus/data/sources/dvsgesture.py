"""DVS128 Gesture source: the original release, cut into labelled gesture samples.

Layout: ``RAW/userNN_<lighting>.aedat`` (AEDAT 3.1: a text header, then packets of a 28-byte header
and 8-byte polarity events), ``RAW/userNN_<lighting>_labels.csv`` (``class,startTime_usec,
endTime_usec``, classes 1–11), ``RAW/trials_to_train.txt`` and ``RAW/trials_to_test.txt`` (the
official split, one ``.aedat`` name per line). Events are read packet by packet with
:func:`chorus.data.sources.aer.read_aer` (polarity packets only, timestamps widened by each packet's
``eventTSOverflow``, as SpikingJelly's ``load_aedat_v3``) and the bit layout of
``tonic.io.read_dvs_ibm`` (x bits 17–29, y bits 2–14, p bit 1); a sample holds the events with ``start <= t < end`` of one csv row, labelled ``class − 1``.
"""
from __future__ import annotations

import os

import numpy as np

from chorus.data.errors import DataError
from chorus.data.sources.aer import EVENTS, read_aer
from chorus.data.sources.layout import files, find_root


class DVSGestureSource:
    kind = "events"

    def __init__(self, card: dict, raw: str):
        self.card = card
        self.raw = raw
        self._cached: tuple[str, np.ndarray] | None = None

    def _trials(self, split: str) -> list[str]:
        path = os.path.join(self.raw, f"trials_to_{split}.txt")
        if not os.path.isfile(path):
            raise DataError(f"missing trials_to_{split}.txt (the official split)", where=self.raw)
        with open(path) as f:
            return [line.strip() for line in f if line.strip()]

    def items(self) -> list[dict]:
        # RAW or below: the DvsGesture/ folder of DvsGesture.tar.gz
        self.raw = find_root(self.raw, files("trials_to_train.txt", "trials_to_test.txt"),
                             self.card.get("_path", "<card>"))
        items = []
        for split in ("train", "test"):
            for trial in self._trials(split):
                csv = os.path.join(self.raw, trial.replace(".aedat", "") + "_labels.csv")
                if not os.path.isfile(os.path.join(self.raw, trial)):
                    raise DataError(f"trial {trial} listed in trials_to_{split}.txt is missing",
                                    where=self.raw)
                if not os.path.isfile(csv):
                    raise DataError("missing labels file", where=csv)
                rows = np.loadtxt(csv, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
                for row, (cls, start, end) in enumerate(rows[:, :3]):
                    if not 1 <= cls <= len(self.card["classes"]):
                        raise DataError(f"row {row + 1}: class {cls} outside 1..11", where=csv)
                    items.append({"label": int(cls) - 1, "source": trial, "index": len(items),
                                  "sample": row, "split": split, "start": int(start),
                                  "end": int(end)})
        return items

    def load(self, item: dict) -> np.ndarray:
        path = os.path.join(self.raw, item["source"])
        if self._cached is None or self._cached[0] != path:
            address, t = read_aer(path)
            events = np.empty(len(address), dtype=EVENTS)
            events["x"] = (address >> 17) & 0x1FFF
            events["y"] = (address >> 2) & 0x1FFF
            events["t"] = t
            events["p"] = (address >> 1) & 1
            self._cached = (path, events)
        events = self._cached[1]
        t = events["t"].astype(np.int64)
        return events[(t >= item["start"]) & (t < item["end"])]
