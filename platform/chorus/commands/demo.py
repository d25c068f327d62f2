"""``chorus demo`` (``make demo``): shard the embedded N-Digits, train recipes/quickstart.yaml with
MPS + TASG, and print the per-timestep accuracy table and where the run is in MLflow.

On a 2-core CPU it takes about 3 minutes and reaches over 90% test accuracy (README, "Training").
"""
from __future__ import annotations

import os
import sys
import time

CARD = os.path.join("datasets", "ndigits.yaml")
RECIPE = os.path.join("recipes", "quickstart.yaml")


def run(args) -> int:
    from chorus.config import RecipeError, load_recipe
    from chorus.data import DataError, read_manifest, shard, verify
    from chorus.train import run as train

    start = time.perf_counter()
    out = args.shards
    try:
        have = os.path.isfile(os.path.join(out, "manifest.json")) and not verify(out)
        if have:
            print(f"[demo] N-Digits shards present and verified in {out}", flush=True)
        else:
            print(f"[demo] generating and sharding N-Digits into {out} ...", flush=True)
            shard(CARD, None, out, workers=2, progress=True)
        manifest = read_manifest(out)
        counts = {s: v["num_samples"] for s, v in manifest["splits"].items()}
        print(f"[demo] {manifest['dataset']}: {counts}", flush=True)
        recipe = load_recipe(RECIPE, [f"data.shards={out}", *args.overrides])
    except (DataError, RecipeError) as e:
        print(f"chorus demo: error: {e}", file=sys.stderr)
        return 2
    print(f"[demo] training {RECIPE}: {recipe.model.name}, T={recipe.data.T}, MPS={recipe.neuron.mps} "
          f"(alpha_init {recipe.neuron.alpha_init}), TASG gamma={recipe.loss.gamma}, {recipe.train.epochs} epochs",
          flush=True)
    result = train(recipe)
    took = time.perf_counter() - start
    acc = result["test"].get("acc", result["val"].get("acc", 0.0))
    print(f"\n[demo] test accuracy {100 * acc:.2f}% (target >= 90%) in {took / 60:.1f} min; "
          f"training {result['samples_per_s']:.0f} samples/s")
    print(f"[demo] run folder: {result['run_dir']}")
    print(f"[demo] {result.get('location', '')}")
    print(f"[demo] evaluate at another T:  chorus eval {result['run_dir']} --timesteps 2")
    return 0 if acc >= 0.9 else 1


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="shard N-Digits and train the quickstart recipe (MPS + TASG) end to end")
    p.add_argument("--shards", default=os.path.join("data", "ndigits"), help="where the N-Digits shards go")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="quickstart recipe overrides")
    p.set_defaults(func=run)
