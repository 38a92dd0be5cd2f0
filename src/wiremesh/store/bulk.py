"""Writing many small files at once (offline render of big meshes).

Creating a file costs a round trip to the disk's journal; on virtual disks that latency, not the
bytes, dominates (measured here: 400 configs took 0.52 s one after another, 0.03 s with 16 threads).
The system calls release the GIL, so a thread pool overlaps them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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


def make_dirs(paths: Sequence[Path], mode: int = 0o700) -> None:
    """Create directories (existing ones are fine) in parallel."""

    def one(path: Path) -> None:
        path.mkdir(mode=mode, exist_ok=True)

    if not paths:
        return
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(paths))) as pool:
        list(pool.map(one, paths))
