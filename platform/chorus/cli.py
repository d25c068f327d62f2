"""The ``chorus`` command line.

Each subcommand lives in its own module under :mod:`chorus.commands` and exposes
``add_parser(subparsers)``, which registers the subcommand and sets ``func`` (called with the parsed
arguments, returning an exit code). Modules are discovered, so adding a command touches no other file.
Arguments after the subcommand may mix options and positionals (``chorus train R --out D key=value``);
an error prints that subcommand's usage.
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
    for name, p in sub.choices.items():
        p.set_defaults(parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "func", None) is None:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        parser.print_help()
        return 0
    if extra:   # options before positionals (key=value after --out): parse the subcommand's part again
        rest = argv[argv.index(args.command) + 1:]
        args = args.parser.parse_intermixed_args(rest)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
