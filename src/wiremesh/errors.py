"""The one user-facing error type, and its two kinds.

Every error that reaches the user says what is wrong and how to fix it (``hint``). The CLI's single
top-level handler prints it and exits with ``exit_code``; a traceback is shown only with ``--debug``
(the pattern of httpie's ``core.py`` and innernet's ``permissions_helptext``).
"""

from __future__ import annotations

from enum import IntEnum


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
