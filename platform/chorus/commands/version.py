"""``chorus version``: print the installed Chorus version."""
from __future__ import annotations


def run(args) -> int:
    from chorus import __version__

    print(__version__)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("version", help="print the Chorus version")
    p.set_defaults(func=run)
