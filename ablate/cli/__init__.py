"""The ``ablate`` command line (typer + rich): ``app`` holds every command, ``wording`` what they print."""

from ablate.cli.app import app, main

__all__ = ["app", "main"]
