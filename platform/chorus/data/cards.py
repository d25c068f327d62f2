"""Dataset cards (``datasets/*.yaml``; docs/architecture.md): load and check one card.

A card is plain YAML data: ``name``, ``kind`` (events | spikes | points), ``source`` (the raw format a
source reader understands), ``layout`` (the expected folder layout, as text), ``sensor_size``
(``[W, H, P]`` for events, ``[channels]`` for spikes), ``classes``, ``split`` (``policy``, ``seed``,
``val_fraction``), ``citation``, ``obtain`` (where the raw files come from) and source ``options``.
"""
from __future__ import annotations

import os

import yaml

from chorus.data.errors import DataError

KINDS = ("events", "spikes", "points")
REQUIRED = {"name": str, "kind": str, "source": str, "classes": list, "split": dict,
            "citation": str, "obtain": str}
OPTIONAL = {"layout": str, "sensor_size": list, "options": dict, "num_points": int,
            "description": str}
SPLIT_KEYS = {"policy": str, "seed": int, "val_fraction": (int, float)}


def load_card(card) -> dict:
    """Read a card from a YAML path (or take a dict) and check its keys and types."""
    where = "<card>"
    if isinstance(card, (str, os.PathLike)):
        where = str(card)
        if not os.path.isfile(where):
            raise DataError("dataset card not found", where=where)
        with open(where) as f:
            try:
                card = yaml.safe_load(f)
            except yaml.YAMLError as exc:
                raise DataError(f"not valid YAML ({exc})", where=where) from exc
    if not isinstance(card, dict):
        raise DataError("a card must be a YAML mapping", where=where)
    card = dict(card)
    for key, typ in REQUIRED.items():
        if key not in card:
            raise DataError(f"missing key {key!r}", where=where)
    for key, value in card.items():
        typ = REQUIRED.get(key) or OPTIONAL.get(key)
        if typ is None:
            raise DataError(f"unknown key {key!r} (known: {sorted({**REQUIRED, **OPTIONAL})})",
                            where=where)
        if not isinstance(value, typ):
            raise DataError(f"key {key!r} must be {typ.__name__}, got {value!r}", where=where)
    if card["kind"] not in KINDS:
        raise DataError(f"key 'kind' must be one of {KINDS}, got {card['kind']!r}", where=where)
    if card["kind"] in ("events", "spikes") and "sensor_size" not in card:
        raise DataError("missing key 'sensor_size'", where=where)
    for key, value in card["split"].items():
        if key not in SPLIT_KEYS:
            raise DataError(f"unknown key 'split.{key}' (known: {sorted(SPLIT_KEYS)})", where=where)
        if not isinstance(value, SPLIT_KEYS[key]):
            raise DataError(f"key 'split.{key}' has the wrong type: {value!r}", where=where)
    if "policy" not in card["split"]:
        raise DataError("missing key 'split.policy'", where=where)
    card["split"] = {"seed": 0, "val_fraction": 0.1, **card["split"]}
    card.setdefault("options", {})
    card["_path"] = where
    return card
