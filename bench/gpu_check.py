"""The prepared check for a lent GPU (issue 12): exactness, neuron speed, training speed; one JSON.

Three parts, within one global time budget (``--budget`` seconds, default 420: a lent H200 gives at
most ~8 minutes of wall time), each one stopping between its units once its share of the budget is
spent (a part that could not run says why in the JSON):

(a) ``exactness`` — every fused LIF backend that runs on the device (``triton``, ``torch``,
    ``inductor``) against the plain per-timestep reference loop: spikes, ∂L/∂X, ∂L/∂α, both
    ``mps_init`` values, plus bf16 autocast (``bench/_gpu_exact.py``);
(b) ``speed`` — one LIF layer forward + backward on ``[T, 16, 64, 32, 32]`` at T = 4 and 16, chorus
    per backend vs SpikingJelly's ``LIFNode`` (its own CUDA kernels), with the ratio and peak memory
    (``bench/_gpu_speed.py``);
(c) ``train`` — training steps of spiking VGG-9 (T = 5, batch 64, 2×48×48, bf16 autocast) with the
    project's ensemble loss: chorus MPS on / off, its ReLU twin and the SpikingJelly build, samples/s
    (``bench/_gpu_train.py``);
(d) ``loop`` — the real loop, ``chorus train recipes/quickstart.yaml`` for 60 bf16 steps under
    ``accelerate launch``, DDP and DeepSpeed ZeRO-2, samples/s (``bench/_gpu_loop.py``).

The JSON (``gpu_check.json`` under ``--out``, default ``$OUT``) is rewritten after every part, so a run
cut short keeps what it measured; a short table goes to stdout. Exit status 1 when an exactness entry
fails or a training run of part (d) fails. On a machine with a GPU (from the repository root, the project's venv active):

    python bench/gpu_check.py --out results/gpu          # or with $OUT set: python bench/gpu_check.py

``--dry-run`` runs every part on the CPU at tiny sizes (Triton kernels in interpreter mode,
``TRITON_INTERPRET=1``; ``auto`` pinned to the ``torch`` backend unless ``CHORUS_LIF_BACKEND`` is set)
and writes the same keys with ``device: "cpu"``, GPU-only entries marked skipped with a reason; the test
suite runs it (tests/test_bench_gpu_check.py) so the script is known to start.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PARTS = ("exactness", "speed", "train", "loop")
SHARES = {"exactness": 0.3, "speed": 0.5, "train": 0.7, "loop": 0.97}  # cumulative deadline, fraction of the budget
NAME = "gpu_check.json"


def _versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("triton", "spikingjelly", "cupy"):
        try:
            out[mod] = getattr(__import__(mod), "__version__", "installed")
        except ImportError:
            out[mod] = None
    return out


def _setup(dry_run: bool) -> str:
    """The device to run on; in a CPU dry run, Triton's interpreter on and ``auto`` pinned (before any
    import of Triton or chorus)."""
    if torch.cuda.is_available():
        return "cuda"
    if dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")
        os.environ.setdefault("CHORUS_LIF_BACKEND", "torch")
    return "cpu"


def _write(result: dict, out: str) -> str:
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)
    return path


def bars(result: dict) -> dict:
    """Issue 12's GPU bars from the figures (None where a figure is missing): chorus MPS on [auto] at
    least as fast as SpikingJelly's LIF (MPS off) at T = 4 and 16, VGG-9 training ≥ 1.3× its build."""
    out = {}
    for r in result["speed"].get("rows", []):
        if r["candidate"] == "chorus MPS on [auto]" and r["speed_vs_sj"] is not None:
            out[f"layer_T{r['T']}_mps_on_vs_sj>=1"] = {"value": r["speed_vs_sj"], "pass": r["speed_vs_sj"] >= 1.0}
    v = result["train"].get("mps_on_vs_sj")
    out["vgg9_train_mps_on_vs_sj>=1.3"] = None if v is None else {"value": v, "pass": v >= 1.3}
    v = result["train"].get("mps_on_vs_relu_twin")
    out["vgg9_train_mps_on_vs_relu_twin>=0.95"] = None if v is None else {"value": v, "pass": v >= 0.95}
    return out


