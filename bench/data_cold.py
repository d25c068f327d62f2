"""Where the cold streaming pass spends its time (issue 14): the S3 server's own ceiling vs chorus.

On the streaming sets of ``bench/data.py`` (N-Digits and the CIFAR-sized set, ``--stream-shard-mb``
shards) served by moto's S3 server on 127.0.0.1 (its own process), interleaved rounds, medians:

- raw GET ceiling, no chorus: every shard of the split into memory with boto3 (``get_object`` +
  ``read``) and with s3fs (``cat_file`` with the byte range, what :mod:`chorus.data.remote` does),
  one request at a time and two at a time (the reader's two prefetch threads);
- the pieces of chorus's cold pass alone: sha256 of the shard bytes, writing them into a cache
  folder (write + rename), the local-folder read (decode + bin, ``workers=2``);
- chorus's cold pass (empty cache every pass) and warm pass.

Prints bytes/s of each, the cold and warm ratios to the local read, and the CPU seconds each
step costs this process (all threads) and the server process: with 2 cores, wall time cannot be
below (client + server CPU) / 2. ``--prefetch`` lists the ``prefetch_shards`` values tried for the
cold pass. With ``--profile`` also a cProfile of one cold pass (all the threads it starts).

Measured (2026-12-03, 2 shared AMD EPYC cores, load 1-5 from other work, 16 MB shards, 87 MB
N-Digits / 112 MB CIFAR-sized): the server is not the ceiling — one s3fs GET at a time reads
415-694 MB/s (the server spends 0.05 CPU s per pass), chorus cold 134-342 MB/s. The cold pass
costs 0.4-0.56 CPU s in this process against 0.11-0.24 for the local read: download on s3fs's
event loop 0.05-0.11, sha256 0.06-0.08, cache write 0.03-0.1, and its wall time is about the sum
of the pieces measured alone (no overlap is left on 2 shared cores); the merged profile is
waiting on the downloads plus binning, sha256 and the write. Tried and not kept: one fetch thread
instead of two (0.43x vs 0.45x N-Digits, 0.24x vs 0.25x CIFAR-sized, same run), prefetch 1 or
3 (within noise), the downloads in a helper process (forked per pass: 0.24x/0.15x vs
0.54x/0.36x in-process; kept across passes: +10% N-Digits, -25% CIFAR-sized),
``sys.setswitchinterval(1e-4)`` (+5-20%, but process-wide), boto3 GETs in place of s3fs
(``--boto3-cold``: 0.41x vs 0.37x CIFAR-sized, 2026-12-03), each shard streamed into the cache
while hashed (``--stream-cold``; 2026-12-04, an idle 2-core Zen4 host, 5 runs: 0.32-0.48x against
0.37-0.51x for the whole-shard fetch in the same runs, below it in every run).

    .venv/bin/python bench/data_cold.py [--rounds 3] [--workdir DIR] [--stream-shard-mb 16]
                                        [--cifar-samples 80] [--events 200000] [--profile]
                                        [--prefetch 1,2,3] [--only CIFAR-sized] [--boto3-cold]
                                        [--stream-cold]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(__file__))
from _common import interleaved_medians, print_table  # noqa: E402
from _stores import s3_server, upload  # noqa: E402
from data import (CIFAR_CLASSES, ColdCaches, chorus_pass, one_split_card,  # noqa: E402
                  synthetic_recording, write_aedat4)

from chorus.data import read_manifest, remote, shard  # noqa: E402
from chorus.data.cache import ShardCache  # noqa: E402


def make_sets(work, shard_mb, cifar_samples, events):
    """The two streaming shard sets of bench/data.py under ``work`` (kept between runs)."""
    import numpy as np

    import tonic

    class_root = os.path.join(work, "raw_cifar", "CIFAR10DVS",
                              tonic.datasets.CIFAR10DVS.folder_name)
    rng = np.random.default_rng(0)
    for i in range(cifar_samples):
        cls = CIFAR_CLASSES[i % 10]
        path = os.path.join(class_root, cls, f"cifar10_{cls}_{i // 10}.aedat4")
        recording = synthetic_recording(rng, events)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_aedat4(path, *recording)
    sets = {}
    for dataset, card, raw in (("N-Digits", one_split_card("ndigits.yaml"), None),
                               ("CIFAR-sized", one_split_card("cifar10dvs.yaml"), class_root)):
        folder = os.path.join(work, "stream", f"{dataset}-{shard_mb:g}MB")
        if not os.path.exists(os.path.join(folder, "manifest.json")):
            shard(card, raw, folder, workers=2, shard_size_mb=shard_mb, progress=False)
        sets[dataset] = folder
    return sets


def raw_gets(bucket, key_prefix, names, sizes, client, threads):
    """Every shard into memory, ``threads`` requests at a time; ``client`` is boto3 or s3fs."""
    def one(i):
        key = f"{key_prefix}/{names[i]}"
        if client == "boto3":
            import boto3

            s3 = _boto3_client(boto3)
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        else:
            import fsspec

            fs = fsspec.filesystem("s3")
            data = fs.cat_file(f"{bucket}/{key}", start=0, end=sizes[i])
        assert len(data) == sizes[i]

    def run():
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(len(names))))
    return run


_CLIENTS = {}


def boto3_fetch(url, *, retries=3, parts=1, size=None):
    """:func:`chorus.data.remote.fetch` by boto3's blocking ``get_object`` (urllib3 reads) instead of
    s3fs's event loop, for ``--boto3-cold``: does a blocking client overlap better with decoding?
    One plain GET of the whole object: ``retries`` and ``parts`` are accepted and ignored (a bench
    against a local server, not a reader to train with)."""
    import boto3

    bucket, key = url[len("s3://"):].split("/", 1)
    ranged = {"Range": f"bytes=0-{size - 1}"} if size else {}
    return _boto3_client(boto3).get_object(Bucket=bucket, Key=key, **ranged)["Body"].read()


def streamed_get(cache, url, sha256, size, download):
    """:meth:`chorus.data.cache.ShardCache.get` with the shard streamed into its reserved part file
    by boto3 (1 MB ``readinto`` chunks, sha256 updated per chunk) instead of fetched whole, hashed
    and then written, for ``--stream-cold``: one pass over the bytes while they are in the CPU's
    cache. Bench only: it reaches into the cache's lock and reservation and botocore's raw stream
    (to reuse one buffer); every shard must fit the cache, a mismatch is an assertion."""
    import boto3

    from chorus.data.cache import _Flock

    f = cache._open(sha256)
    if f is not None:
        return "file", f
    with _Flock(os.path.join(cache.folder, f"{sha256}.lock"), remove=True):
        f = cache._open(sha256)
        if f is None:
            part = cache._reserve(sha256, size)
            assert part is not None, f"{url}: --stream-cold needs every shard to fit the cache"
            bucket, key = url[len("s3://"):].split("/", 1)
            raw = _boto3_client(boto3).get_object(Bucket=bucket, Key=key)["Body"]._raw_stream
            digest, buf = hashlib.sha256(), bytearray(1 << 20)
            view = memoryview(buf)
            with open(part, "r+b") as out:
                while n := raw.readinto(buf):
                    digest.update(view[:n])
                    out.write(view[:n])
            assert digest.hexdigest() == sha256, url
            os.replace(part, cache.path(sha256))
            f = cache._open(sha256)
    return "file", f


def swapped(fn, owner, name, value):
    """``fn`` run with ``owner.name`` set to ``value``, restored after: chorus's remote fetch
    (``--boto3-cold``) or the shard cache's ``get`` (``--stream-cold``)."""
    def run():
        kept = getattr(owner, name)
        setattr(owner, name, value)
        try:
            return fn()
        finally:
            setattr(owner, name, kept)
    return run


