"""Benchmark: the cost of the ensemble diagnostics (issue 7) against a training epoch, same process.

On the quickstart recipe (N-Digits, vgg_small, T = 4, MPS + TASG) it times, interleaved round by round:

- a training epoch exactly as ``chorus.train`` steps it (forward, ensemble loss, backward, AdamW step)
  over the whole training split;
- one diagnostics pass as the loop runs it at a diagnostics epoch: reading the first
  ``diagnostics.samples`` validation samples, ``chorus.diagnostics.collect`` (figures included) and
  logging metrics, figures and tables to a real MLflow sqlite store (``run_diagnostics``);
- "off": the same training steps on the model that has been diagnosed, against a twin with the same
  weights that never was (diagnostics leave no hooks or state behind, so the ratio should be 1).

Bar (issue 7): a diagnostics pass costs at most 10% of an epoch at the default interval. The recipe
default is ``diagnostics.every = 0`` (off); the table shows the share for every = 1, 2 and 5.

    .venv/bin/python bench/diagnostics.py [--rounds 3] [--shards data/ndigits] [--samples 256]

Wall time is the bar; CPU time (this process, all threads) is printed beside it because the shared
2-core machines swing wall time with other people's load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import print_table  # noqa: E402

from chorus.config import load_recipe  # noqa: E402
from chorus.losses import EnsembleLoss, ensemble_loss  # noqa: E402
from chorus.train import components  # noqa: E402
from chorus.train.evaluate import first_batches  # noqa: E402
from chorus.tracking import Tracker  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_rounds(cands: dict, rounds: int, warmup: int = 1) -> dict[str, tuple[float, float]]:
    """Median (wall, process CPU) seconds of each candidate, interleaved round by round: on a shared
    machine wall time swings with the load, CPU time much less."""
    wall: dict[str, list[float]] = {k: [] for k in cands}
    cpu: dict[str, list[float]] = {k: [] for k in cands}
    for r in range(warmup + rounds):
        for name, fn in cands.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            if r >= warmup:
                wall[name].append(time.perf_counter() - w)
                cpu[name].append(time.process_time() - c)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in cands}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shards", default=os.path.join(ROOT, "data", "ndigits"))
    ap.add_argument("--samples", type=int, default=None, help="diagnostics samples (recipe default 256)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not os.path.isfile(os.path.join(args.shards, "manifest.json")):
        sys.exit(f"no shard set at {args.shards}: make it with `chorus shard datasets/ndigits.yaml --out {args.shards}`")
    recipe = load_recipe(os.path.join(ROOT, "recipes", "quickstart.yaml"), [f"data.shards={args.shards}"])
    samples = args.samples or recipe.diagnostics.samples
    manifest = components.open_shards(recipe)
    train_batches = list(components.make_loader(recipe, "train", train=True))
    loss_kwargs = dict(gamma=recipe.loss.gamma, temperature=recipe.loss.temperature, ce=recipe.loss.ce)
    loss_fn = EnsembleLoss(**loss_kwargs).train()

    def trainer(model):
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.optim.lr)

        def epoch():
            model.train()
            for x, y in train_batches:
                loss = loss_fn(model(x), y)["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return epoch

    torch.manual_seed(0)
    model = components.build_model(recipe, manifest)
    tmp = tempfile.mkdtemp(prefix="chorus-bench-diag-")
    tracker = Tracker(uri=f"sqlite:///{tmp}/mlflow.db", experiment="bench-diagnostics", local_dir=tmp)
    tracker.start("bench", {})
    calls = {"n": 0}
    history: list[dict] = []
    parts = {"read validation samples": [], "collect (measurements)": [], "figures": [], "log to MLflow": []}

    def diagnostics():
        """What the loop does at a diagnostics epoch (run_diagnostics), timed part by part."""
        from chorus.diagnostics import collect, figures
        from chorus.diagnostics.collect import alpha_history

        calls["n"] += 1
        c0 = time.process_time()
        batches = first_batches(components.make_loader(recipe, "val", train=False), samples)
        c1 = time.process_time()
        d = collect(model, batches, layers=recipe.diagnostics.layers, render=False,
                    loss_fn=lambda o, y: ensemble_loss(o.float(), y, **loss_kwargs))
        c2 = time.process_time()
        pngs = figures.all_pngs([("run", d.metrics)], only=figures.EPOCH_FIGURES)
        pngs["membrane_histograms.png"] = figures.membrane_hist_png(d.samples)
        history.append({"epoch": calls["n"], **{k: v for k, v in d.metrics.items() if k.startswith("mps/alpha/")}})
        pngs["alpha_trajectory.png"] = figures.alpha_trajectory_png([("run", alpha_history(history, d.metrics))])
        c3 = time.process_time()
        tracker.log_metrics(d.metrics, calls["n"])
        with tempfile.TemporaryDirectory() as out:
            for name, png in pngs.items():
                with open(os.path.join(out, name), "wb") as f:
                    f.write(png)
            tracker.log_artifact(out, f"diagnostics/epoch_{calls['n']:03d}")
        c4 = time.process_time()
        for key, dt in zip(parts, (c1 - c0, c2 - c1, c3 - c2, c4 - c3)):
            parts[key].append(dt)

    def off_steps(m):
        opt = torch.optim.AdamW(m.parameters(), lr=0.0)
        few = train_batches[:8]

        def run():
            m.train()
            for x, y in few:
                loss = ensemble_loss(m(x), y, **loss_kwargs)["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return run

    print(f"quickstart: {recipe.model.name}, T = {recipe.data.T}, {len(train_batches)} training batches of "
          f"{recipe.data.batch_size}; diagnostics on {samples} validation samples; {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads")
    t = timed_rounds({"epoch": trainer(model), "diagnostics": diagnostics}, rounds=args.rounds)
    tracker.end()
    # "Off": the same steps on the diagnosed model and on a twin with the same weights that was never
    # diagnosed, in alternating order.
    never = components.build_model(recipe, manifest)
    never.load_state_dict(model.state_dict())
    a, b = off_steps(model), off_steps(never)
    t.update(timed_rounds({"diagnosed": a, "never": b}, rounds=3))
    t2 = timed_rounds({"never": b, "diagnosed": a}, rounds=3)
    t["diagnosed"] = tuple((x + y) / 2 for x, y in zip(t["diagnosed"], t2["diagnosed"]))
    t["never"] = tuple((x + y) / 2 for x, y in zip(t["never"], t2["never"]))
    (ew, ec), (dw, dc) = t["epoch"], t["diagnostics"]
    rows = [["training epoch", f"{ew:.2f}", f"{ec:.2f}", "1.000", "1.000", ""],
            ["diagnostics pass", f"{dw:.2f}", f"{dc:.2f}", f"{dw / ew:.3f}", f"{dc / ec:.3f}", "per diagnostics epoch"]]
    for key, vals in parts.items():
        rows.append([f"  {key}", "", f"{statistics.median(vals):.2f}", "", f"{statistics.median(vals) / ec:.3f}", ""])
    for every in (1, 2, 5):
        share_w, share_c = dw / (every * ew), dc / (every * ec)
        rows.append([f"diagnostics.every = {every}", "", "", f"{share_w:.3f}", f"{share_c:.3f}",
                     "PASS (≤ 0.10)" if max(share_w, share_c) <= 0.10 else "over the 10% bar"])
    off_w, off_c = t["diagnosed"][0] / t["never"][0], t["diagnosed"][1] / t["never"][1]
    rows.append(["off: diagnosed / never diagnosed", "", "", f"{off_w:.3f}", f"{off_c:.3f}",
                 "8 training steps, 6 rounds each; 1 = no cost"])
    print_table(["measurement", "wall s", "CPU s", "wall ratio", "CPU ratio", "note"], rows)


if __name__ == "__main__":
    main()
