"""``chorus tune SEARCH.yaml [key=value ...]``: a Ray Tune search over the training loop."""
from __future__ import annotations

import sys


def run(args) -> int:
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
    p.add_argument("search", help="search recipe (YAML), e.g. recipes/search/quickstart_gamma_alpha.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="search-recipe overrides")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster (default: $RAY_ADDRESS, else start a local instance)")
    p.add_argument("--resume", action="store_true",
                   help="resume the interrupted search in its storage folder (finishes missing trials)")
    p.add_argument("--retry-failed", action="store_true", help="with --resume: rerun failed trials too")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.set_defaults(func=run)
