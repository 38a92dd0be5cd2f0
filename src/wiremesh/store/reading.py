"""Reading the operator's own files (inventory, wg-quick files to import, ssh_config): regular files
only, and every failure as the one error type.

``-f /dev/zero`` used to read forever and ``-f FIFO`` to block forever: a file is opened without
blocking (``O_NONBLOCK`` makes opening a FIFO return at once), checked to be a regular file with
``fstat`` on the open descriptor (no window between the check and the read), and only then read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from wiremesh.errors import OperationError, ValidationError

BOM = "\ufeff"
"""The UTF-8 byte order mark some Windows editors put at the start of a text file."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: Path, what: str) -> int:
    """An open read-only descriptor of ``path``, which must be a regular file (symlinks followed).

    A missing file raises :class:`FileNotFoundError` (callers say what to do about it); any other
    problem is a :class:`ValidationError` (not a regular file) or an :class:`OperationError`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO opened in some modes
            raise ValidationError(
                f"{what} {path} is not a regular file", "give the path of a text file"
            ) from None
        raise OperationError(
            f"cannot open {what} {path}: {exc.strerror}", "check the path and its permissions"
        ) from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise OperationError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ValidationError(
            f"{what} {path} is {_kind(mode)}, not a regular file",
            "give the path of a text file",
        )
    return fd


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of the regular file ``path``, a leading BOM included (callers decide).

    Raises :class:`FileNotFoundError` for a missing file, else only the one error type.
    """
    fd = open_regular(path, what)
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise OperationError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
            "save the file as UTF-8",
        ) from None
