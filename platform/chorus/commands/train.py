"""``chorus train RECIPE.yaml [key.sub=value ...] [--resume] [--out DIR]``: train from a recipe
(chorus.train.run). ``--help-recipe`` lists every recipe key; ``--recipe-schema`` prints its JSON Schema.

Works alone or under ``accelerate launch`` (see infra/accelerate/cpu_multi.yaml for 2 CPU processes).
Exit codes: 0 done, 2 bad recipe, unreadable data or a run folder held by another run (one line naming
the problem, or the holder's host and pid), 3 non-finite loss, 130 / 143 stopped by SIGINT / SIGTERM at a
safe point (a resumable checkpoint written; one line says how to resume).
"""
from __future__ import annotations

import json
import sys

NEURON_NOTE = ("neuron.* defaults are chorus.neurons.LIF's (SpikingJelly's LIFNode: tau 2, v_threshold 1, "
               "v_reset 0, sigmoid surrogate; MPS off, mps_init first); every shipped recipe states neuron.mps.")


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


def print_schema(cls, help_recipe: bool, title: str) -> int:
    """``--help-recipe`` / ``--recipe-schema`` of a recipe class."""
    from chorus.config import describe, json_schema

    print(describe(cls, title) if help_recipe else json.dumps(json_schema(cls), indent=1, ensure_ascii=False))
    return 0


def run(args) -> int:
    from chorus.config import Recipe, RecipeError, load_recipe

    if args.help_recipe or args.recipe_schema:
        return print_schema(Recipe, args.help_recipe, f"Training recipe keys (override any: key.sub=value).\n"
                                                      f"{NEURON_NOTE}\n")
    if not args.recipe:
        args.parser.error("the recipe is required (or --help-recipe / --recipe-schema)")
    from chorus.data import DataError
    from chorus.folder_lock import FolderLockedError
    from chorus.train import NonFiniteLoss
    from chorus.train.interrupt import Interrupted
    from chorus.train import run as train

    try:
        recipe = load_recipe(args.recipe, overrides_of(args))
        train(recipe)
    except (RecipeError, DataError, FolderLockedError) as e:
        print(f"chorus train: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        print(f"chorus train: {e}", file=sys.stderr)
        return 3
    except Interrupted as e:
        if e.main:
            print(f"chorus train: {e.args[0]}; resume with: {resume_command(args, e.run_dir)}", file=sys.stderr)
        return e.exit_code
    except (OSError, RuntimeError) as e:           # a checkpoint write that ran out of space: one line
        from chorus.train.write_errors import describe

        message = describe(e, args.recipe)
        if message is None:
            raise
        print(f"chorus train: error: {message}", file=sys.stderr)
        return 2
    return 0


def resume_command(args, run_dir: str) -> str:
    """The command line that continues a stopped run (under a launcher: after the same launcher)."""
    import os
    import shlex

    words = ["chorus", "train", args.recipe, *args.overrides, "--resume", "--out", args.out or run_dir]
    launched = " (under the same `accelerate launch ...`)" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    return shlex.join(words) + launched


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a spiking network from a recipe (Accelerate / DeepSpeed, MLflow)")
    p.add_argument("recipe", nargs="?", help="recipe YAML, e.g. recipes/quickstart.yaml")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="override recipe values, e.g. train.epochs=2 neuron.mps=false (anywhere after the recipe)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint (train.resume=auto)")
    p.add_argument("--out", help="run folder (train.out_dir)")
    p.add_argument("--help-recipe", action="store_true", help="list every recipe key: type, default, range, meaning")
    p.add_argument("--recipe-schema", action="store_true",
                   help="print the recipe's JSON Schema (for editors: yaml-language-server)")
    p.set_defaults(func=run)
