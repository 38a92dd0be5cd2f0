"""The one user-facing error type, and its two kinds.

Every error that reaches the user says what is wrong and how to fix it (``hint``). The CLI's single
top-level handler prints it and exits with ``exit_code``; a traceback is shown only with ``--debug``
(the pattern of httpie's ``core.py`` and innernet's ``permissions_helptext``).
"""

from __future__ import annotations

from enum import IntEnum

QUOTE_LIMIT = 80
"""At most this many characters of a value appear in a message (a 5 MB value once made a 5 MB error)."""


class ExitStatus(IntEnum):
    """Exit codes that scripts can rely on."""

    OK = 0
    FAILED = 1  # an operation failed (a host unreachable, a command failed, the mesh unhealthy)
    USAGE = 2  # bad arguments or an invalid inventory; nothing was changed


class WiremeshError(Exception):
    """An error meant for the user: ``message`` says what is wrong, ``hint`` how to fix it."""

    exit_code: ExitStatus = ExitStatus.FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ValidationError(WiremeshError):
    """Bad input: an invalid inventory, argument or file. Exit code 2; nothing is changed."""

    exit_code = ExitStatus.USAGE


class OperationError(WiremeshError):
    """An operation that could not be carried out (I/O, a host, a tool). Exit code 1."""

    exit_code = ExitStatus.FAILED


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters.

    Every message that quotes a value the user gave goes through here, so that no input, however
    long, makes a long message. A cut string says how long it was.
    """
    try:
        text = repr(value)
    except RecursionError:  # a list nested hundreds deep (TOML allows it)
        return "(a deeply nested value)"
    if len(text) <= limit:
        return text
    if isinstance(value, str):
        return f"{text[:limit]}… ({len(value)} characters)"
    return f"{text[:limit]}…"


def _kind(value: object) -> str:
    """How a TOML value of this Python type is called in a message."""
    if isinstance(value, bool):
        return "the boolean"
    if isinstance(value, str):
        return "the string"
    if isinstance(value, int | float):
        return "the number"
    if isinstance(value, list):
        return "the list"
    if isinstance(value, dict):
        return "the table"
    return f"the {type(value).__name__}"


def wrong_type(what: str, value: object, wanted: str, fix: str | None = None) -> ValidationError:
    """The one error for a value of the wrong type, e.g. ``[mesh]: port must be a number, not the
    string '51820'`` with the hint ``write port = 51820``.

    Every key follows the same rule: its type is strict, nothing is converted silently (a string
    of digits is not a port; a string is not a list). ``fix`` is the corrected value as the user
    would write it; the hint names the key when ``what`` ends in one (``node 'a': listen_port``).
    """
    key = what.rsplit(": ", 1)[-1]
    message = f"{what} must be {wanted}, not {_kind(value)} {quote(value)}"
    if fix is not None and key.isidentifier():
        hint = f"write {key} = {fix}"
    elif fix is not None:
        hint = f"give {fix}"
    else:
        hint = f"give {wanted}"
    return ValidationError(message, hint)
