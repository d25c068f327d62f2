"""Training throughput of the quickstart model through the real training loop (`chorus train`):

- 1 process vs 2 processes on CPU (`accelerate launch`, gloo): samples/s and scaling efficiency
  (2-process samples/s / (2 x 1-process samples/s));
- MPS + TASG (recipes/quickstart.yaml) vs vanilla (recipes/quickstart_vanilla.yaml) in the same run:
  the overhead of the method (bar: at most 15%).

Each candidate is a real run of `--steps` optimizer steps; samples/s is read from the run's
metrics.jsonl (median of train/samples_per_s over logging intervals, the first dropped as warm-up).
Candidates are interleaved round by round and medians reported, so noise on this shared VM hits
all alike. Usage: python bench/train.py [--repeats 5] [--steps 60] [--step-rounds 40]
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = {"MPS+TASG": "recipes/quickstart.yaml", "vanilla": "recipes/quickstart_vanilla.yaml"}


def ensure_shards(folder: str) -> None:
    if not os.path.isfile(os.path.join(folder, "manifest.json")):
        subprocess.run([sys.executable, "-m", "chorus.cli", "shard", "datasets/ndigits.yaml", "--out", folder,
                        "--workers", "2", "--quiet"], check=True, cwd=ROOT)


def thread_policy(nproc: int) -> int:
    """Torch threads per training process: chorus.train.setup's policy, for 1 and 2 processes alike."""
    from chorus.train.setup import threads_per_process

    return threads_per_process(nproc)


def one_run(recipe: str, nproc: int, steps: int, shards: str, tmp: str, port: int) -> float:
    out = tempfile.mkdtemp(dir=tmp)
    overrides = [f"data.shards={shards}", f"train.max_steps={steps}", "train.log_every=5", "train.eval_test=false",
                 "train.progress=false", "tracking.enabled=false", f"train.out_dir={out}/run", "train.keep_last=1"]
    # 1 and 2 processes alike: the loop's thread policy, set explicitly (torchrun would force 1 otherwise)
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", PYTHONHASHSEED="0",
               OMP_NUM_THREADS=str(thread_policy(nproc)))
    if nproc == 1:
        cmd = [sys.executable, "-m", "chorus.cli", "train", recipe, *overrides]
    else:
        env.update(ACCELERATE_USE_CPU="1")
        cmd = [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--multi_gpu",
               "--num_processes", str(nproc), "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(port), "-m", "chorus.cli", "train", recipe,
               *overrides]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    with open(os.path.join(out, "run", "metrics.jsonl")) as f:
        rates = [r["train/samples_per_s"] for r in map(json.loads, f) if "train/samples_per_s" in r]
    shutil.rmtree(out, ignore_errors=True)
    return statistics.median(rates[1:]) if len(rates) > 1 else rates[0]


def step_overhead(shards: str, rounds: int) -> tuple[float, float]:
    """Median seconds of one training step (forward over T, ensemble loss, backward, AdamW step) of
    the quickstart model with MPS+TASG and vanilla, interleaved in one process on the same batch."""
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import interleaved_medians

    from chorus.config import load_recipe
    from chorus.losses import ensemble_loss
    from chorus.train import components
    from chorus.train.optim import build_optimizer

    steps = {}
    for method, path in RECIPES.items():
        recipe = load_recipe(os.path.join(ROOT, path), [f"data.shards={shards}"])
        manifest = components.open_shards(recipe)
        model = components.build_model(recipe, manifest)
        opt = build_optimizer(model, recipe.optim)
        x, y = next(iter(components.make_loader(recipe, "train", train=True)))
        lk = dict(gamma=recipe.loss.gamma, temperature=recipe.loss.temperature)

        def step(model=model, opt=opt, x=x, y=y, lk=lk):
            loss = ensemble_loss(model(x), y, **lk)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        steps[method] = step
    if not os.environ.get("OMP_NUM_THREADS"):          # the loop's CPU thread policy (train/setup.py)
        torch.set_num_threads(thread_policy(1))
    med = interleaved_medians(steps, rounds=rounds, warmup=3)
    return med["MPS+TASG"], med["vanilla"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--step-rounds", type=int, default=40)
    ap.add_argument("--shards", default=os.path.join(ROOT, "data", "ndigits"))
    args = ap.parse_args()
    ensure_shards(args.shards)
    cands = [(m, n) for n in (1, 2) for m in RECIPES]
    rates: dict[tuple[str, int], list[float]] = {c: [] for c in cands}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for i, (method, nproc) in enumerate(cands):
                rate = one_run(RECIPES[method], nproc, args.steps, args.shards, tmp, 29600 + 10 * r + i)
                rates[(method, nproc)].append(rate)
                print(f"  round {r + 1}/{args.repeats}: {method:9s} {nproc} process(es): {rate:7.1f} samples/s",
                      file=sys.stderr, flush=True)
    med = {c: statistics.median(v) for c, v in rates.items()}
    print(f"\nquickstart model (vgg_small, N-Digits 34x34, T=4, batch 32 per process), {args.steps} steps per run, "
          f"median of {args.repeats} interleaved rounds, {os.cpu_count()} CPU cores\n")
    print("| method | 1 process (samples/s) | 2 processes (samples/s) | scaling efficiency |")
    print("|---|---|---|---|")
    for m in RECIPES:
        one, two = med[(m, 1)], med[(m, 2)]
        print(f"| {m} | {one:.1f} | {two:.1f} | {two / (2 * one):.2f} |")
    print()
    for n in (1, 2):
        over = med[("vanilla", n)] / med[("MPS+TASG", n)] - 1
        verdict = "within" if over <= 0.15 else "OVER"
        print(f"MPS+TASG overhead over vanilla, whole runs, {n} process(es): {100 * over:+.1f}% "
              f"({verdict} the 15% bar)")
    mps, van = step_overhead(args.shards, args.step_rounds)
    over = mps / van - 1
    print(f"MPS+TASG overhead over vanilla, one training step in process (median of {args.step_rounds} "
          f"interleaved rounds): {1000 * mps:.1f} ms vs {1000 * van:.1f} ms = {100 * over:+.1f}% "
          f"({'within' if over <= 0.15 else 'OVER'} the 15% bar)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
