"""The inventory file on disk: locked read-modify-write, atomic replacement.

A change is made in memory, validated in full, and only then written; a failed validation leaves the
file byte-for-byte as it was.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wiremesh.codec.inventory_fastpath import add_keys
from wiremesh.codec.inventory_toml import loads
from wiremesh.errors import OperationError, ValidationError
from wiremesh.model.inventory import Inventory, validate
from wiremesh.store.atomic import write_atomic


@dataclass
class Edit:
    """An inventory being edited: assign a new value to ``inventory``; it is saved on success."""

    inventory: Inventory


class InventoryFile:
    """``wiremesh.toml`` (or the file given with ``-f``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def directory(self) -> Path:
        """The directory the inventory lives in (relative paths in it are resolved from here)."""
        return self.path.resolve().parent

    def exists(self) -> bool:
        """True when the file exists."""
        return self.path.exists()

    def _read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValidationError(
                f"no inventory at {self.path}",
                "create one with 'wiremesh init --cidr 10.0.0.0/24', or point to it with -f PATH "
                "or $WIREMESH_FILE",
            ) from None
        except UnicodeDecodeError as exc:
            raise ValidationError(f"{self.path}: not UTF-8 text ({exc.reason})") from None
        except OSError as exc:
            raise OperationError(f"cannot read {self.path}: {exc.strerror}") from None

    def load(self) -> Inventory:
        """Read and validate the inventory."""
        return loads(self._read(), str(self.path)).inventory

    def create(self, inventory: Inventory, comment: str | None = None) -> None:
        """Write a new inventory; refuses to overwrite an existing file."""
        validate(inventory, str(self.path))
        from wiremesh.codec.inventory_write import new_text  # tomlkit: only when writing

        text = new_text(inventory, comment)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise ValidationError(
                f"{self.path} already exists",
                "edit it with 'wiremesh node ...', or choose another file with -f PATH",
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the file itself.

        The file is replaced by rename, so after getting the lock we check that the path still names
        the inode we locked; otherwise another writer replaced it meanwhile and we lock again.
        """
        while True:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                self._read()  # raises the "no inventory" error
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    try:
                        yield
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    return
            finally:
                os.close(fd)

    @contextmanager
    def edit(self) -> Iterator[Edit]:
        """Load under lock, let the caller change ``edit.inventory``, validate, write if changed."""
        with self._locked():
            original = self._read()
            loaded = loads(original, str(self.path))
            edit = Edit(loaded.inventory)
            yield edit
            if edit.inventory == loaded.inventory and not loaded.allocated:
                return  # nothing to write: skip tomlkit's (slow) round trip
            validate(edit.inventory, str(self.path))
            text = None
            if not loaded.allocated:
                text = add_keys(original, loaded.inventory, edit.inventory)
            if text is None:
                from wiremesh.codec.inventory_write import update_text  # tomlkit: only when needed

                text = update_text(original, edit.inventory)
            if text != original:
                # Keep the file's mode (the user may have chosen it); 0644 is the default.
                try:
                    mode = stat.S_IMODE(os.stat(self.path).st_mode)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
                    mode = 0o644
                write_atomic(self.path, text.encode("utf-8"), mode)