def _boto3_client(boto3):
    import threading

    key = threading.get_ident()
    if key not in _CLIENTS:
        _CLIENTS[key] = boto3.session.Session().client("s3")
    return _CLIENTS[key]


def pieces(folder, work):
    """sha256 and cache-write passes over the shard bytes (held in memory, untimed read)."""
    manifest = read_manifest(folder)["splits"]["train"]
    blobs = []
    for name in manifest["shards"]:
        with open(os.path.join(folder, name), "rb") as f:
            blobs.append(f.read())
    out = os.path.join(work, "write-test")

    def sha():
        for b in blobs:
            hashlib.sha256(b).hexdigest()

    def write():
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        for i, b in enumerate(blobs):
            part = os.path.join(out, f"{i}.part")
            with open(part, "wb") as f:
                f.write(b)
            os.replace(part, os.path.join(out, f"{i}.tar"))
    return {"sha256": sha, "cache write": write}


def profiled(fn, title: str, top: int = 22) -> None:
    """cProfile of ``fn()`` in every thread it starts (reader, binning and fetch threads; not
    s3fs's event-loop thread, running already, whose cost is the raw GET rows'), merged, by own
    time."""
    import cProfile
    import pstats
    import threading

    profiles, run = [], threading.Thread.run

    def run_profiled(self):
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()
        try:
            run(self)
        finally:
            prof.disable()

    threading.Thread.run = run_profiled
    main = cProfile.Profile()
    try:
        main.enable()
        fn()
        main.disable()
    finally:
        threading.Thread.run = run
    print(f"\ncProfile, {title}: every thread it started, merged, by own time")
    pstats.Stats(main, *profiles).sort_stats("tottime").print_stats(top)