def _print(result: dict) -> None:
    from _common import print_table

    ex = result["exactness"]
    if ex.get("ran"):
        bad = [f"{e['backend']}/{e['setting']}" for e in ex["entries"] if not e["passed"]]
        print(f"exactness: {len(ex['entries']) - len(bad)}/{len(ex['entries'])} passed"
              + (f"; FAILED: {', '.join(bad)}" if bad else "") + f"; skipped: {ex['skipped'] or '-'}")
    sp = result["speed"]
    if sp.get("rows"):
        print(f"\nLIF layer forward + backward (peer runs {sp['peer_implementation']})")
        print_table(["T", "candidate", "median ms", "peak MiB", "speed vs SJ", "peak vs SJ"],
                    [[r["T"], r["candidate"], r["median_ms"], r["peak_mib"] if r["peak_mib"] is not None else "-",
                      r["speed_vs_sj"] or "-", r["peak_vs_sj"] or "-"] for r in sp["rows"]])
    tr = result["train"]
    if tr.get("rows"):
        print(f"\nVGG-9 training step, T={tr['T']}, batch {tr['batch']}, 2x{tr['size']}x{tr['size']}, {tr['precision']}")
        print_table(["candidate", "samples/s", "step ms"],
                    [[r["candidate"], r["samples_per_s"], r["step_ms"]] for r in tr["rows"]])
        print(f"chorus MPS on vs SpikingJelly: {tr.get('mps_on_vs_sj', '-')}x; "
              f"vs its ReLU twin: {tr.get('mps_on_vs_relu_twin', '-')}x")
    lp = result["loop"]
    if lp.get("rows"):
        print(f"\nchorus train {lp['recipe']}")
        print_table(["mode", "steps", "samples/s", "wall s"],
                    [[r["mode"], r.get("steps", "-"), r.get("samples_per_s", "failed"), r.get("wall_s", "-")]
                     for r in lp["rows"]])
    for part in PARTS:
        if not result[part].get("ran"):
            print(f"{part}: skipped ({result[part]['reason']})")
    for name, b in result.get("bars", {}).items():
        print(f"bar {name}: " + ("no figure" if b is None else f"{b['value']} -> {'PASS' if b['pass'] else 'FAIL'}"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check.json (default $OUT)")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for all parts together")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: proves the script runs")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    args = ap.parse_args(argv)
    if not args.out:
        ap.error("--out is required when $OUT is not set")
    start = time.time()
    device = _setup(args.dry_run)
    result = {"device": device, "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
              "dry_run": args.dry_run, "budget_s": args.budget, "versions": _versions(),
              "env": {k: os.environ.get(k) for k in ("TRITON_INTERPRET", "CHORUS_LIF_BACKEND", "CHORUS_TRITON_KEEP")}}
    for part in PARTS:
        result[part] = {"ran": False, "reason": "not asked for (--parts)"}
    if device == "cpu" and not args.dry_run:
        for part in PARTS:
            result[part]["reason"] = "no CUDA device here (run with --dry-run to check the script on the CPU)"
        result["bars"] = bars(result)
        result["elapsed_s"] = round(time.time() - start, 1)
        print(f"no CUDA device: nothing measured; wrote {_write(result, args.out)}")
        return 0
    import _gpu_exact
    import _gpu_speed
    import _gpu_loop
    import _gpu_train

    modules = {"exactness": _gpu_exact, "speed": _gpu_speed, "train": _gpu_train, "loop": _gpu_loop}
    for part in PARTS:
        if part not in args.parts:
            continue
        deadline = start + SHARES[part] * args.budget
        if time.time() > deadline:
            result[part] = {"ran": False, "reason": "time budget spent before this part"}
            continue
        t0 = time.time()
        try:
            result[part] = modules[part].run(device, args.dry_run, deadline)
        except Exception as exc:
            result[part] = {"ran": False, "reason": f"raised {type(exc).__name__}: {str(exc)[:500]}"}
        result[part]["seconds"] = round(time.time() - t0, 1)
        result["elapsed_s"] = round(time.time() - start, 1)
        _write(result, args.out)
        print(f"[gpu_check] {part}: {result[part]['seconds']} s", file=sys.stderr, flush=True)
    result["bars"] = bars(result)
    result["elapsed_s"] = round(time.time() - start, 1)
    path = _write(result, args.out)
    _print(result)
    print(f"\n{device} ({result['device_name']}), {result['elapsed_s']} s of {args.budget:.0f}; wrote {path}")
    failed = [p for p in ("exactness", "loop") if result[p].get("ran") and not result[p]["passed"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
