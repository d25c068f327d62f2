"""SHD source: ``RAW/shd_train.h5`` and ``RAW/shd_test.h5`` read with h5py.

Each file holds ``spikes/times`` (per sample, seconds), ``spikes/units`` (per sample, channel
0–699) and ``labels`` (20 classes); the files are the official split. A sample is stored as a
structured array (``t`` in the file's float dtype, ``unit`` uint16), so values round-trip exactly.
"""
from __future__ import annotations

import os

import numpy as np

from chorus.data.errors import DataError
from chorus.data.sources.h5 import H5Handles
from chorus.data.sources.layout import files, find_root

FILES = {"train": "shd_train.h5", "test": "shd_test.h5"}


class SHDSource(H5Handles):
    kind = "spikes"

    def __init__(self, card: dict, raw: str):
        self.card = card
        self.raw = raw
        self._files: dict = {}

    def _open(self, name: str):
        path = os.path.join(self.raw, name)
        if name not in self._files and not os.path.isfile(path):
            raise DataError(f"missing {name}", where=self.raw)
        return self._cached_h5(name, path, ("spikes/times", "spikes/units", "labels"))

    def items(self) -> list[dict]:
        # RAW or below: the gunzipped/unzipped files, or tonic's SHD/ root
        self.raw = find_root(self.raw, files(*FILES.values()), self.card.get("_path", "<card>"))
        items = []
        for split, name in FILES.items():
            labels = self._open(name)["labels"][:]
            self._close(name)   # no HDF5 handle may cross the fork into worker processes
            for i, label in enumerate(labels):
                items.append({"label": int(label), "source": name, "index": i, "split": split})
        return items

    def load(self, item: dict) -> np.ndarray:
        handle = self._open(item["source"])
        times = np.asarray(handle["spikes/times"][item["index"]])
        units = np.asarray(handle["spikes/units"][item["index"]])
        if times.shape != units.shape:
            raise DataError(f"sample {item['index']}: {times.size} times but {units.size} units",
                            where=os.path.join(self.raw, item["source"]))
        spikes = np.empty(times.size, dtype=[("t", times.dtype), ("unit", np.uint16)])
        spikes["t"] = times
        spikes["unit"] = units
        return spikes
