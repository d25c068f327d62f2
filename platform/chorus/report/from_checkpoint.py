"""Measure a checkpoint now for ``chorus report``: rebuild its model, evaluate, run the diagnostics.

A checkpoint folder (``runs/NAME/checkpoints/step_*``, written by ``chorus.train``) holds the full
weights (``model.pt``), the resolved recipe (``recipe.yaml``) and ``trainer_state.json``. The model is
rebuilt from the recipe, evaluated per timestep on the validation split, and ``chorus.diagnostics.collect``
runs on the first ``samples`` validation samples, exactly as the training loop would have done.
"""
from __future__ import annotations

import json
import os

from chorus.report.run_data import ReportError, RunData

STATE_FILE = "trainer_state.json"


def is_checkpoint(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, STATE_FILE))


def load_checkpoint(path: str, samples: int | None = None, split: str = "val") -> RunData:
    """Rebuild, evaluate and diagnose checkpoint ``path``; errors name the file at fault."""
    from chorus.config import RecipeError, flatten, load_recipe, to_dict
    from chorus.diagnostics import collect
    from chorus.losses import ensemble_loss
    from chorus.train import components
    from chorus.train.checkpoint import MODEL_FILE, RECIPE_FILE, load_model_weights
    from chorus.train.evaluate import evaluate, first_batches
    from chorus.train.metrics import prefixed

    for needed in (RECIPE_FILE, MODEL_FILE):
        if not os.path.isfile(os.path.join(path, needed)):
            raise ReportError(f"checkpoint {path!r} has no {needed}: it is incomplete or not a chorus checkpoint")
    try:
        recipe = load_recipe(os.path.join(path, RECIPE_FILE))
        manifest = components.open_shards(recipe)
        model = components.build_model(recipe, manifest)
    except RecipeError as e:
        raise ReportError(f"checkpoint {path!r}: {e}") from None
    try:
        model.load_state_dict(load_model_weights(path))
    except RuntimeError as e:
        raise ReportError(f"checkpoint {path!r}: {MODEL_FILE} does not fit the model of its recipe "
                          f"({str(e).splitlines()[0]})") from None
    if not components.check_split(recipe, manifest, split):
        raise ReportError(f"checkpoint {path!r}: its data {recipe.data.shards!r} has no {split!r} split to measure on")
    loss_kwargs = dict(gamma=recipe.loss.gamma, temperature=recipe.loss.temperature, ce=recipe.loss.ce,
                       label_smoothing=recipe.loss.label_smoothing)
    result = evaluate(model, components.make_loader(recipe, split, train=False, manifest=manifest), T=recipe.data.T,
                      loss_kwargs=loss_kwargs)
    n = samples or recipe.diagnostics.samples
    batches = first_batches(components.make_loader(recipe, split, train=False, manifest=manifest), n,
                            time_first=manifest.get("kind") != "points")
    d = collect(model, batches, layers=recipe.diagnostics.layers,
                loss_fn=lambda logits, y: ensemble_loss(logits.float(), y, **loss_kwargs))
    with open(os.path.join(path, STATE_FILE)) as f:
        state = json.load(f)
    metrics = {**{k: v for k, v in prefixed(result, split).items() if k != f"{split}/samples"}, **d.metrics}
    histories = {k: [(float(state.get("epoch", 0)), v)] for k, v in d.metrics.items() if k.startswith("mps/alpha/")}
    params = {k: str(v) for k, v in flatten(to_dict(recipe)).items()}
    name = f"{recipe.name}@step{state.get('step', '?')}"
    return RunData(ref=path, source=f"checkpoint {os.path.abspath(path)}", name=name, params=params,
                   metrics=metrics, histories=histories,
                   figures={k: v for k, v in d.figures.items() if k == "membrane_histograms.png"},
                   diag_epoch=state.get("epoch"))
