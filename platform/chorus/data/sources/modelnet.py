"""ModelNet10/40 sources: the ``modelnet40_ply_hdf5_2048`` h5 files or the
``modelnet40_normal_resampled`` text layout (the one Spiking PointNet / PointNet++ read).

- ``modelnet-h5``: ``RAW/train_files.txt`` and ``RAW/test_files.txt`` list the h5 files (only the
  base name is used); each holds ``data`` [N, 2048, 3] float32 and ``label`` [N, 1]; official split.
- ``modelnet-text``: ``RAW/<variant>_shape_names.txt``, ``RAW/<variant>_train.txt`` and
  ``RAW/<variant>_test.txt`` (shape ids such as ``airplane_0001``; ``variant`` is ``modelnet40``
  or ``modelnet10``), and ``RAW/<class>/<id>.txt`` with one ``x,y,z,nx,ny,nz`` line per point.

The first ``options.store_points`` points are kept (all when absent), with normals when
``options.normals`` is true.
"""
from __future__ import annotations

import os

import numpy as np

from chorus.data.errors import DataError
from chorus.data.sources.h5 import H5Handles
from chorus.data.sources.layout import files, find_root


def _lines(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise DataError("missing file", where=path)
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


class ModelNetH5Source(H5Handles):
    kind = "points"

    def __init__(self, card: dict, raw: str):
        self.card = card
        self.raw = raw
        self.store = card["options"].get("store_points")
        self._files: dict = {}

    def _open(self, name: str):
        path = os.path.join(self.raw, name)
        if name not in self._files and not os.path.isfile(path):
            raise DataError("h5 file listed in train/test_files.txt is missing", where=path)
        return self._cached_h5(name, path, ("data", "label"))

    def items(self) -> list[dict]:
        # RAW or below: modelnet40_ply_hdf5_2048/ (its lists name data/modelnet40_ply_hdf5_2048/…;
        # the files are taken from the folder holding the lists)
        self.raw = find_root(self.raw, files("train_files.txt", "test_files.txt"),
                             self.card.get("_path", "<card>"))
        items = []
        for split in ("train", "test"):
            for line in _lines(os.path.join(self.raw, f"{split}_files.txt")):
                name = os.path.basename(line)
                labels = np.asarray(self._open(name)["label"][:]).reshape(-1)
                self._close(name)   # no HDF5 handle may cross the fork into workers
                for i, label in enumerate(labels):
                    items.append({"label": int(label), "source": name, "index": i,
                                  "split": split})
        return items

    def load(self, item: dict) -> np.ndarray:
        points = np.asarray(self._open(item["source"])["data"][item["index"]])
        return points[:self.store] if self.store else points


class ModelNetTextSource:
    kind = "points"

    def __init__(self, card: dict, raw: str):
        self.card = card
        options = card["options"]
        self.variant = options.get("variant", "modelnet40")
        self.raw = raw
        self.store = options.get("store_points")
        self.normals = bool(options.get("normals", False))

    def items(self) -> list[dict]:
        # RAW or below: modelnet40_normal_resampled/
        self.raw = find_root(self.raw, files(*(f"{self.variant}_{n}.txt" for n in
                                               ("shape_names", "train", "test"))),
                             self.card.get("_path", "<card>"))
        names = _lines(os.path.join(self.raw, f"{self.variant}_shape_names.txt"))
        if names != list(self.card["classes"]):
            raise DataError(f"shape names {names[:5]}… differ from the card's classes",
                            where=os.path.join(self.raw, f"{self.variant}_shape_names.txt"))
        items = []
        for split in ("train", "test"):
            for shape_id in _lines(os.path.join(self.raw, f"{self.variant}_{split}.txt")):
                cls = shape_id.rsplit("_", 1)[0]
                if cls not in names:
                    raise DataError(f"shape {shape_id!r} has an unknown class",
                                    where=os.path.join(self.raw, f"{self.variant}_{split}.txt"))
                items.append({"label": names.index(cls), "index": len(items), "split": split,
                              "source": os.path.join(cls, shape_id + ".txt")})
        return items

    def load(self, item: dict) -> np.ndarray:
        path = os.path.join(self.raw, item["source"])
        try:
            points = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2,
                                max_rows=self.store)
        except (OSError, ValueError) as exc:
            raise DataError(f"unreadable point file ({exc})", where=path) from exc
        if points.shape[1] < 3:
            raise DataError(f"{points.shape[1]} columns, expected x,y,z[,nx,ny,nz]", where=path)
        return points if self.normals else points[:, :3]
