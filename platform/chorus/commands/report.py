"""``chorus report RUN_ID_OR_CHECKPOINT [--vs OTHER]``: HTML report + Markdown summary of a run's
ensemble diagnostics (per-timestep accuracy, membrane statistics, α, gradient flow, energy)."""
from __future__ import annotations

import os
import sys


def run(args) -> int:
    from chorus.report import ReportError, make_report

    refs = [args.run] + ([args.vs] if args.vs else [])
    out = args.out or os.path.join("reports", "-vs-".join(os.path.basename(os.path.normpath(r))[:24] for r in refs))
    try:
        html_path, md_path = make_report(refs, out, tracking_uri=args.tracking_uri, samples=args.samples)
    except ReportError as e:
        print(f"chorus report: error: {e}", file=sys.stderr)
        return 2
    print(f"report:  {html_path}\nsummary: {md_path}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="HTML + Markdown report of a run's diagnostics (optionally vs another run)",
                       description="Render the ensemble diagnostics of a training run as a self-contained HTML "
                                   "report and a Markdown summary. RUN is an MLflow run id, a run folder "
                                   "(runs/NAME-STAMP) or a checkpoint folder (measured now).")
    p.add_argument("run", metavar="RUN_ID_OR_CHECKPOINT")
    p.add_argument("--vs", metavar="OTHER", help="a second run to show side by side, with the differences")
    p.add_argument("--out", metavar="DIR", help="output folder (default reports/RUN[-vs-OTHER])")
    p.add_argument("--tracking-uri", help="MLflow store of run ids (default $MLFLOW_TRACKING_URI or "
                                          "sqlite:///<cwd>/mlruns/mlflow.db)")
    p.add_argument("--samples", type=int, help="validation samples to diagnose a checkpoint on "
                                               "(default: the recipe's diagnostics.samples)")
    p.set_defaults(func=run)
