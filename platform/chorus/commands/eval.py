"""``chorus eval CHECKPOINT [--timesteps K] [--split test]``: the per-timestep accuracy table of a saved
model (chorus.train.eval_checkpoint), also at a T other than the training T."""
from __future__ import annotations

import json
import sys


def run(args) -> int:
    from chorus.config import RecipeError
    from chorus.train.eval_checkpoint import evaluate_checkpoint

    try:
        result = evaluate_checkpoint(args.checkpoint, timesteps=args.timesteps, split=args.split,
                                     shards=args.shards, batch_size=args.batch_size)
    except (RecipeError, FileNotFoundError, ValueError) as e:
        print(f"chorus eval: error: {e}", file=sys.stderr)
        return 2
    print(result.pop("table"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: ensemble, per-timestep and anytime accuracy")
    p.add_argument("checkpoint", help="a checkpoint folder (runs/NAME/checkpoints/step_...) or a run folder")
    p.add_argument("--timesteps", "-T", type=int, help="evaluate at this T (default: the training T)")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--shards", help="shard folder or URL (s3://…, https://…), if it moved since training")
    p.add_argument("--batch-size", type=int, help="evaluation batch size")
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=run)
