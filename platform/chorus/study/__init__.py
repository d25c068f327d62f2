"""Ablation studies (``chorus study STUDY.yaml``): arms × seeds of one training recipe, one MLflow parent
run, and the tables a paper needs (docs/method.md, "Recipes and runs")."""
from chorus.config.study import StudyError, StudySpec, load_study
from chorus.study.tables import aggregate, markdown, run_results
from chorus.study.runner import StudyOutcome, run_study

__all__ = ["StudyError", "StudySpec", "load_study", "run_study", "StudyOutcome", "aggregate", "markdown",
           "run_results"]
