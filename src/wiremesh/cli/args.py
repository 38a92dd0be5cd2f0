"""Turning option strings into validated values at the edge, with errors that name the option.

Numeric options are range-checked here, by argparse (a usage error, exit code 2), so that no
negative timeout, zero parallelism or NaN ever reaches the code that uses it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from wiremesh.errors import quote

T = TypeVar("T")

MAX_SECONDS = 86400.0
"""The longest timeout an option takes (a day): longer is a typo, and asyncio's timers need a bound."""


def parse_option(parse: Callable[[object, str], T], value: str | None, option: str) -> T | None:
    """``parse(value)`` with errors naming ``option``; None stays None."""
    if value is None:
        return None
    return parse(value, option)


def _digits(text: str) -> bool:
    # As wiremesh.model.endpoint.digits (not imported: this module loads at every start-up).
    return text.isascii() and text.isdigit()


def _whole(text: str) -> int:
    stripped = text.strip()
    sign = -1 if stripped.startswith("-") else 1
    body = stripped[1:] if stripped[:1] in "+-" else stripped
    if not _digits(body) or len(body) > 18:
        raise argparse.ArgumentTypeError(f"{quote(text)} is not a whole number")
    return sign * int(body)


def int_arg(text: str) -> int:
    """An integer option (argparse ``type``) whose range the model checks (ports: with a hint)."""
    return _whole(text)


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        value = _whole(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not from {low} to {high}")
        return value

    parse.__name__ = "number"  # argparse names the type in its messages
    return parse


def seconds_arg(text: str) -> float:
    """An argparse ``type``: a timeout in seconds, more than 0 and at most a day (no NaN, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quote(text)} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{quote(text)} is not a number of seconds from more than 0 to {MAX_SECONDS:.0f}"
        )
    return value


def mtu_arg(text: str) -> int | str:
    """An argparse ``type`` for ``--mtu``: a number (its range is the model's), or "auto"."""
    if text.strip() == "auto":
        return "auto"
    try:
        return _whole(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f'{quote(text)} is not a number or "auto"') from None


def path_arg(text: str) -> str:
    """An argparse ``type`` for file and directory options: any path the OS can take (no NUL)."""
    if "\x00" in text or not text:
        raise argparse.ArgumentTypeError(f"{quote(text)} is not a usable path")
    return text
