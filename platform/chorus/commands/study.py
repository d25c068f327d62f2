"""``chorus study STUDY.yaml [key=value ...] [--resume]``: an ablation study -- every arm × seed of one
training recipe, each a Ray Tune trial, nested under one MLflow parent run -- then the per-arm tables
(mean ± std over seeds) in ``study.json`` / ``study.md`` of the study folder. ``--help-recipe`` lists the study file's keys.

Exit codes: 0 done, 1 some runs failed (the tables hold the others), 2 bad study file, recipe or data
(one line naming the problem; nothing written), 130 interrupted.
"""
from __future__ import annotations

import sys


def run(args) -> int:
    from chorus.commands.train import print_schema
    from chorus.config.study import StudySpec

    if args.help_recipe or args.recipe_schema:
        return print_schema(StudySpec, args.help_recipe, "Study file keys (override any: key.sub=value; fixed.* "
                            "takes one training key after it, arms.NAME.* one training key after the arm).\n")
    if not args.study:
        args.parser.error("the study file is required (or --help-recipe / --recipe-schema)")
    from chorus.config import RecipeError
    from chorus.data import DataError
    from chorus.study import load_study, run_study

    try:
        spec = load_study(args.study, args.overrides)
        outcome = run_study(spec, resume=args.resume)
    except (RecipeError, DataError) as e:       # StudyError is a RecipeError
        print(f"chorus study: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chorus study: interrupted; continue with --resume", file=sys.stderr)
        return 130
    print(outcome.table)
    print(f"[chorus] study folder: {outcome.folder} (study.json, study.md); trained {len(outcome.trained)}, "
          f"skipped {len(outcome.skipped)} finished, failed {len(outcome.failed)}"
          + (f"; MLflow parent run {outcome.parent_run_id}" if outcome.parent_run_id else ""), file=sys.stderr)
    return 1 if outcome.failed or outcome.study.get("missing") else 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "study", help="ablation study: arms x seeds of one recipe, tables of mean ± std (MLflow parent run)",
        description="Run the study file STUDY.yaml: every arm (a named set of training-recipe overrides) with "
                    "every seed, each a Ray Tune trial (`concurrency` at a time), then per-arm mean ± std over seeds of the ensemble and "
                    "per-timestep accuracy. Overrides are key.sub=value on the study file (seeds=[0], "
                    "fixed.train.epochs=1, arms.vanilla.loss.gamma=0).")
    p.add_argument("study", nargs="?", help="study file (YAML), e.g. recipes/study/quickstart_ablation.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="study-file overrides (anywhere after it)")
    p.add_argument("--resume", action="store_true",
                   help="continue the study in its folder: skip finished runs, resume interrupted ones")
    p.add_argument("--help-recipe", action="store_true", help="list every study-file key")
    p.add_argument("--recipe-schema", action="store_true", help="print the study file's JSON Schema")
    p.set_defaults(func=run)
