"""Sources: read a dataset's raw files (or generate an embedded one) as labelled samples.

A source is built from a card and the raw folder and offers ``items()`` (a list of plain dicts with
``label``, ``source`` (file, relative to the raw folder), ``index`` and, for official splits,
``split``) and ``load(item)`` (the payload: a structured event array, a structured spike array, or a
float point array). Sources never download anything. The registry maps a card's ``source`` value to
its class, imported on first use.
"""
from __future__ import annotations

import importlib

from chorus.data.errors import DataError

REGISTRY = {
    "embedded-ndigits": "chorus.data.sources.embedded:NDigitsSource",
    "embedded-nmotion": "chorus.data.sources.embedded:NMotionSource",
    "embedded-shapes3d": "chorus.data.sources.embedded:Shapes3DSource",
    "aedat4-folders": "chorus.data.sources.cifar10dvs:AEDAT4FolderSource",
    "aedat-folders": "chorus.data.sources.cifar10dvs:AEDATFolderSource",
    "dvsgesture-aedat3": "chorus.data.sources.dvsgesture:DVSGestureSource",
    "ncaltech101-bin": "chorus.data.sources.ncaltech101:NCaltech101Source",
    "shd-h5": "chorus.data.sources.shd:SHDSource",
    "modelnet-h5": "chorus.data.sources.modelnet:ModelNetH5Source",
    "modelnet-text": "chorus.data.sources.modelnet:ModelNetTextSource",
}


def make_source(card: dict, raw: str | None):
    """The source object for ``card`` reading from the folder ``raw``."""
    name = card["source"]
    if name not in REGISTRY:
        raise DataError(f"unknown source {name!r} (known: {sorted(REGISTRY)})",
                        where=card.get("_path", "<card>"), key="card:source")
    module_name, cls_name = REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if getattr(cls, "needs_raw", True) and not raw:
        raise DataError(f"source {name!r} reads raw files: pass --raw FOLDER",
                        where=card.get("_path", "<card>"))
    return cls(card, raw)
