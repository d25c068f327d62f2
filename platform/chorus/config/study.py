"""The study file of ``chorus study`` (``recipes/study/*.yaml``): one training recipe, named arms (sets of
training-recipe overrides: vanilla, MPS, TASG, MPS + TASG, ...) and seeds; every arm × seed is one run
(docs/method.md, "Recipes and runs"). The same schema machinery, YAML reading and ``key.sub=value``
overrides as training and search recipes; inside ``fixed`` the rest of an override's key is one
training-recipe key (``fixed.train.epochs=2``), inside ``arms`` the arm's name and then one training key
(``arms.vanilla.loss.gamma=0``). Errors are :class:`StudyError`, naming the key and the file.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import field_validator

from chorus.config import yaml_io
from chorus.config.base import F, FileSpec, RecipeError, Section

ARM_NAME = re.compile(r"[A-Za-z0-9_.-]+")       # a folder name and an MLflow metric-name part


class StudyError(RecipeError):
    """An invalid study file: ``'key' in FILE: what is wrong``."""

    layout = "'{key}' in {source}: {message}"


class StudyTracking(Section):
    enabled: bool = F(True, "one MLflow parent run for the study, one child run per arm x seed")
    uri: Optional[str] = F(None, "MLflow store; null = the recipe's")
    experiment: Optional[str] = F(None, "MLflow experiment; null = the recipe's")


class StudySpec(FileSpec):
    """A validated study; ``recipe`` and ``out_dir`` are absolute, ``source`` is the file."""

    name: str = F("study", "study name (default: the file name); its folder is out_dir/name")
    description: str = F("", "free text")
    recipe: str = F(..., "the training recipe every arm starts from, relative to this file")
    fixed: dict[str, Any] = F({}, "training-recipe overrides for every arm (dotted keys), e.g. train.epochs: 3")
    arms: dict[str, dict[str, Any]] = F(..., "arm name -> training-recipe overrides (dotted keys); the first arm "
                                             "is the reference the others are compared with")
    seeds: list[int] = F(..., "train.seed of each run of every arm", min_length=1)
    split: Literal["test", "val"] = F("test", "the split whose per-timestep results are aggregated")
    out_dir: str = F("runs/study", "where studies are kept (relative: to the working folder)")
    progress: bool = F(True, "a progress line per finished run (the runs' own bars are off)")
    concurrency: Optional[int] = F(None, "runs (Ray trials) trained at a time; null = the machine's cores // (the "
                                         "torch threads of a run (OMP_NUM_THREADS, else 1) + 1 for its data reader)",
                                   ge=1)
    tracking: StudyTracking = F(default_factory=StudyTracking, doc="MLflow of the study")

    @field_validator("arms")
    @classmethod
    def _arms(cls, arms: dict) -> dict:
        if not arms:
            raise ValueError("no arms (give at least one named set of overrides, e.g. vanilla: {neuron.mps: false})")
        for name in arms:
            if not ARM_NAME.fullmatch(name):
                raise ValueError(f"arm name {name!r}: use letters, digits, '_', '.', '-' (it names a folder "
                                 f"and MLflow metrics)")
        return arms

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list) -> list:
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            raise ValueError(f"seeds repeat {dup}: each seed is one run of every arm")
        return seeds

    @property
    def folder(self) -> str:
        """The study folder: ``out_dir/name``."""
        return os.path.join(self.out_dir, self.name)


def flat_sections(overrides) -> tuple:
    """Override paths whose rest is one training key: ``fixed``, and ``arms.<name>`` for each arm named."""
    arms = {text.split("=", 1)[0].split(".")[1] for text in overrides or ()
            if text.startswith("arms.") and text.split("=", 1)[0].count(".") >= 2}
    return (("fixed",),) + tuple(("arms", name) for name in sorted(arms))


def parse_study(raw: dict, where: str, base_dir: str = ".") -> StudySpec:
    """Validate a raw mapping into a :class:`StudySpec` (the recipe is checked by ``chorus.study``)."""
    spec = StudySpec.parse({"name": Path(where).stem, **raw}, StudyError, where)
    spec.recipe = os.path.abspath(os.path.join(base_dir, os.path.expanduser(spec.recipe)))
    spec.out_dir = os.path.abspath(os.path.expanduser(spec.out_dir))
    return spec


def load_study(path: str | os.PathLike, overrides: list[str] | None = None) -> StudySpec:
    """Read, override and validate a study file. ``recipe`` is resolved relative to the file, a relative
    ``out_dir`` relative to the working folder."""
    path = str(path)
    raw = yaml_io.read_yaml(path, StudyError, "study file", "study")
    raw = yaml_io.apply_overrides(raw, overrides or [], f"command line for {path}", StudyError,
                                  flat_sections(overrides))
    return parse_study(raw, path, base_dir=os.path.dirname(os.path.abspath(path)))

