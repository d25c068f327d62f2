"""``chorus eval CHECKPOINT [--timesteps K] [--time-mode rebin|extend-last|extend-loop] [--exit confidence=P]``:
the per-timestep accuracy table of a saved model (chorus.train.eval_checkpoint), also run for K steps
other than the training T, and the early-exit curve (chorus.train.early_exit)."""
from __future__ import annotations

import argparse
import json
import sys

TIME_MODE_HELP = ("what running for K steps means: 'rebin' (the default) bins the same events into K frames; "
                  "'extend-last' runs the training T frames and repeats the last one up to K steps; "
                  "'extend-loop' runs the T frames and loops them up to K steps (extend modes need K >= T)")


def positive_int(text: str) -> int:
    """argparse type of ``--timesteps``: a whole number ≥ 1 (0 and negatives are refused, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of timesteps") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} timesteps: give a number of timesteps >= 1")
    return value


def run(args) -> int:
    from chorus.config import RecipeError
    from chorus.train.eval_checkpoint import evaluate_checkpoint

    try:
        kw = dict(timesteps=args.timesteps, split=args.split, shards=args.shards, batch_size=args.batch_size,
                  time_mode=args.time_mode)
        if args.exit:
            from chorus.train.early_exit import evaluate_early_exit, parse_exit_spec
            result = evaluate_early_exit(args.checkpoint, parse_exit_spec(args.exit), **kw)
        else:
            result = evaluate_checkpoint(args.checkpoint, **kw)
    except (RecipeError, FileNotFoundError, ValueError) as e:
        print(f"chorus eval: error: {e}", file=sys.stderr)
        return 2
    print(result.pop("table"))
    print(f"time mode: {result['time_mode']}: {result['time_mode_meaning']}")
    if "early_exit_table" in result:
        print()
        print(result.pop("early_exit_table"))
        if "early_exit_file" in result:
            print(f"early-exit curve written to {result['early_exit_file']} (chorus report shows it)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: ensemble, per-timestep and anytime accuracy")
    p.add_argument("checkpoint", help="a checkpoint folder (runs/NAME/checkpoints/step_...) or a run folder")
    p.add_argument("--timesteps", "-T", type=positive_int,
                   help="run for this many steps K >= 1 (default: the training T); see --time-mode")
    p.add_argument("--time-mode", choices=("rebin", "extend-last", "extend-loop"), default="rebin",
                   help=TIME_MODE_HELP)
    p.add_argument("--exit", metavar="confidence=P",
                   help="early exit: stop each sample at the first step whose running ensemble has softmax "
                        "max >= P; prints the accuracy / timesteps / energy curve over thresholds")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--shards", help="shard folder or URL (s3://…, https://…), if it moved since training")
    p.add_argument("--batch-size", type=int, help="evaluation batch size")
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=run)
