"""The ``kbtool`` command line (one typer app); ``kbtool.cli:main`` is the console script."""

from kbtool.cli.app import app, main

__all__ = ["app", "main"]