def with_cpu(fn, server, cpu):
    """``fn``, also appending (own CPU s, the server's CPU s) of each call to ``cpu``."""
    def run():
        before = (time.process_time(), sum(server.cpu_times()[:2]))
        fn()
        cpu.append((time.process_time() - before[0], sum(server.cpu_times()[:2]) - before[1]))
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--T", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cifar-samples", type=int, default=80)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--stream-shard-mb", type=float, default=16.0)
    ap.add_argument("--workdir")
    ap.add_argument("--only", default="", help="one dataset (N-Digits or CIFAR-sized)")
    ap.add_argument("--prefetch", default="2", help="prefetch_shards values, comma-separated")
    ap.add_argument("--profile", action="store_true", help="cProfile one cold pass")
    ap.add_argument("--boto3-cold", action="store_true",
                    help="also chorus's cold pass with boto3 downloads instead of s3fs")
    ap.add_argument("--stream-cold", action="store_true",
                    help="also chorus's cold pass with each shard streamed into the cache by boto3")
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="chorus-bench-cold-")
    os.makedirs(work, exist_ok=True)
    sets = make_sets(work, args.stream_shard_mb, args.cifar_samples, args.events)
    if args.only:
        sets = {args.only: sets[args.only]}
    with s3_server() as s3:
        bucket = s3[len("s3://"):]
        cold = ColdCaches(os.path.join(work, "cold-caches"))
        cands, totals = {}, {}
        for dataset, folder in sets.items():
            rel = os.path.relpath(folder, work)
            upload(folder, f"{s3}/{rel}")
            info = read_manifest(folder)["splits"]["train"]
            totals[dataset] = sum(info["bytes"])
            for client in ("boto3", "s3fs"):
                for threads in (1, 2):
                    cands[f"{dataset} raw GET {client} x{threads}"] = raw_gets(
                        bucket, rel, info["shards"], info["bytes"], client, threads)
            for name, fn in pieces(folder, work).items():
                cands[f"{dataset} {name}"] = fn
            cands[f"{dataset} chorus local folder"] = chorus_pass(folder, args.T, args.batch)

            for ahead in [int(v) for v in args.prefetch.split(",")]:
                def cold_run(url=f"{s3}/{rel}", ahead=ahead):
                    return chorus_pass(url, args.T, args.batch, cache_dir=cold.next(),
                                       prefetch_shards=ahead)()
                suffix = "" if ahead == 2 else f", prefetch {ahead}"
                cands[f"{dataset} chorus S3 cold{suffix}"] = cold_run
                if args.boto3_cold:
                    cands[f"{dataset} chorus S3 cold{suffix}, boto3 GET"] = swapped(
                        cold_run, remote, "fetch", boto3_fetch)
                if args.stream_cold:
                    cands[f"{dataset} chorus S3 cold{suffix}, boto3 streamed"] = swapped(
                        cold_run, ShardCache, "get", streamed_get)
            cands[f"{dataset} chorus S3 warm"] = chorus_pass(      # a later epoch: manifest read once
                read_manifest(f"{s3}/{rel}"), args.T, args.batch,
                cache_dir=os.path.join(work, "warm-caches", dataset))
        import psutil

        server = psutil.Process().children()[0]
        cpu = {name: [] for name in cands}
        cands = {name: with_cpu(fn, server, cpu[name]) for name, fn in cands.items()}
        medians = interleaved_medians(cands, rounds=args.rounds, warmup=1, before=cold.clear)
        rows = []
        for dataset in sets:
            local = medians[f"{dataset} chorus local folder"]
            for name in cands:
                if name.startswith(dataset + " "):
                    own = sorted(c[0] for c in cpu[name][1:])[len(cpu[name][1:]) // 2]
                    srv = sorted(c[1] for c in cpu[name][1:])[len(cpu[name][1:]) // 2]
                    rows.append([name, f"{medians[name]:.3f}",
                                 f"{totals[dataset] / medians[name] / 1e6:.0f}",
                                 f"{local / medians[name]:.2f}x", f"{own:.2f}", f"{srv:.2f}"])
        print(f"\ncold-path pieces, {args.stream_shard_mb:g} MB shards, median of "
              f"{args.rounds} interleaved rounds (MB/s = the split's shard bytes / time)")
        print_table(["step", "s", "shard MB/s", "vs local read", "CPU s", "server CPU s"],
                    rows)
        if args.profile:
            for dataset, folder in sets.items():
                cold.clear()
                rel = os.path.relpath(folder, work)
                profiled(chorus_pass(f"{s3}/{rel}", args.T, args.batch, cache_dir=cold.next()),
                         f"one cold pass of {dataset}")
        cold.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
