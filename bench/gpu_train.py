"""GPU training throughput through the real loop (`chorus train` under `accelerate launch`), bf16:

- data parallel over every visible GPU (DDP; a single process when there is one GPU),
- DeepSpeed ZeRO-2 (infra/deepspeed/zero2.json) over the same GPUs,

for the quickstart model (vgg_small, N-Digits 34x34, T=4) and a CIFAR10-DVS-shaped VGG-9 (2x48x48,
T=5, 10 classes: N-Digits resized to 48x48 by the reader, so no dataset download is needed).
Each run trains `--steps` optimizer steps; samples/s is the mean over the logged intervals after the
first (warm-up). Prints one table; needs CUDA. Usage: python bench/gpu_train.py [--steps 60]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "quickstart vgg_small T=4 34x34": ["recipes/quickstart.yaml"],
    "VGG-9 T=5 48x48 (CIFAR10-DVS shape)": ["recipes/cifar10dvs_vgg9.yaml", "data.size=48", "data.augment=false"],
}


def run(label, recipe_args, mode, gpus, steps, batch, shards, tmp, port):
    out = tempfile.mkdtemp(dir=tmp)
    recipe, *extra = recipe_args
    overrides = [f"data.shards={shards}", *extra, "train.precision=bf16", f"train.max_steps={steps}",
                 "train.log_every=10", "train.eval_test=false", "train.progress=false", "tracking.enabled=false",
                 f"train.out_dir={out}/run", "train.keep_last=1", f"data.batch_size={batch}", "data.workers=4",
                 "diagnostics.every=0"]
    launcher = [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--num_machines", "1",
                "--num_processes", str(gpus), "--mixed_precision", "bf16", "--dynamo_backend", "no",
                "--main_process_port", str(port)]
    if mode == "ZeRO-2":
        launcher += ["--use_deepspeed", "--deepspeed_config_file", "infra/deepspeed/zero2.json"]
    elif gpus > 1:
        launcher += ["--multi_gpu"]
    cmd = [*launcher, "-m", "chorus.cli", "train", recipe, *overrides]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"),
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        print(f"{label} / {mode} failed:\n{p.stderr[-4000:]}", file=sys.stderr)
        return None, wall
    with open(os.path.join(out, "run", "metrics.jsonl")) as f:
        rates = [r["train/samples_per_s"] for r in map(json.loads, f) if "train/samples_per_s" in r]
    shutil.rmtree(out, ignore_errors=True)
    return (statistics.mean(rates[1:]) if len(rates) > 1 else rates[0]), wall


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64, help="per GPU")
    ap.add_argument("--shards", default=os.path.join(ROOT, "data", "ndigits"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench/gpu_train.py needs a CUDA GPU", file=sys.stderr)
        return 2
    gpus = torch.cuda.device_count()
    start = time.perf_counter()
    if not os.path.isfile(os.path.join(args.shards, "manifest.json")):
        subprocess.run([sys.executable, "-m", "chorus.cli", "shard", "datasets/ndigits.yaml", "--out", args.shards,
                        "--workers", str(min(8, os.cpu_count() or 1)), "--quiet"], check=True, cwd=ROOT)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        port = 29700
        for label, recipe_args in MODELS.items():
            for mode in ("DDP", "ZeRO-2"):
                port += 1
                rate, wall = run(label, recipe_args, mode, gpus, args.steps, args.batch, args.shards, tmp, port)
                rows.append((label, mode, rate, wall))
                print(f"  {label} / {mode}: {rate if rate is None else round(rate, 1)} samples/s ({wall:.0f} s)",
                      file=sys.stderr, flush=True)
    name = torch.cuda.get_device_name(0)
    print(f"\n{gpus} x {name}, bf16, batch {args.batch} per GPU, {args.steps} steps per run "
          f"(DDP with one GPU = one process)\n")
    print("| model | mode | samples/s | run wall time (s) |")
    print("|---|---|---|---|")
    for label, mode, rate, wall in rows:
        print(f"| {label} | {mode} | {'failed' if rate is None else f'{rate:.0f}'} | {wall:.0f} |")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0 if all(r[2] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
