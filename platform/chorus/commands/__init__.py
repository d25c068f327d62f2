"""Subcommands of ``chorus``: one module each, discovered by :mod:`chorus.cli`.

A command module imports heavy dependencies (accelerate, ray, mlflow) inside its ``run`` function, so
that ``chorus --help`` stays fast.
"""
