"""Errors of the data platform (DESIGN.md "Shards"): every message names the file and key at fault."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input: a raw file, a card, a shard or a sample that cannot be used as it is.

    ``where`` is the file (raw file, card or shard) and ``key`` the sample key or card key, when known.
    """

    def __init__(self, message: str, *, where: str | None = None, key: str | None = None):
        self.where = where
        self.key = key
        prefix = ""
        if where is not None:
            prefix += f"{where}: "
        if key is not None:
            prefix += f"sample {key!r}: " if not key.startswith("card:") else f"{key[5:]}: "
        super().__init__(prefix + message)
