"""Benchmark: the cost of the ensemble diagnostics (issue 7) against a training epoch, same process.

On the quickstart recipe (N-Digits, vgg_small, T = 4, MPS + TASG) it times, interleaved round by round:

- a training epoch exactly as ``chorus.train`` steps it (forward, ensemble loss, backward, AdamW step)
  over the whole training split;
- one diagnostics pass as the loop runs it at a diagnostics epoch: reading the first
  ``diagnostics.samples`` validation samples, ``chorus.diagnostics.collect`` (figures included) and
  logging metrics, figures and tables to a real MLflow sqlite store (``run_diagnostics``);
- "off": the same training steps on a model that has been diagnosed before, against one never
  diagnosed (diagnostics leave no hooks or state behind, so the ratio should be 1).

Bar (issue 7): a diagnostics pass costs at most 10% of an epoch at the default interval. The recipe
default is ``diagnostics.every = 0`` (off); the table shows the share for every = 1, 2 and 5.

    .venv/bin/python bench/diagnostics.py [--rounds 3] [--shards data/ndigits] [--samples 256]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import interleaved_medians, print_table  # noqa: E402

from chorus.config import load_recipe  # noqa: E402
from chorus.losses import EnsembleLoss, ensemble_loss  # noqa: E402
from chorus.train import components  # noqa: E402
from chorus.train.evaluate import first_batches, run_diagnostics  # noqa: E402
from chorus.tracking import Tracker  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    never = components.build_model(recipe, manifest)
    never.load_state_dict(model.state_dict())
    tmp = tempfile.mkdtemp(prefix="chorus-bench-diag-")
    tracker = Tracker(uri=f"sqlite:///{tmp}/mlflow.db", experiment="bench-diagnostics", local_dir=tmp)
    tracker.start("bench", {})
    calls = {"n": 0}

    def diagnostics():
        calls["n"] += 1
        batches = first_batches(components.make_loader(recipe, "val", train=False), samples)
        run_diagnostics(model, batches, loss_kwargs=loss_kwargs, layers=recipe.diagnostics.layers,
                        epoch=calls["n"], tracker=tracker, step=calls["n"])

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
    t = interleaved_medians({"epoch": trainer(model), "diagnostics": diagnostics,
                             "8 steps, diagnosed model": off_steps(model),
                             "8 steps, never diagnosed": off_steps(never)}, rounds=args.rounds, warmup=1)
    tracker.end()
    epoch, diag = t["epoch"], t["diagnostics"]
    rows = [["training epoch", f"{epoch:.2f}", "1.000", ""],
            ["diagnostics pass", f"{diag:.2f}", f"{diag / epoch:.3f}", "per diagnostics epoch"]]
    for every in (1, 2, 5):
        share = diag / (every * epoch)
        rows.append([f"diagnostics.every = {every}", "", f"{share:.3f}", "PASS (≤ 0.10)" if share <= 0.10 else
                     "over the 10% bar"])
    off = t["8 steps, diagnosed model"] / t["8 steps, never diagnosed"]
    rows.append(["off: diagnosed / never diagnosed", "", f"{off:.3f}", "8 training steps each"])
    print_table(["measurement", "seconds (median)", "ratio to epoch", "note"], rows)


if __name__ == "__main__":
    main()
