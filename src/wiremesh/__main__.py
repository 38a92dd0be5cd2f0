"""``python -m wiremesh``."""

from wiremesh.cli.main import entry

entry()
