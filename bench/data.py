"""Benchmark: raw files through tonic's dataset + ToFrame vs Chorus shards through the reader.

Both pipelines produce ready ``[T, B, 2, 48, 48]`` float tensors with 2 workers (tonic: the usual
torch DataLoader with 2 worker processes; chorus: ``make_loader(workers=2)``, 2 reader threads); one
pass over the data per round, rounds interleaved, medians reported (noisy VM).

- tonic (the usual way): tonic's own dataset classes (``NMNIST`` for N-Digits written as N-MNIST
  ``.bin`` files, ``CIFAR10DVS`` for AEDAT4 files written by dv-processing) with
  ``Downsample`` + ``ToFrame(n_event_bins=T)`` in the workers; N-Digits frames (34×34) are resized to
  48×48 (nearest) after collation, as a user would.
- chorus: ``chorus.data.make_loader`` on the shard set, and on pre-binned frame shards
  (``--frames T --size 48``).

Datasets: N-Digits (embedded, 1797 samples, ~6.5k events each) and a CIFAR10-DVS-sized synthetic set
(``--cifar-samples`` recordings of ``--events`` events on a 128×128 sensor, AEDAT4). Bar (issue 3):
the reader is at least 5× faster. Also prints bytes per event: shards vs the raw files, and the
reader with 2 worker processes (``worker_kind="processes"``) beside its 2 threads.

Streaming (issue 14), in the same run: the same shard sets (written with ``--stream-shard-mb``
shards) read from a local folder, from a plain HTTP server (``python -m http.server``) and from an
S3-compatible server (moto's server mode, through s3fs), each in its own process on 127.0.0.1:
cold (an empty node-local cache every pass: the manifest request, download + sha256 check + cache
write) and warm (a later epoch of a run: the cache already full, the manifest read once at the start
of the run as the training loop does), plus S3 range reads without a cache; samples/s, shard MB/s and the ratio to
the local folder. Bars: warm >= 0.9x local, cold from the S3 server >= 0.5x local.

    .venv/bin/python bench/data.py [--rounds 5] [--T 10] [--cifar-samples 80] [--events 200000]
                                   [--stream-shard-mb 16] [--no-stream]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import interleaved_medians, print_table  # noqa: E402
from _stores import http_server, s3_server, upload  # noqa: E402

from chorus.data import make_loader, read_manifest, shard  # noqa: E402
from chorus.data.cards import load_card  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


def one_split_card(name):
    """The dataset card with every sample in ``train``: one loader covers the same samples as tonic."""
    card = load_card(os.path.join(ROOT, "datasets", name))
    card["split"] = {"policy": "1:0-first", "seed": 0, "val_fraction": 0.0}
    return {k: v for k, v in card.items() if not k.startswith("_")}


def shard_samples(folder):
    """(events, label) of every sample of every split, read from the tars."""
    manifest = read_manifest(folder)
    for info in manifest["splits"].values():
        for name in info["shards"]:
            members = {}
            with tarfile.open(os.path.join(folder, name)) as tar:
                for m in tar:
                    key, ext = m.name.split(".", 1)
                    members.setdefault(key, {})[ext] = tar.extractfile(m).read()
            for files in members.values():
                yield np.load(io.BytesIO(files["events.npy"])), int(files["cls"])


def write_nmnist_bin(path, events):
    """N-MNIST 40-bit events (the format tonic's NMNIST reads)."""
    raw = np.zeros((len(events), 5), dtype=np.uint8)
    t = events["t"].astype(np.int64)
    raw[:, 0], raw[:, 1] = events["x"], events["y"]
    raw[:, 2] = (events["p"].astype(np.int64) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    with open(path, "wb") as f:
        f.write(raw.tobytes())


def synthetic_recording(rng, n):
    """A CIFAR10-DVS-sized recording: a moving blob of activity plus background, 1.3 s."""
    t = np.sort(rng.integers(0, 1_300_000, n))
    cx = 64 + 30 * np.sin(t / 2e5 + rng.uniform(0, 6))
    cy = 64 + 30 * np.cos(t / 3e5 + rng.uniform(0, 6))
    x = np.clip(np.round(cx + rng.normal(0, 18, n)), 0, 127).astype(np.int64)
    y = np.clip(np.round(cy + rng.normal(0, 18, n)), 0, 127).astype(np.int64)
    return x, y, t, rng.integers(0, 2, n)


def write_aedat4(path, x, y, t, p):
    import dv_processing as dv

    store = dv.EventStore()
    for e in zip(t.tolist(), x.tolist(), y.tolist(), (p > 0).tolist()):
        store.push_back(*e)
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig(
        "DVS128", (128, 128)))
    writer.writeEvents(store)
    del writer


def tonic_bytes_per_event(dataset_class) -> int:
    """Bytes per event of a tonic dataset class's events in memory: its structured ``dtype``
    (NMNIST: four int64 fields, 32; CIFAR10DVS: u8 t, u2 x, u2 y, bool p, 13)."""
    return int(dataset_class.dtype.itemsize)


def tonic_loader(dataset, T, batch):
    return torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=2, shuffle=False)


