"""``shard``: raw dataset files → WebDataset tar shards + ``manifest.json`` (docs/method.md "Shards").

Samples are read and encoded in parallel processes and written by the main process split by split
into ``{split}-{000000..}.tar``, ``train`` and ``val`` in a random order seeded by the card's split
seed (so that shards are class-mixed even for sources listed class by class; recorded in the
manifest as ``sample_order``), ``test`` in source order; a shard is closed once it holds
``shard_size_mb``.
Shard boundaries depend only on the samples, and tars are written with fixed metadata (mtime 0), so
the bytes are reproducible. Each finished shard is renamed into place and recorded in
``.progress.json``; a rerun after an interruption skips the recorded samples and continues with the
next shard, giving the same shards as an uninterrupted run (same samples, none twice).
``out`` may be a URL (``s3://…``, :mod:`chorus.data.sink`): each shard is uploaded once closed,
then ``.progress.json``, and ``manifest.json`` last. One writer at a time: a second one gets
:class:`chorus.folder_lock.FolderLockedError` naming the holder.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import tarfile

import numpy as np

from chorus.data import records
from chorus.data.binning import events_to_frames
from chorus.data.cards import load_card
from chorus.data.errors import DataError
from chorus.data.manifest import MANIFEST, read_manifest, sha256_file
from chorus.data.sink import make_sink
from chorus.data.sources import make_source
from chorus.data.splits import SHUFFLED, SPLITS, assign_splits, shuffled_order

PROGRESS = ".progress.json"
_STATE: dict = {}          # per process: the source and options, set by _init (cleared after a
                           # serial run, so no source and no open file outlives shard())


def _init(card: dict, raw: str | None, frames: dict | None, source=None) -> None:
    """Set this process's state; a worker builds its own source, a serial run passes its own."""
    _STATE["card"] = card
    _STATE["raw"] = raw
    _STATE["source"] = make_source(card, raw) if source is None else source
    _STATE["frames"] = frames


def _close_source(source) -> None:
    close = getattr(source, "close", None)
    if close is not None:
        close()


def _encode(job: tuple[int, dict]) -> tuple[str, dict, dict]:
    """Read, validate and encode one item (runs in a worker process)."""
    number, item = job
    card, source, frames = _STATE["card"], _STATE["source"], _STATE["frames"]
    where = os.path.join(_STATE["raw"] or "", item["source"])
    if item.get("sample") is not None:
        where += f"#{item['sample']}"
    payload = source.load(item)
    kind = card["kind"]
    stats = {"events": 0, "payload_bytes": 0}
    if kind == "events":
        payload = records.compact_events(payload, card["sensor_size"], where)
        stats["events"] = len(payload)
        stats["payload_bytes"] = payload.nbytes
        if frames is not None:
            counts = events_to_frames(payload, card["sensor_size"], frames["T"], frames["size"],
                                      frames["mode"])
            payload = counts.astype(records.narrow_uint(int(counts.max())))
            kind = "frames"
    elif kind == "spikes":
        records.check_spikes(payload, int(card["sensor_size"][0]), where=where, key=None)
        stats["events"] = len(payload)
        stats["payload_bytes"] = payload.nbytes
    else:
        payload = np.ascontiguousarray(payload, dtype=np.float32)
        records.check_points(payload, where=where, key=None)
    meta = {"source": item["source"], "index": item["index"]}
    if item.get("sample") is not None:
        meta["sample"] = item["sample"]
    return f"s{number:07d}", records.encode(kind, payload, item["label"], meta), stats


