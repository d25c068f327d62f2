"""Find a dataset's files under the ``--raw`` folder as its archive unpacks (issue 13, raw layouts).

Users pass the folder an official archive was unpacked into (``DIR`` holding ``Caltech101/``,
``modelnet40_ply_hdf5_2048/``, ``DvsGesture/`` …), the inner folder itself, or a tonic data root
(``DIR/NCALTECH101/Caltech101``, ``DIR/CIFAR10DVS/<class>``, ``DIR/SHD/shd_train.h5``).
:func:`find_root` returns the one folder at or below ``--raw`` whose contents match what the
source reads (its *signature*): ``--raw`` itself when it matches (as before), else the shallowest
match, at most :data:`DEPTH` levels down. Two matches at the same depth, or none, are a
:class:`DataError` that says exactly which folder to pass (and, when only archives were found,
that they must be unpacked first). Hidden folders and macOS ``__MACOSX`` copies are never
matched.
"""
from __future__ import annotations

import os

from chorus.data.errors import DataError

DEPTH = 3
ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".gz", ".7z", ".rar")
_SKIP = ("__MACOSX",)


def _subfolders(folder: str) -> list[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [os.path.join(folder, n) for n in names
            if not n.startswith(".") and n not in _SKIP and os.path.isdir(os.path.join(folder, n))]


def class_folders(classes, suffix: str, prefix: str = ""):
    """Signature: a folder with at least one of the card's class folders holding a
    ``prefix*suffix`` file (N-Caltech101's ``image_*.bin``, not its annotations' ``.bin``)."""
    def matches(folder: str) -> bool:
        for name in classes:
            sub = os.path.join(folder, name)
            if os.path.isdir(sub) and any(f.endswith(suffix) and f.startswith(prefix)
                                          for f in os.listdir(sub)):
                return True
        return False
    matches.what = f"class folders ({', '.join(list(classes)[:3])}, …) of {prefix}*{suffix} files"
    return matches


def files(*names: str):
    """Signature: a folder holding all of ``names``."""
    def matches(folder: str) -> bool:
        return all(os.path.isfile(os.path.join(folder, n)) for n in names)
    matches.what = " and ".join(names)
    return matches


def _archives(raw: str) -> list[str]:
    found = []
    level = [raw]
    for _ in range(DEPTH):
        for folder in level:
            try:
                found += [os.path.join(folder, n) for n in sorted(os.listdir(folder))
                          if n.lower().endswith(ARCHIVES)
                          and os.path.isfile(os.path.join(folder, n))]
            except OSError:
                pass
        level = [s for folder in level for s in _subfolders(folder)]
    return found


def find_root(raw: str, matches, card_path: str = "<card>") -> str:
    """The folder at or below ``raw`` that matches the signature ``matches``."""
    if not os.path.isdir(raw):
        raise DataError("raw folder does not exist", where=raw)
    if matches(raw):
        return raw
    level = _subfolders(raw)
    for depth in range(1, DEPTH + 1):
        found = [folder for folder in level if matches(folder)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise DataError(f"several folders hold {matches.what}: "
                            f"{', '.join(os.path.relpath(f, raw) for f in found)}; pass one of "
                            f"them as --raw (card {card_path})", where=raw)
        level = [sub for folder in level for sub in _subfolders(folder)][:5000]
        if not level:
            break
    message = (f"no folder here or up to {DEPTH} levels below holds {matches.what}; pass the "
               f"folder that holds them as --raw (card {card_path})")
    archives = _archives(raw)
    if archives:
        shown = ", ".join(os.path.relpath(a, raw) for a in archives[:5])
        message += f". Found archives ({shown}): unpack them first, then pass that folder"
    raise DataError(message, where=raw)
