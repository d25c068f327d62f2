"""``manifest.json`` of a shard set (docs/method.md "Shards"): read it, check it, verify the shards.

The manifest holds ``dataset``, ``kind``, ``classes``, ``num_classes``, ``sensor_size``,
``source_format``, ``split_policy`` (policy, seed, val_fraction), ``sample_order`` (which splits the
writer stored in a seeded random order, and the seed), ``chorus_version``, ``splits``
(``{split: {"shards", "counts", "sha256", "bytes", "num_samples"}}``), ``stats`` (events, bytes per
event) and, for pre-binned shards, ``frames`` (``T``, ``size``, ``mode``).

A shard set may live in a local folder or at a URL (:mod:`chorus.data.urls`); the manifest is read
from the same place, and ``manifest["folder"]`` is that place (an absolute path or the URL).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

from chorus.data import remote
from chorus.data.errors import DataError
from chorus.data.urls import is_remote, join, normalize

MANIFEST = "manifest.json"
REQUIRED = ("dataset", "kind", "classes", "num_classes", "splits")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder, *, retries: int = remote.RETRIES) -> dict:
    """The manifest of the shard set in ``folder`` (a folder or a URL), with ``folder`` added;
    errors name the file."""
    location = normalize(folder)
    path = join(location, MANIFEST)
    if is_remote(location):
        try:
            text = remote.fetch(path, retries=retries)
        except remote.NotFound:
            raise DataError("no manifest.json: not a finished shard set (run `chorus shard`)",
                            where=location) from None
    else:
        if not os.path.isfile(path):
            raise DataError("no manifest.json: not a finished shard set (run `chorus shard`)",
                            where=location)
        with open(path, "rb") as f:
            text = f.read()
    try:
        manifest = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", where=path) from exc
    if not isinstance(manifest, dict):
        raise DataError("not a JSON object", where=path)
    for key in REQUIRED:
        if key not in manifest:
            raise DataError(f"missing key {key!r}", where=path)
    manifest["folder"] = location
    return manifest


def write_manifest(folder: str, manifest: dict) -> None:
    """Write atomically: a reader never sees half a manifest."""
    path = os.path.join(folder, MANIFEST)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def count_samples(path) -> int:
    """Number of distinct sample keys in a tar (a path or its bytes; WebDataset groups members by
    name before the dot)."""
    keys = set()
    opened = tarfile.open(fileobj=io.BytesIO(path)) if isinstance(path, bytes) else \
        tarfile.open(path)
    with opened as tar:
        for member in tar:
            base = os.path.basename(member.name)
            keys.add(os.path.join(os.path.dirname(member.name), base.split(".", 1)[0]))
    return len(keys)


def verify(folder) -> list[str]:
    """Re-check every shard's sample count and sha256 against the manifest (a folder or a URL:
    remote shards are downloaded, not cached); the problems found."""
    manifest = read_manifest(folder)
    location = manifest["folder"]
    problems = []
    for split, info in manifest["splits"].items():
        for name, count, digest in zip(info["shards"], info["counts"], info["sha256"]):
            path = join(location, name)
            if is_remote(location):
                try:
                    source = remote.fetch(path)
                except remote.NotFound:
                    problems.append(f"{path}: missing")
                    continue
                except DataError as exc:
                    problems.append(str(exc))
                    continue
                actual = hashlib.sha256(source).hexdigest()
            else:
                if not os.path.isfile(path):
                    problems.append(f"{path}: missing")
                    continue
                source = path
                actual = sha256_file(path)
            if actual != digest:
                problems.append(f"{path}: sha256 {actual[:12]}… != manifest {digest[:12]}…")
            try:
                found = count_samples(source)
            except (tarfile.TarError, OSError, EOFError) as exc:
                problems.append(f"{path}: unreadable tar ({exc})")
                continue
            if found != count:
                problems.append(f"{path}: {found} samples, manifest says {count}")
    return problems
