"""The training engine (docs/method.md, "Recipes and runs"; docs/architecture.md, "Training").

``run(recipe, hooks=None) -> dict`` is the one training loop (Accelerate, DeepSpeed ZeRO, mixed
precision, exact resume, MLflow); ``hooks`` follow :class:`TrainHooks` (subclass :class:`Hooks`).
``evaluate_checkpoint`` (``chorus.train.eval_checkpoint``) backs ``chorus eval``.
"""
from chorus.train.hooks import Hooks, TrainHooks
from chorus.train.loop import NonFiniteLoss, run

__all__ = ["run", "NonFiniteLoss", "Hooks", "TrainHooks"]
