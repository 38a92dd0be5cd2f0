"""wiremesh: a WireGuard full mesh from one inventory file, over SSH."""

__version__ = "0.1.0"
