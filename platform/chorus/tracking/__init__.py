"""Experiment tracking on MLflow, resilient to an unreachable server (docs/method.md, "Recipes and runs")."""
from chorus.tracking.store import default_uri, reachable
from chorus.tracking.tracker import NullTracker, Tracker

__all__ = ["Tracker", "NullTracker", "default_uri", "reachable"]
