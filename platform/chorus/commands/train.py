"""``chorus train RECIPE.yaml [key.sub=value ...] [--resume]``: train from a recipe (chorus.train.run).

Works alone or under ``accelerate launch`` (see infra/accelerate/cpu_multi.yaml for 2 CPU processes).
Exit codes: 0 done, 2 bad recipe or unreadable data (one line naming the problem), 3 non-finite loss.
"""
from __future__ import annotations

import json
import sys


def overrides_of(args) -> list[str]:
    """The recipe overrides of the command line; ``--out`` is quoted (JSON is YAML), so a path such as
    ``runs/a #1`` or ``2024`` stays the string it is (unquoted, ``#`` starts a YAML comment and ``2024``
    is a number)."""
    overrides = list(args.overrides)
    if args.resume:
        overrides.append("train.resume=auto")
    if args.out:
        overrides.append(f"train.out_dir={json.dumps(args.out)}")
    return overrides


def run(args) -> int:
    from chorus.config import RecipeError, load_recipe
    from chorus.data import DataError
    from chorus.train import NonFiniteLoss
    from chorus.train import run as train

    try:
        recipe = load_recipe(args.recipe, overrides_of(args))
        train(recipe)
    except (RecipeError, DataError) as e:
        print(f"chorus train: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        print(f"chorus train: {e}", file=sys.stderr)
        return 3
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a spiking network from a recipe (Accelerate / DeepSpeed, MLflow)")
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/quickstart.yaml")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="override recipe values, e.g. train.epochs=2 neuron.mps=false")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint (train.resume=auto)")
    p.add_argument("--out", help="run folder (train.out_dir)")
    p.set_defaults(func=run)
