"""Defaults for work on many hosts (kept apart so that the CLI can show them without importing SSH)."""

DEFAULT_PARALLEL = 32
"""Hosts worked on at once: enough for most fleets in one wave, few enough for one sshd per host."""
