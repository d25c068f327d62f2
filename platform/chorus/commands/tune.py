"""``chorus tune SEARCH.yaml [key=value ...]``: a Ray Tune search over the training loop.
``--help-recipe`` lists every search-recipe key; ``--recipe-schema`` prints its JSON Schema."""
from __future__ import annotations

import sys


def run(args) -> int:
    from chorus.commands.train import print_schema
    from chorus.config.search import SearchRecipe

    if args.help_recipe or args.recipe_schema:
        return print_schema(SearchRecipe, args.help_recipe, "Search recipe keys (override any: key.sub=value; "
                            "fixed.*, space.* and scheduler.mutations.* take one training key after them).\n")
    if not args.search:
        args.parser.error("the search recipe is required (or --help-recipe / --recipe-schema)")
    from chorus.tune import SearchRecipeError, load_search, run_search

    try:
        spec = load_search(args.search, args.overrides)
        outcome = run_search(spec, address=args.address, resume=args.resume,
                             retry_failed=args.retry_failed, num_cpus=args.num_cpus)
    except SearchRecipeError as exc:
        print(f"chorus tune: error: {exc}", file=sys.stderr)
        return 2
    if outcome.interrupted:
        return 130
    return 0 if outcome.best is not None else 1


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tune", help="hyperparameter search with Ray Tune (γ, α_init, learning rate, ...)",
        description="Run the search recipe SEARCH.yaml: Ray Tune trials, each a `chorus train` run, "
                    "nested under one MLflow parent run. Overrides are key.sub=value on the search "
                    "recipe (fixed.train.epochs=2, max_concurrent=1, space.loss.gamma='grid [0, 1]').")
    p.add_argument("search", nargs="?", help="search recipe (YAML), e.g. recipes/search/quickstart_gamma_alpha.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="search-recipe overrides (anywhere after it)")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster (default: $RAY_ADDRESS, else start a local instance)")
    p.add_argument("--resume", action="store_true",
                   help="resume the interrupted search in its storage folder (finishes missing trials)")
    p.add_argument("--retry-failed", action="store_true", help="with --resume: rerun failed trials too")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--help-recipe", action="store_true", help="list every search-recipe key")
    p.add_argument("--recipe-schema", action="store_true", help="print the search recipe's JSON Schema")
    p.set_defaults(func=run)
