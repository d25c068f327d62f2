"""What the loop trains on, built from a recipe: the shard manifest, loaders and model.

Uses the real ``chorus.data`` reader and ``chorus.models`` registry (docs/architecture.md). Bad paths
fail here, before anything is written, with a :class:`~chorus.config.RecipeError` naming the key.
"""
from __future__ import annotations

import os
import re

from torch import nn

from chorus.config import Recipe, RecipeError

# what each model input kind reads: chorus.models.entry(name).input_kind -> shard kinds
INPUT_KINDS = {"image": ("events", "frames"), "sequence": ("spikes",), "points": ("points",)}


def _where(recipe: Recipe) -> str:
    return f" in {recipe.source}" if recipe.source else ""


def open_shards(recipe: Recipe) -> dict:
    """Read ``data.shards``/manifest.json (a folder or a URL); errors name ``data.shards``, its
    value and the recipe file."""
    from chorus.data import read_manifest
    from chorus.data.urls import is_remote

    from chorus.config import paths

    folder = recipe.data.shards
    if not is_remote(folder):
        from chorus.data.urls import normalize

        try:
            local = normalize(folder)
        except Exception as e:
            raise RecipeError(f"data.shards: {e}{_where(recipe)}") from e
        if not os.path.isdir(local):
            raise RecipeError(f"data.shards: folder {folder!r} does not exist{_where(recipe)} "
                              f"({paths.set_in(recipe.source, 'data', 'shards', folder)}; "
                              f"{paths.tried(folder, recipe.source)}) (make it with `chorus shard CARD --out {folder}`)")
        if not os.path.isfile(os.path.join(local, "manifest.json")):
            raise RecipeError(f"data.shards: {folder!r} has no manifest.json{_where(recipe)} "
                              f"(is it a folder written by `chorus shard`?)")
    try:
        return read_manifest(folder, retries=recipe.data.retries)
    except Exception as e:  # the reader's own message says what is wrong with the folder or URL
        raise RecipeError(f"data.shards: cannot read {folder!r}{_where(recipe)}: {e}") from e


def check_split(recipe: Recipe, manifest: dict, split: str) -> bool:
    return split in manifest.get("splits", {}) and manifest["splits"][split].get("num_samples", 0) > 0


def make_loader(recipe: Recipe, split: str, *, train: bool, epoch: int = 0, rank: int = 0, world_size: int = 1,
                start_batch: int = 0, T: int | None = None, manifest: dict | None = None):
    """The ``chorus.data`` loader of ``split`` for this process. ``manifest``: the one :func:`open_shards`
    read at the start of the run (a run reads it once, not once per epoch: from a bucket every read is a
    request, measured 19 ms against a local S3 server); without it the manifest is read again."""
    from chorus.data import make_loader as data_loader

    d = recipe.data
    batch = d.batch_size if train else (d.eval_batch_size or d.batch_size)
    return data_loader(manifest or d.shards, split, T=T or d.T, size=d.size, batch_size=batch, workers=d.workers,
                       train=train, seed=recipe.train.seed, epoch=epoch, rank=rank, world_size=world_size,
                       augment=d.augment if train else None, on_error=d.on_error, start_batch=start_batch,
                       worker_kind=d.worker_kind, cache_dir=d.cache_dir, cache_gb=d.cache_gb,
                       retries=d.retries)


def loss_kwargs(recipe: Recipe) -> dict:
    """The evaluation-loss arguments of ``recipe.loss`` (all but ``p_drop``, a training-only setting):
    one definition for the training loop's val/test loss and ``chorus eval``."""
    lc = recipe.loss
    return dict(gamma=lc.gamma, temperature=lc.temperature, ce=lc.ce, label_smoothing=lc.label_smoothing)


def neuron_kwargs(recipe: Recipe) -> dict:
    return recipe.neuron.kwargs


def check_model_fits_data(recipe: Recipe, manifest: dict) -> None:
    """The model reads the shards' kind of input, and a class count in ``model.args`` is the shards'."""
    from chorus import models

    kind, folder = manifest.get("kind"), recipe.data.shards
    takes = models.entry(recipe.model.name).input_kind
    if kind not in INPUT_KINDS[takes]:
        raise RecipeError.at("model.name", f"{recipe.model.name!r} takes {takes} input ({' or '.join(INPUT_KINDS[takes])} "
                             f"shards), but data.shards {folder!r} holds {kind}", recipe.source)
    n = recipe.model.args.get("num_classes")
    if n is not None and n != manifest["num_classes"]:
        raise RecipeError.at("model.args.num_classes", f"{n!r} disagrees with the {manifest['num_classes']} classes "
                             f"of data.shards {folder!r} (its manifest.json); leave the key out, the shards set it",
                             recipe.source)


def build_model(recipe: Recipe, manifest: dict, T: int | None = None) -> nn.Module:
    """``chorus.models.create`` with the recipe's model, neuron settings and the data's input shape;
    a builder's complaint about one of its keywords names ``model.args.<keyword>``."""
    from chorus import models
    from chorus.data import input_shape

    in_shape = input_shape(manifest, T or recipe.data.T, recipe.data.size)
    kwargs = {k: v for k, v in recipe.model.args.items() if k != "num_classes"}
    if manifest.get("kind") == "points":
        kwargs.setdefault("timesteps", T or recipe.data.T)
    try:
        return models.create(recipe.model.name, manifest["num_classes"], in_shape,
                             neuron=neuron_kwargs(recipe), **kwargs)
    except KeyError as e:
        raise RecipeError.at("model.name", e.args[0], recipe.source) from None
    except (TypeError, ValueError) as e:
        m = re.search(r"unexpected keyword argument '(\w+)'|^(\w+)=", str(e))
        arg = m and (m.group(1) or m.group(2))
        key = f"model.args.{arg}" if arg in recipe.model.args else "model"
        raise RecipeError.at(key, str(e), recipe.source) from None


def iterate(loader):
    """Iterate ``loader`` without touching the global torch RNG when the iterator is made (a
    DataLoader draws a base seed then), so a resumed run's RNG stream matches an uninterrupted one."""
    import torch

    with torch.random.fork_rng(devices=[]):
        it = iter(loader)
    yield from it
