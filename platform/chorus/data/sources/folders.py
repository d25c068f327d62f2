"""Shared helpers of the folder-per-class sources (CIFAR10-DVS, N-Caltech101)."""
from __future__ import annotations

import os
import re

from chorus.data.errors import DataError


def natural_key(name: str):
    """Sort ``x_2`` before ``x_10``: numbers compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def class_files(raw: str, classes: list[str], suffix: str, card_path: str,
                ignore: tuple[str, ...] = ()) -> list[dict]:
    """Items ``{label, source, index}`` for ``raw/<class>/*<suffix>``, classes in card order,
    files in natural order; a missing class folder or an unknown folder is an error."""
    if not os.path.isdir(raw):
        raise DataError("raw folder does not exist", where=raw)
    present = sorted(d for d in os.listdir(raw) if os.path.isdir(os.path.join(raw, d))
                     and not d.startswith(".") and d != "__MACOSX")
    unknown = [d for d in present if d not in classes and d not in ignore]
    if unknown:
        raise DataError(f"class folders {unknown} are not among the card's classes "
                        f"({card_path})", where=raw)
    items = []
    for label, name in enumerate(classes):
        folder = os.path.join(raw, name)
        if not os.path.isdir(folder):
            raise DataError(f"missing class folder {name!r} (card {card_path})", where=raw)
        files = sorted((f for f in os.listdir(folder) if f.endswith(suffix)
                        and not f.startswith(".")), key=natural_key)   # no macOS ._ copies
        if not files:
            raise DataError(f"no *{suffix} files", where=folder)
        for index, name_ in enumerate(files):
            items.append({"label": label, "source": os.path.join(name, name_), "index": index})
    return items
