"""``chorus shard``: raw dataset → WebDataset shards + manifest (docs/method.md "Shards"), or verify them."""
from __future__ import annotations

import os
import sys
import time


def run(args) -> int:
    from chorus.data import DataError, shard, verify
    from chorus.folder_lock import FolderLockedError

    try:
        if args.verify:
            problems = verify(args.verify)
            for problem in problems:
                print(problem, file=sys.stderr)
            print(f"{args.verify}: {'OK' if not problems else f'{len(problems)} problems'}")
            return 1 if problems else 0
        if not args.card or not args.out:
            print("chorus shard: give CARD and --out FOLDER (or --verify FOLDER)", file=sys.stderr)
            return 2
        start = time.perf_counter()
        manifest = shard(args.card, args.raw, args.out, workers=args.workers,
                         shard_size_mb=args.shard_size, frames=args.frames, size=args.size,
                         bins=args.bins, progress=not args.quiet)
    except FolderLockedError as error:             # another writer holds --out
        print(f"chorus shard: error: {error}", file=sys.stderr)
        return 2
    except DataError as error:
        print(f"chorus shard: error: {error}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    total = 0
    for split, info in manifest["splits"].items():
        size_mb = sum(info["bytes"]) / 2**20
        total += sum(info["bytes"])
        print(f"{split:5s} {info['num_samples']:7d} samples in {len(info['shards']):4d} shards, "
              f"{size_mb:9.1f} MB")
    stats = manifest.get("stats", {})
    line = f"{manifest['dataset']}: {total / 2**20:.1f} MB in {elapsed:.1f} s -> {args.out}"
    if "bytes_per_event" in stats:
        line += f"; {stats['bytes_per_event']:.2f} bytes/event"
        if "raw_bytes_per_event" in stats:
            line += f" (raw files: {stats['raw_bytes_per_event']:.2f})"
    print(line)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("shard", help="turn a dataset (card + raw folder) into WebDataset shards")
    p.add_argument("card", nargs="?", help="dataset card, e.g. datasets/ndigits.yaml")
    p.add_argument("--raw", help="folder holding the raw dataset files as the archive unpacks (or "
                                 "the folder it was unpacked into; not for embedded cards)")
    p.add_argument("--out", help="output folder (or URL: s3://BUCKET/PREFIX, gs://…, file://…) "
                                 "for {split}-NNNNNN.tar + manifest.json")
    p.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                   help="reader processes (default: CPU count, at most 8)")
    p.add_argument("--shard-size", type=float, default=64.0, metavar="MB",
                   help="close a shard once it holds this many MB (default 64)")
    p.add_argument("--frames", type=int, metavar="T",
                   help="store pre-binned frames [T, 2, S, S] instead of events")
    p.add_argument("--size", type=int, metavar="S", help="frame size for --frames")
    p.add_argument("--bins", choices=("count", "time"), default="count",
                   help="--frames binning: equal event counts (default) or equal time")
    p.add_argument("--verify", metavar="FOLDER", help="re-check shard counts and sha256 (a folder "
                                                      "or a URL)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
