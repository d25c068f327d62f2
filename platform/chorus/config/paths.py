"""Relative paths in recipes and launcher configs (docs/method.md, "Recipes and runs").

A relative path (``data.shards: data/ndigits``, ``train.deepspeed``, the ``deepspeed_config_file`` of an
``infra/accelerate/*.yaml``) is looked up, in order, against: the working directory, the folder of the
file that holds it, the repository that file lies in (the nearest folder above it with a
``pyproject.toml``), and the repository of the installed ``chorus`` package. The first place where it
exists wins, so a shipped recipe (``data.shards: data/ndigits``, written relative to the repository
root) means the same folder from any working directory. When it exists nowhere the value stays as
written and :func:`tried` lists every place looked at, for the error message.
"""
from __future__ import annotations

import os
from typing import Callable, Optional


def _repository_of(path: str) -> Optional[str]:
    """The nearest folder at or above ``path`` holding a ``pyproject.toml`` (a repository root)."""
    here = os.path.abspath(path)
    while True:
        if os.path.isfile(os.path.join(here, "pyproject.toml")):
            return here
        up = os.path.dirname(here)
        if up == here:
            return None
        here = up


def package_repository() -> Optional[str]:
    """The repository the ``chorus`` package was installed from (``platform/chorus`` -> its root), when
    that folder is still there (an editable install, a checkout, the container image)."""
    import chorus

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(chorus.__file__))))
    return root if os.path.isfile(os.path.join(root, "pyproject.toml")) else None


def bases(source: Optional[str] = None) -> list[tuple[str, str]]:
    """``(what, folder)`` pairs a relative path of ``source`` (a file, or None) is resolved against."""
    out = [("the working directory", os.getcwd())]
    if source:
        folder = os.path.dirname(os.path.abspath(source))
        out.append((f"the folder of {source}", folder))
        repo = _repository_of(folder)
        if repo:
            out.append((f"the repository of {source}", repo))
    pkg = package_repository()
    if pkg:
        out.append(("the chorus package's repository", pkg))
    seen, unique = set(), []
    for what, folder in out:
        if folder not in seen:
            seen.add(folder)
            unique.append((what, folder))
    return unique


def resolve(value: Optional[str], source: Optional[str] = None,
            exists: Callable[[str], bool] = os.path.exists) -> Optional[str]:
    """``value`` as written when absolute or found from the working directory; else the first of
    :func:`bases` where it exists, as an absolute path; else ``value`` unchanged."""
    if not value or os.path.isabs(value) or "://" in value:   # URLs (s3://, https://) are not paths
        return value
    for i, (_, folder) in enumerate(bases(source)):
        path = os.path.join(folder, value)
        if exists(path):
            return value if i == 0 else os.path.normpath(path)
    return value


def tried(value: str, source: Optional[str] = None) -> str:
    """The places a relative ``value`` was looked for, for an error message."""
    if os.path.isabs(value):
        return f"an absolute path"
    return "resolved against " + ", ".join(f"{what} ({os.path.join(folder, value)})"
                                           for what, folder in bases(source))


def set_in(recipe_source: Optional[str], section: str, key: str, value) -> str:
    """Where a recipe value came from: ``"set in FILE"`` when the file holds exactly it, else the override."""
    if recipe_source and os.path.isfile(recipe_source):
        try:
            from chorus.config.yaml_io import read_yaml

            if (read_yaml(recipe_source).get(section) or {}).get(key) == value:
                return f"set in {recipe_source}"
        except Exception:  # noqa: BLE001 - only for the wording of an error
            pass
    return f"set by the override {section}.{key}=" + str(value)
