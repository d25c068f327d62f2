"""Part (d) of bench/gpu_check.py: the real training loop, ``chorus train``, on the lent GPU(s).

What bench/gpu_train.py did before it was merged here: the quickstart recipe (vgg_small, N-Digits
34×34, T = 4, MPS + TASG: docs/method.md, "The spiking core") trained for ``STEPS`` optimizer steps in
bf16 under ``accelerate launch`` — DDP over every visible GPU (one process with one GPU) and DeepSpeed
ZeRO-2 (``infra/deepspeed/zero2.json``) when deepspeed is installed. samples/s is the mean of the
loop's logged ``train/samples_per_s`` after the first interval (warm-up). The N-Digits shards are made
(embedded data, no download) under the output folder unless ``CHORUS_GPU_CHECK_SHARDS`` names a shard
set. A dry run trains 2 fp32 steps in one plain CPU process instead.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = "recipes/quickstart.yaml"
STEPS = 60


def _env() -> dict:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    platform_dir = os.path.join(ROOT, "platform")  # this checkout's chorus, also in the children
    env["PYTHONPATH"] = os.pathsep.join(p for p in (platform_dir, env.get("PYTHONPATH")) if p)
    return env


def shards(work: str) -> str:
    given = os.environ.get("CHORUS_GPU_CHECK_SHARDS")
    if given and os.path.isfile(os.path.join(given, "manifest.json")):
        return given
    out = os.path.join(work, "ndigits")
    if not os.path.isfile(os.path.join(out, "manifest.json")):
        subprocess.run([sys.executable, "-m", "chorus.cli", "shard", "datasets/ndigits.yaml", "--out", out,
                        "--workers", str(min(8, os.cpu_count() or 1)), "--quiet"], check=True, cwd=ROOT,
                       env=_env(), capture_output=True, text=True)
    return out


def train_once(mode: str, data: str, work: str, dry_run: bool, timeout: float, port: int) -> dict:
    import torch

    out = tempfile.mkdtemp(dir=work)
    steps, batch = (2, 8) if dry_run else (STEPS, 64)
    overrides = [f"data.shards={data}", f"train.precision={'fp32' if dry_run else 'bf16'}",
                 f"train.max_steps={steps}", f"train.log_every={1 if dry_run else 10}", "train.eval_test=false",
                 "train.progress=false", "tracking.enabled=false", f"train.out_dir={out}/run", "train.keep_last=1",
                 f"data.batch_size={batch}", f"data.workers={0 if dry_run else 4}", "diagnostics.every=0"]
    if dry_run:
        launcher = [sys.executable]
    else:
        gpus = torch.cuda.device_count()
        launcher = [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--num_machines", "1",
                    "--num_processes", str(gpus), "--mixed_precision", "bf16", "--dynamo_backend", "no",
                    "--main_process_port", str(port)]
        if mode == "ZeRO-2":
            launcher += ["--use_deepspeed", "--deepspeed_config_file", "infra/deepspeed/zero2.json"]
        elif gpus > 1:
            launcher += ["--multi_gpu"]
    cmd = [*launcher, "-m", "chorus.cli", "train", RECIPE, *overrides]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        return {"mode": mode, "ok": False, "error": f"cut at {timeout:.0f} s (time budget)"}
    wall = time.perf_counter() - t0
    row = {"mode": mode, "steps": steps, "batch_per_process": batch, "wall_s": round(wall, 1)}
    try:
        if p.returncode != 0:
            return {**row, "ok": False, "error": p.stderr[-2000:]}
        with open(os.path.join(out, "run", "metrics.jsonl")) as f:
            rates = [r["train/samples_per_s"] for r in map(json.loads, f) if "train/samples_per_s" in r]
        if not rates:
            return {**row, "ok": False, "error": "no train/samples_per_s in metrics.jsonl"}
        rate = statistics.mean(rates[1:]) if len(rates) > 1 else rates[0]
        return {**row, "ok": True, "samples_per_s": round(rate, 1)}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(device: str, dry_run: bool, deadline: float, work: str | None = None) -> dict:
    work = work or tempfile.mkdtemp(prefix="gpu_check_loop_")
    os.makedirs(work, exist_ok=True)
    modes = ["single process"] if dry_run else ["DDP"]
    skipped = {}
    if not dry_run:
        try:
            import deepspeed  # noqa: F401

            modes.append("ZeRO-2")
        except ImportError:
            skipped["ZeRO-2"] = "deepspeed is not installed"
    else:
        skipped["DDP, ZeRO-2"] = "GPU only (accelerate launch with bf16)"
    t0 = time.time()
    data = shards(work)
    shard_s = round(time.time() - t0, 1)
    rows = []
    for i, mode in enumerate(modes):
        left = deadline - time.time()
        if left < 20:
            skipped[mode] = "time budget spent"
            continue
        rows.append(train_once(mode, data, work, dry_run, left, 29700 + i))
    if work.startswith(tempfile.gettempdir()) and data.startswith(work):
        shutil.rmtree(work, ignore_errors=True)
    return {"ran": True, "recipe": RECIPE, "shard_s": shard_s, "rows": rows, "skipped": skipped, "passed": bool(rows) and all(r["ok"] for r in rows)}
