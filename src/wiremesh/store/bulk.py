"""Writing many small files at once (offline render of big meshes).

Creating a file costs a round trip to the disk's journal; on virtual disks that latency, not the
bytes, dominates (measured here: 400 configs took 0.52 s one after another, 0.03 s with 16 threads).
The system calls release the GIL, so a thread pool overlaps them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

WORKERS = 16


@dataclass(frozen=True)
class FileWrite:
    """One file to write: its path, bytes and mode (set from creation on)."""

    path: Path
    data: bytes
    mode: int = 0o600


def _write(item: FileWrite, durable: bool) -> None:
    target = item.path
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp") if durable else target
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, item.mode)
    try:
        os.fchmod(fd, item.mode)  # O_TRUNC keeps an existing file's mode; the umask masks open's
        os.write(fd, item.data)
    except BaseException:
        os.close(fd)
        if durable:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    os.close(fd)
    if durable:
        os.replace(tmp, target)


def _sync_filesystem(directory: Path) -> None:
    """Flush the file system that holds ``directory`` (syncfs(2)): one call instead of one fsync per
    file (400 key files: 0.03 s instead of 0.1-0.4 s here). Falls back to sync(2)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syncfs(fd) == 0:
                return
        except (OSError, AttributeError):
            pass
        os.sync()
    finally:
        os.close(fd)


def write_files(items: Sequence[FileWrite], durable: bool = False) -> None:
    """Write all ``items`` in parallel. ``durable``: each file is written to a temp file and renamed
    into place, then the file system is flushed once and each directory fsynced (for keys: they
    are on disk before the inventory records their public keys); otherwise the files are simply
    written (rendered output, which can be made again)."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(items))) as pool:
        for future in [pool.submit(_write, item, durable) for item in items]:
            future.result()
    if durable:
        directories = sorted({item.path.parent for item in items})
        _sync_filesystem(directories[0])
        for directory in directories:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class Writer:
    """Writes files in the background while the caller makes the next ones (a render of a big mesh
    overlaps its CPU work with the disk's latency). At most ``pending`` files wait in memory."""

    def __init__(self, pending: int = 64) -> None:
        self._pool = ThreadPoolExecutor(max_workers=WORKERS)
        self._pending: deque[Future[None]] = deque()
        self._limit = pending

    def __enter__(self) -> Writer:
        return self

    def write(self, item: FileWrite, make_parent: bool = False) -> None:
        """Queue ``item`` (creating its directory first if asked)."""
        while len(self._pending) >= self._limit:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(_write_one, item, make_parent))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=exc is not None)


def _write_one(item: FileWrite, make_parent: bool) -> None:
    if make_parent:
        item.path.parent.mkdir(mode=0o700, exist_ok=True)
    _write(item, durable=False)