def tonic_pass(dataset, batch, resize):
    def run():
        n = 0
        for frames, _ in tonic_loader(dataset, None, batch):
            x = frames.float().transpose(0, 1)              # [T, B, 2, H, W]
            if resize:
                x = torch.nn.functional.interpolate(x.flatten(0, 1), size=(48, 48),
                                                    mode="nearest").unflatten(0, x.shape[:2])
            n += x.shape[1]
        return n
    return run


def chorus_pass(folder, T, batch, **options):
    def run():
        n = 0
        for x, _ in make_loader(folder, "train", T=T, size=48, batch_size=batch, workers=2,
                                **options):
            n += x.shape[1]
        return n
    return run


class ColdCaches:
    """A new, empty cache folder for every cold pass; ``clear()`` (untimed) removes the old ones."""

    def __init__(self, root):
        self.root, self.n = root, 0

    def next(self):
        self.n += 1
        return os.path.join(self.root, f"cold-{self.n}")

    def clear(self):
        import shutil

        for name in os.listdir(self.root) if os.path.isdir(self.root) else ():
            shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)


def streaming_candidates(sets, work, T, B, s3, http, cold):
    """Local / HTTP / S3 readers of the shard sets ``{dataset: folder under work}``."""
    cands = {}
    for dataset, folder in sets.items():
        rel = os.path.relpath(folder, work)
        urls = {"HTTP": f"{http}/{rel}", "S3": f"{s3}/{rel}"}
        cands[f"{dataset} local folder"] = chorus_pass(folder, T, B)
        for store, url in urls.items():
            warm = os.path.join(work, "warm-caches", dataset, store)
            # a later epoch of a run: the cache holds the shards and the run has read its manifest
            # (once per run, chorus.train.components.make_loader); the cold pass reads it too
            cands[f"{dataset} {store} warm cache"] = chorus_pass(read_manifest(url), T, B, cache_dir=warm)

            def cold_run(url=url):
                return chorus_pass(url, T, B, cache_dir=cold.next())()
            cands[f"{dataset} {store} cold cache"] = cold_run
        cands[f"{dataset} S3 range reads, no cache"] = chorus_pass(
            urls["S3"], T, B, cache_gb=0, remote_read="range")
    return cands


def streaming_report(sets, cands, counts, medians):
    rows, bars = [], {}
    for dataset, folder in sets.items():
        total = sum(read_manifest(folder)["splits"]["train"]["bytes"])
        base = counts[f"{dataset} local folder"] / medians[f"{dataset} local folder"]
        for name in cands:
            if name.startswith(dataset + " "):
                rate = counts[name] / medians[name]
                rows.append([name, counts[name], f"{medians[name]:.3f}", f"{rate:.0f}",
                             f"{total / medians[name] / 1e6:.0f}", f"{rate / base:.2f}x"])
                bars[name] = rate / base
    print_table(["pipeline", "samples", "pass s", "samples/s", "shard MB/s", "vs local"], rows)
    warm = {k: round(v, 2) for k, v in bars.items() if "warm" in k}
    cold = {k: round(v, 2) for k, v in bars.items() if "S3 cold" in k}
    print("\nbar: warm cache >= 0.9x the local folder: "
          + ("PASS" if all(v >= 0.9 for v in warm.values()) else "FAIL") + " " + json.dumps(warm))
    print("bar: cold cache from the S3 server >= 0.5x the local folder: "
          + ("PASS" if all(v >= 0.5 for v in cold.values()) else "FAIL") + " " + json.dumps(cold))


def folder_bytes(folder, suffix):
    total = 0
    for root, _, files in os.walk(folder):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files if f.endswith(suffix))
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--T", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cifar-samples", type=int, default=80)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--workdir", help="keep the generated files here (default: a temp folder)")
    ap.add_argument("--stream-shard-mb", type=float, default=16.0,
                    help="shard size of the sets read by the streaming rows (default 16)")
    ap.add_argument("--no-stream", action="store_true", help="skip the HTTP/S3 streaming rows")
    args = ap.parse_args()
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="chorus-bench-data-")
    os.makedirs(args.workdir, exist_ok=True)
    if args.no_stream:
        return run(args, None, None)
    with s3_server() as s3, http_server(args.workdir) as http:   # stopped when the run ends
        return run(args, s3, http)


