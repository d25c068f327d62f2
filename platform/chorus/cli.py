"""The ``chorus`` command line.

Each subcommand lives in its own module under :mod:`chorus.commands` and exposes
``add_parser(subparsers)``, which registers the subcommand and sets ``func`` (called with the parsed
arguments, returning an exit code). Modules are discovered, so adding a command touches no other file.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    import chorus.commands as commands

    parser = argparse.ArgumentParser(
        prog="chorus",
        description="Chorus: train spiking neural networks as temporal ensembles (MPS + TASG).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"chorus.commands.{info.name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
