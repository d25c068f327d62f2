"""HDF5 handles for sources that read h5 files (SHD, ModelNet h5): open, check, cache, close."""
from __future__ import annotations

from chorus.data.errors import DataError


def open_h5(path: str, keys: tuple[str, ...]):
    """``h5py.File(path)`` after checking it holds ``keys``; closed again when a check fails."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"not a readable HDF5 file ({exc})", where=path) from exc
    for key in keys:
        if key not in handle:
            handle.close()
            raise DataError(f"missing dataset {key!r}", where=path)
    return handle


class H5Handles:
    """Cache of checked h5 handles by name (``self._files``); ``close()`` releases them all, so
    that no HDF5 handle is held past a run or crosses a fork into worker processes."""

    def _cached_h5(self, name: str, path: str, keys: tuple[str, ...]):
        if name not in self._files:
            self._files[name] = open_h5(path, keys)   # cached only once checked
        return self._files[name]

    def _close(self, name: str) -> None:
        handle = self._files.pop(name, None)
        if handle is not None:
            handle.close()

    def close(self) -> None:
        for name in list(self._files):
            self._close(name)
