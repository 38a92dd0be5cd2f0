"""Turning option strings into validated values at the edge, with errors that name the option."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def parse_option(parse: Callable[[object, str], T], value: str | None, option: str) -> T | None:
    """``parse(value)`` with errors naming ``option``; None stays None."""
    if value is None:
        return None
    return parse(value, option)


def int_arg(text: str) -> int:
    """An integer option (argparse ``type``): the range is checked by the model."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
