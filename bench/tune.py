"""Benchmark: throughput of ``chorus tune`` with 1 vs 2 concurrent trials, and Ray's start-up cost.

Runs the quickstart search (``recipes/search/quickstart_gamma_alpha.yaml``: 3 x 3 grid over γ and
α_init on N-Digits, 1 CPU and 1 thread per trial) twice in one process, each time on a fresh local Ray
instance with 2 CPUs: once with ``max_concurrent=1``, once with ``max_concurrent=2``. Both runs use the
FIFO scheduler, so that they do exactly the same work (ASHA's early stops depend on the order in which
trials reach a rung, which concurrency changes). Printed: Ray start-up time, the search's wall time
(Ray running, ``Tuner.fit``) and trials per hour for each, the ratio of trials per hour, and, measured
in the same run, the machine's own ceiling: the throughput of 2 independent single-threaded torch
processes relative to 1 (on a shared VM this is well below 2).

Bar (issue 6): 2 concurrent trials reach at least 1.6x the trials per hour of 1 on a 2-core machine.

    .venv/bin/python bench/tune.py [--shards data/ndigits] [--rounds 1] [key=value ...]

``--rounds R`` repeats the pair (1 then 2 concurrent) R times, interleaved, and reports medians.

Extra ``key=value`` arguments override the search recipe (e.g. ``fixed.train.epochs=1`` for a quick
look). The shards are made with ``chorus shard datasets/ndigits.yaml`` when the folder is missing.
The load average is printed too: other people's processes on the shared machine slow both runs.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEARCH = os.path.join(ROOT, "recipes", "search", "quickstart_gamma_alpha.yaml")


def ensure_shards(folder: str) -> str:
    """The N-Digits shards at ``folder`` (made once if missing)."""
    if not os.path.isfile(os.path.join(folder, "manifest.json")):
        from chorus.data import shard

        print(f"sharding N-Digits into {folder} ...", flush=True)
        shard(os.path.join(ROOT, "datasets", "ndigits.yaml"), None, folder, progress=False)
    return os.path.abspath(folder)


def ray_startup_seconds() -> float:
    """Wall time of starting a local Ray instance the way ``chorus tune`` does (then shut down)."""
    from chorus.tune.cluster import ray_session

    with ray_session(num_cpus=2) as info:
        return info["startup_s"]


def _spin(n: int) -> tuple[float, float]:
    """One single-threaded torch compute job (matmuls); returns its (start, end) wall clock."""
    import torch

    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    t0 = time.time()
    for _ in range(n):
        a = torch.tanh(a @ a * 0.01)
    return t0, time.time()


def machine_ceiling(n: int = 4000, rounds: int = 3) -> float:
    """Throughput of 2 independent single-threaded torch processes relative to 1 on this machine
    (median of interleaved rounds): the most that 2 concurrent trials could reach, Ray aside."""
    import multiprocessing as mp

    ratios = []
    with mp.get_context("fork").Pool(2) as pool:
        for _ in range(rounds):
            start, end = pool.apply(_spin, (n,))
            one = end - start
            spans = pool.map(_spin, [n, n])
            two = max(e for _, e in spans) - min(s for s, _ in spans)
            ratios.append(2 * one / two)
    return statistics.median(ratios)


def one_search(concurrent: int, tmp: str, shards: str, extra: list[str]):
    """Run the quickstart search with ``concurrent`` trials at a time; returns (outcome, wall_s, log)."""
    from chorus.tune import load_search, run_search

    spec = load_search(SEARCH, [f"max_concurrent={concurrent}", "scheduler.type=fifo", f"storage_path={tmp}/tune",
                                f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"fixed.data.shards={shards}",
                                *extra])
    log = io.StringIO()
    t0 = time.perf_counter()
    outcome = run_search(spec, num_cpus=2, stream=log)
    return outcome, time.perf_counter() - t0, log.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", default=os.path.join(ROOT, "data", "ndigits"))
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repetitions (medians)")
    parser.add_argument("overrides", nargs="*", help="search-recipe overrides (key=value)")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    shards = ensure_shards(args.shards)
    tmp = tempfile.mkdtemp(prefix="chorus-bench-tune-")
    try:
        load0 = os.getloadavg()[0]
        startup = ray_startup_seconds()
        runs: dict[int, list] = {1: [], 2: []}
        for r in range(args.rounds):
            for concurrent in (1, 2):
                extra = [f"name=bench_{concurrent}_concurrent_{r}", *args.overrides]
                runs[concurrent].append(one_search(concurrent, tmp, shards, extra))
        ceiling = machine_ceiling()
        load1 = os.getloadavg()[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("\n=== chorus tune: quickstart search (FIFO, 1 CPU and 1 thread per trial, local Ray with 2 CPUs) ===")
    print(f"Ray start-up (ray.init, local instance): {startup:.2f} s")
    head = f"{'concurrent':>10}  {'trials':>6}  {'Ray start s':>11}  {'search s':>9}  {'wall s':>7}  {'trials/hour':>11}"
    print(head)
    print("-" * len(head))
    tph, walls = {}, {}
    for concurrent, results in runs.items():
        n = len(results[0][0].rows)
        start = statistics.median(o.ray_startup_s for o, _, _ in results)
        fit = statistics.median(o.fit_s for o, _, _ in results)
        walls[concurrent] = statistics.median(w for _, w, _ in results)
        tph[concurrent] = n / fit * 3600.0
        print(f"{concurrent:>10}  {n:>6}  {start:>11.2f}  {fit:>9.1f}  {walls[concurrent]:>7.1f}  "
              f"{tph[concurrent]:>11.1f}")
    ratio = tph[2] / tph[1]
    wall_ratio = walls[1] / walls[2]
    print(f"trials/hour, 2 concurrent vs 1: {ratio:.2f}x (bar >= 1.6x: {'PASS' if ratio >= 1.6 else 'FAIL'}); "
          f"end-to-end wall time incl. Ray start and reporting: {wall_ratio:.2f}x")
    print(f"machine ceiling, same run: 2 independent 1-thread torch processes reach {ceiling:.2f}x the "
          f"throughput of 1 (chorus tune reaches {ratio / ceiling:.0%} of that)")
    print(f"load average (1 min) before / after: {load0:.1f} / {load1:.1f} on {os.cpu_count()} CPUs")
    print(f"(medians of {args.rounds} interleaved round(s); 'search s' is Tuner.fit, 'wall s' adds Ray start-up "
          f"and the results table, heatmap and MLflow logging)")
    print("\n--- search output, 2 concurrent ---")
    log = runs[2][-1][2]
    print(log[log.find("[chorus tune] results"):].rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