def run(args, s3, http) -> int:
    torch.set_num_threads(1)
    import tonic
    import tonic.transforms as tt

    work = args.workdir
    T, B = args.T, args.batch
    setup = []

    # N-Digits: shards (embedded generator), raw N-MNIST .bin files, pre-binned frames
    start = time.perf_counter()
    nd_shards = os.path.join(work, "ndigits")
    nd_card = one_split_card("ndigits.yaml")
    shard(nd_card, None, nd_shards, workers=2, progress=False)
    setup.append(("shard N-Digits (generate + write)", time.perf_counter() - start))
    nd_raw = os.path.join(work, "raw_nmnist")

    # tonic's own classes, told that the files are present (they never download then); tonic
    # names the data folder after the class, hence the same class names
    NDigitsAsNMNIST = type("NMNIST", (tonic.datasets.NMNIST,), {"_check_exists": lambda s: True})
    train_dir = os.path.join(nd_raw, "NMNIST", NDigitsAsNMNIST.train_folder)
    if not os.path.isdir(train_dir):
        counts = {}
        for events, label in shard_samples(nd_shards):
            folder = os.path.join(train_dir, str(label))
            os.makedirs(folder, exist_ok=True)
            counts[label] = counts.get(label, 0) + 1
            write_nmnist_bin(os.path.join(folder, f"{counts[label]:05d}.bin"), events)
    nd_tonic = NDigitsAsNMNIST(nd_raw, train=True,
                               transform=tt.ToFrame(sensor_size=(34, 34, 2), n_event_bins=T))
    start = time.perf_counter()
    nd_frames = os.path.join(work, f"ndigits_frames_T{T}")
    shard(nd_card, None, nd_frames, workers=2, frames=T, size=48, progress=False)
    setup.append((f"shard N-Digits pre-binned T={T} 48x48", time.perf_counter() - start))

    # CIFAR10-DVS-sized synthetic set: AEDAT4 files, shards, pre-binned frames
    SyntheticCIFAR10DVS = type("CIFAR10DVS", (tonic.datasets.CIFAR10DVS,),
                               {"_check_exists": lambda s: True})

    c_raw = os.path.join(work, "raw_cifar")
    class_root = os.path.join(c_raw, "CIFAR10DVS", SyntheticCIFAR10DVS.folder_name)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for i in range(args.cifar_samples):
        cls = CIFAR_CLASSES[i % 10]
        path = os.path.join(class_root, cls, f"cifar10_{cls}_{i // 10}.aedat4")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_aedat4(path, *synthetic_recording(rng, args.events))
    setup.append((f"write {args.cifar_samples} AEDAT4 files (dv-processing)",
                  time.perf_counter() - start))
    c_tonic = SyntheticCIFAR10DVS(c_raw, transform=tt.Compose([
        tt.Downsample(spatial_factor=48 / 128),
        tt.ToFrame(sensor_size=(48, 48, 2), n_event_bins=T)]))
    card = one_split_card("cifar10dvs.yaml")
    c_shards = os.path.join(work, "cifar_shards")
    start = time.perf_counter()
    shard(card, class_root, c_shards, workers=2, progress=False)
    setup.append(("shard CIFAR10-DVS-sized (read AEDAT4 + write)", time.perf_counter() - start))
    c_frames = os.path.join(work, f"cifar_frames_T{T}")
    start = time.perf_counter()
    shard(card, class_root, c_frames, workers=2, frames=T, size=48, progress=False)
    setup.append((f"shard CIFAR10-DVS-sized pre-binned T={T} 48x48", time.perf_counter() - start))

    sets, cold = {}, ColdCaches(os.path.join(work, "cold-caches"))
    if s3 is not None:
        start = time.perf_counter()
        for dataset, card_, raw_ in (("N-Digits", nd_card, None), ("CIFAR-sized", card, class_root)):
            folder = os.path.join(work, "stream", f"{dataset}-{args.stream_shard_mb:g}MB")
            shard(card_, raw_, folder, workers=2, shard_size_mb=args.stream_shard_mb,
                  progress=False)
            upload(folder, f"{s3}/{os.path.relpath(folder, work)}")
            sets[dataset] = folder
        setup.append((f"shard the streaming sets ({args.stream_shard_mb:g} MB shards) + upload "
                      f"to S3", time.perf_counter() - start))
    cands = {
        "N-Digits tonic NMNIST+ToFrame": tonic_pass(nd_tonic, B, resize=True),
        "N-Digits chorus shards": chorus_pass(nd_shards, T, B),
        "N-Digits chorus shards, 2 processes": chorus_pass(nd_shards, T, B,
                                                           worker_kind="processes"),
        "N-Digits chorus frame shards": chorus_pass(nd_frames, T, B),
        "CIFAR-sized tonic CIFAR10DVS+ToFrame": tonic_pass(c_tonic, B, resize=False),
        "CIFAR-sized chorus shards": chorus_pass(c_shards, T, B),
        "CIFAR-sized chorus shards, 2 processes": chorus_pass(c_shards, T, B,
                                                              worker_kind="processes"),
        "CIFAR-sized chorus frame shards": chorus_pass(c_frames, T, B),
    }
    stream = streaming_candidates(sets, work, T, B, s3, http, cold) if sets else {}
    everything = {**cands, **stream}
    counts = {name: fn() for name, fn in everything.items()}  # also checks equal sample counts
    assert counts["N-Digits tonic NMNIST+ToFrame"] == counts["N-Digits chorus shards"]
    assert counts["CIFAR-sized tonic CIFAR10DVS+ToFrame"] == counts["CIFAR-sized chorus shards"]
    for name in stream:
        dataset = name.split(" ")[0]
        assert counts[name] == counts[f"{dataset} chorus shards"], name
    medians = interleaved_medians(everything, rounds=args.rounds, warmup=1, before=cold.clear)

    print(f"\nsetup (one-off), workdir {work}")
    for name, seconds in setup:
        print(f"  {name}: {seconds:.1f} s")
    print(f"\nsamples/s to ready [T={T}, B={B}, 2, 48, 48] float tensors, 2 workers each, "
          f"median of {args.rounds} passes")
    rows = []
    for dataset, peer in (("N-Digits", "N-Digits tonic NMNIST+ToFrame"),
                          ("CIFAR-sized", "CIFAR-sized tonic CIFAR10DVS+ToFrame")):
        base = counts[peer] / medians[peer]
        for name in cands:
            if name.startswith(dataset):
                rate = counts[name] / medians[name]
                rows.append([name, counts[name], f"{medians[name]:.3f}", f"{rate:.0f}",
                             f"{rate / base:.1f}x"])
    print_table(["pipeline", "samples", "pass s", "samples/s", "vs tonic"], rows)

    print("\nstorage, bytes per event")
    rows = []
    for name, folder, raw_folder, suffix, peer in (
            ("N-Digits", nd_shards, nd_raw, ".bin", NDigitsAsNMNIST),
            ("CIFAR-sized", c_shards, c_raw, ".aedat4", SyntheticCIFAR10DVS)):
        stats = read_manifest(folder)["stats"]
        shard_total = sum(sum(i["bytes"]) for i in read_manifest(folder)["splits"].values())
        rows.append([name, stats["events"], f"{stats['bytes_per_event']:.2f}",
                     f"{shard_total / stats['events']:.2f}",
                     f"{folder_bytes(raw_folder, suffix) / stats['events']:.2f} ({suffix})",
                     str(tonic_bytes_per_event(peer))])
    print_table(["dataset", "events", "payload", "shard files", "raw files", "tonic in memory"],
                rows)
    ratios = {d: (counts[c] / medians[c]) / (counts[p] / medians[p]) for d, c, p in (
        ("N-Digits", "N-Digits chorus shards", "N-Digits tonic NMNIST+ToFrame"),
        ("CIFAR-sized", "CIFAR-sized chorus shards", "CIFAR-sized tonic CIFAR10DVS+ToFrame"))}
    verdict = all(r >= 5 for r in ratios.values())
    print("\nbar: chorus event shards >= 5x tonic on both: "
          + ("PASS" if verdict else "FAIL") + " " + json.dumps({k: round(v, 1)
                                                               for k, v in ratios.items()}))
    if stream:
        print(f"\nstreaming: the same shard sets ({args.stream_shard_mb:g} MB shards) from a local "
              f"folder, a plain HTTP server and an S3-compatible server (moto) on 127.0.0.1, "
              f"[T={T}, B={B}, 2, 48, 48], 2 reader threads each, median of {args.rounds} passes")
        streaming_report(sets, stream, counts, medians)
    return 0


if __name__ == "__main__":
    sys.exit(main())
