"""The ``chorus`` command line."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from chorus import __version__

    parser = argparse.ArgumentParser(prog="chorus", description="Chorus: train SNNs as temporal ensembles")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("version", help="print the Chorus version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
