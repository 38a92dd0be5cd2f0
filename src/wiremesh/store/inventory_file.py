"""The inventory file on disk: locked read-modify-write, atomic replacement.

A change is made in memory, validated in full, and only then written; a failed validation leaves the
file byte-for-byte as it was. Only a regular file is read (``-f /dev/zero`` or a FIFO is refused, see
:mod:`wiremesh.store.reading`); a UTF-8 byte order mark is accepted and kept when the file is
rewritten; every I/O failure is an :class:`OperationError` with a hint.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wiremesh.codec.inventory_fastpath import add_keys
from wiremesh.codec.inventory_toml import loads
from wiremesh.errors import OperationError, ValidationError
from wiremesh.model.inventory import Inventory, validate
from wiremesh.model.networks import warnings
from wiremesh.store.atomic import write_atomic
from wiremesh.store.reading import BOM, open_regular, read_text

WHAT = "inventory"


@dataclass
class Edit:
    """An inventory being edited: assign a new value to ``inventory``; it is saved on success."""

    inventory: Inventory


class InventoryFile:
    """``wiremesh.toml`` (or the file given with ``-f``)."""

    def __init__(self, path: Path, warn: Callable[[str], None] | None = None) -> None:
        self.path = path
        self._warn = warn
        self._warned: set[str] = set()

    def _report(self, inventory: Inventory) -> None:
        """Pass what is unusual about ``inventory`` to ``warn``, each warning once."""
        if self._warn is None:
            return
        for text in warnings(inventory):
            if text not in self._warned:
                self._warned.add(text)
                self._warn(text)

    @property
    def directory(self) -> Path:
        """The directory the inventory lives in (relative paths in it are resolved from here)."""
        return self.path.resolve().parent

    def exists(self) -> bool:
        """True when the file exists."""
        return self.path.exists()

    def _missing(self) -> ValidationError:
        return ValidationError(
            f"no inventory at {self.path}",
            "create one with 'wiremesh init --cidr 10.0.0.0/24', or point to it with -f PATH "
            "or $WIREMESH_FILE",
        )

    def _read(self) -> str:
        """The file's text; a leading byte order mark is left on (see :meth:`edit`)."""
        try:
            return read_text(self.path, WHAT)
        except FileNotFoundError:
            raise self._missing() from None

    def load(self) -> Inventory:
        """Read and validate the inventory."""
        inventory = loads(self._read().removeprefix(BOM), str(self.path)).inventory
        self._report(inventory)
        return inventory

    def create(self, inventory: Inventory, comment: str | None = None) -> None:
        """Write a new inventory; refuses to overwrite an existing file."""
        validate(inventory, str(self.path))
        self._report(inventory)
        from wiremesh.codec.inventory_write import new_text  # tomlkit: only when writing

        text = new_text(inventory, comment)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise ValidationError(
                f"{self.path} already exists",
                "edit it with 'wiremesh node ...', or choose another file with -f PATH",
            ) from None
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            self.path.unlink(missing_ok=True)  # ours, just created: no half-written inventory
            raise _write_error(self.path, exc) from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the file itself.

        The file is replaced by rename, so after getting the lock we check that the path still names
        the inode we locked; otherwise another writer replaced it meanwhile and we lock again.
        """
        while True:
            try:
                fd = open_regular(self.path, WHAT)
            except FileNotFoundError:
                raise self._missing() from None
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
            # A byte order mark (Windows editors) is set aside and put back on write.
            bom = BOM if original.startswith(BOM) else ""
            original = original.removeprefix(BOM)
            loaded = loads(original, str(self.path))
            self._report(loaded.inventory)
            edit = Edit(loaded.inventory)
            yield edit
            if edit.inventory == loaded.inventory and not loaded.allocated:
                return  # nothing to write: skip tomlkit's (slow) round trip
            validate(edit.inventory, str(self.path))
            self._report(edit.inventory)
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
                        raise _write_error(self.path, exc) from None
                    mode = 0o644
                try:
                    write_atomic(self.path, (bom + text).encode("utf-8"), mode)
                except OSError as exc:
                    raise _write_error(self.path, exc) from None


def _write_error(path: Path, exc: OSError) -> OperationError:
    """A failed write of the inventory (a read-only directory, a full disk...)."""
    return OperationError(
        f"cannot write {path}: {exc.strerror or exc}",
        f"check that you may write in {path.parent if str(path.parent) else '.'} (the inventory is "
        "replaced by a new file written beside it) and that the disk is not full; the inventory "
        "was left as it was",
    )