def _tar_bytes(members: dict) -> int:
    return sum(512 + (len(v) + 511) // 512 * 512 for v in members.values())


class _ShardFile:
    """One shard being written to ``NAME.tmp`` with reproducible tar metadata."""

    def __init__(self, folder: str, name: str):
        import webdataset as wds

        self.path = os.path.join(folder, name)
        self.name = name
        self.stream = open(self.path + ".tmp", "wb")
        self.tar = wds.TarWriter(self.stream, encoder=False, mtime=0, user="chorus",
                                 group="chorus", mode=0o444)
        self.tar.tarstream.format = tarfile.USTAR_FORMAT    # plain 512-byte headers, no pax
        self.count = 0
        self.size = 0

    def add(self, key: str, members: dict) -> None:
        self.tar.write({"__key__": key, **members})
        self.count += 1
        self.size += _tar_bytes(members)

    def abort(self) -> None:
        """Close and delete the unfinished ``NAME.tmp`` (after an error)."""
        try:
            self.tar.close()
        except Exception:       # the error may have come from this stream; it is deleted anyway
            pass
        finally:
            self.stream.close()
        try:
            os.remove(self.path + ".tmp")
        except FileNotFoundError:
            pass

    def finish(self) -> dict:
        self.tar.close()
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        os.replace(self.path + ".tmp", self.path)
        return {"name": self.name, "count": self.count, "sha256": sha256_file(self.path),
                "bytes": os.path.getsize(self.path)}


def _fingerprint(card: dict, options: dict, splits: dict) -> str:
    public = {k: v for k, v in card.items() if not k.startswith("_")}
    data = json.dumps({"card": public, "options": options,
                       "splits": {k: len(v) for k, v in splits.items()}}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()


def _raw_bytes(raw: str | None, items: list[dict]) -> int:
    if not raw:
        return 0
    files = {item["source"] for item in items}
    total = 0
    for name in files:
        path = os.path.join(raw, name)
        if os.path.isfile(path):
            total += os.path.getsize(path)
    return total


def shard(card, raw=None, out=None, *, workers: int = 1, shard_size_mb: float = 64.0,
          frames: int | None = None, size: int | None = None, bins: str = "count",
          progress: bool = True) -> dict:
    """Write the shard set of ``card`` (a path or dict) from ``raw`` into ``out``; the manifest.

    ``frames=T, size=S`` writes pre-binned ``frames.npy`` counts ``[T, 2, S, S]`` (kind ``frames``)
    instead of events, for users who fix T and resolution. Without ``size`` the frames keep the
    sensor's ``[T, 2, H, W]`` (the manifest's ``frames.size`` is then the side of a square sensor,
    or None for a non-square one).
    """
    if out is None:
        raise DataError("no output folder given (--out)")
    card = load_card(card)
    raw = os.path.abspath(raw) if raw else None
    if raw and not os.path.isdir(raw):
        raise DataError("raw folder does not exist", where=raw)
    if frames is not None and card["kind"] != "events":
        raise DataError(f"--frames needs an event dataset, {card['name']} holds {card['kind']}",
                        where=card["_path"])
    frame_opts = None if frames is None else {"T": int(frames), "size": size, "mode": bins}
    if frame_opts is not None and frame_opts["size"] is None:
        width, height = int(card["sensor_size"][0]), int(card["sensor_size"][1])
        if width == height:
            frame_opts["size"] = width
        # else: size stays None and frames are stored at the sensor's [T, 2, H, W], unstretched
    sink = make_sink(os.fspath(out))
    try:
        with sink.lock():                              # before any work: a second writer stops here
            return _shard_locked(sink, card, raw, frame_opts, shard_size_mb, workers, progress)
    except BaseException:
        sink.discard_if_empty()                        # no empty folder left by a failed start
        raise


def _shard_locked(sink, card, raw, frame_opts, shard_size_mb, workers, progress) -> dict:
    """List the samples, split them and write: :func:`shard` with the output locked."""
    source = make_source(card, raw)
    try:
        items = source.items()
        raw = getattr(source, "raw", None) or raw      # the folder the source found under --raw
        for item in items:
            if not 0 <= item["label"] < len(card["classes"]):
                raise DataError(f"label {item['label']} outside the card's "
                                f"{len(card['classes'])} classes",
                                where=os.path.join(raw or "", item["source"]))
        policy = card["split"]
        splits = assign_splits(items, policy["policy"], policy["seed"], policy["val_fraction"],
                               where=card["_path"])
        splits = shuffled_order(splits, int(policy["seed"]))
        sample_order = {"shuffled": list(SHUFFLED), "seed": int(policy["seed"]),
                        "rule": "numpy default_rng([seed, 2, split number]).permutation"}
        options = {"shard_size_mb": shard_size_mb, "frames": frame_opts,
                   "sample_order": sample_order}
        fingerprint = _fingerprint(card, options, splits)
        return _write(sink, card, raw, source, items, splits, frame_opts, sample_order,
                      fingerprint, shard_size_mb, workers, progress)
    finally:
        _close_source(source)


def _write(sink, card, raw, source, items, splits, frame_opts, sample_order, fingerprint,
           shard_size_mb, workers, progress) -> dict:
    """Write the shards not yet recorded as done, then the manifest."""
    from tqdm import tqdm

    from chorus import __version__

    out = sink.location
    if sink.exists(MANIFEST):
        done_manifest = read_manifest(out)
        if done_manifest.get("fingerprint") == fingerprint:
            return done_manifest
        raise DataError("holds a finished shard set of another card or options; choose another "
                        "--out (nothing was changed)", where=out)
    state = {"fingerprint": fingerprint, "done": {s: [] for s in SPLITS},
             "stats": {"events": 0, "payload_bytes": 0}}
    saved = sink.read_json(PROGRESS)
    if saved is not None:
        state = saved
        if state.get("fingerprint") != fingerprint:
            raise DataError("holds an unfinished shard run of another card or options; choose "
                            "another --out (nothing was changed)", where=out)
    for name in os.listdir(sink.staging):
        if name.endswith(".tar.tmp") or (sink.staging != out and name.endswith(".tar")):
            os.remove(os.path.join(sink.staging, name))    # left by a killed run of this output

    jobs, owners = [], []
    for split in SPLITS:
        skip = sum(d["count"] for d in state["done"][split])
        for number in splits[split][skip:]:
            jobs.append((number, items[number]))
            owners.append(split)
    limit = shard_size_mb * 1024 * 1024
    bar = tqdm(total=len(items), initial=len(items) - len(jobs), desc=f"shard {card['name']}",
               unit="sample", disable=not progress)
    current: _ShardFile | None = None

    def close_current():
        nonlocal current
        if current is not None and current.count:
            split_of = current.name.split("-")[0]
            info = current.finish()
            sink.publish(current.name)                 # remote: uploaded, then deleted here
            state["done"][split_of].append(info)
            sink.write_json(PROGRESS, state)
        current = None

    pool = None
    init_args = (card, raw, frame_opts)
    if workers > 1 and len(jobs) > 1:
        pool = multiprocessing.get_context("fork").Pool(workers, _init, init_args)
        results = pool.imap(_encode, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
    else:
        _init(*init_args, source=source)
        results = map(_encode, jobs)
    try:
        for split, (key, members, stats) in zip(owners, results):
            if current is not None and not current.name.startswith(split + "-"):
                close_current()
            if current is None:
                index = len(state["done"][split])
                current = _ShardFile(sink.staging, f"{split}-{index:06d}.tar")
            current.add(key, members)
            for name, value in stats.items():
                state["stats"][name] += value
            if current.size >= limit:
                close_current()
            bar.update(1)
        close_current()
    finally:
        bar.close()
        if current is not None:                        # an error left a shard half written
            current.abort()
        if pool is not None:
            pool.terminate()
            pool.join()
        _STATE.clear()

    kind = "frames" if frame_opts else card["kind"]
    stats = dict(state["stats"])
    if stats["events"]:
        stats["bytes_per_event"] = stats["payload_bytes"] / stats["events"]
        raw_total = _raw_bytes(raw, items)
        if raw_total:
            stats["raw_bytes_per_event"] = raw_total / stats["events"]
    manifest = {
        "dataset": card["name"], "kind": kind, "classes": card["classes"],
        "num_classes": len(card["classes"]), "sensor_size": card.get("sensor_size"),
        "num_points": card.get("num_points"), "source_format": card["source"],
        "split_policy": dict(card["split"]), "sample_order": sample_order,
        "chorus_version": __version__,
        "fingerprint": fingerprint, "frames": frame_opts, "options": card["options"],
        "shard_size_mb": shard_size_mb, "stats": stats, "splits": {},
    }
    for split in SPLITS:
        done = state["done"][split]
        manifest["splits"][split] = {
            "shards": [d["name"] for d in done], "counts": [d["count"] for d in done],
            "sha256": [d["sha256"] for d in done], "bytes": [d["bytes"] for d in done],
            "num_samples": sum(d["count"] for d in done)}
    sink.write_json(MANIFEST, manifest)
    sink.remove(PROGRESS)
    return read_manifest(out)
