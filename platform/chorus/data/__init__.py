"""The data platform (docs/method.md "Shards"; docs/architecture.md "Data").

Raw datasets (or the embedded N-Digits and Shapes3D) → WebDataset shards + ``manifest.json``
(:func:`shard`), then streaming ``[T, B, ...]`` batches for any number of ranks (:func:`make_loader`).
"""
from chorus.data.errors import DataError
from chorus.data.manifest import read_manifest, verify
from chorus.data.reader import input_shape, make_loader
from chorus.data.writer import shard

__all__ = ["DataError", "input_shape", "make_loader", "read_manifest", "shard", "verify"]
