"""Errors of the data platform (docs/method.md "Shards"): every message names the file and key at fault."""
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

    def __reduce__(self):
        """Pickle with ``where`` and ``key`` (a worker process hands its errors to the main one)."""
        return _rebuild, (type(self), self.args[0] if self.args else "", self.where, self.key)


def _rebuild(cls, text: str, where, key):
    error = cls.__new__(cls)
    ValueError.__init__(error, text)
    error.where, error.key = where, key
    return error
