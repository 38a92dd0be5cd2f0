"""The local key directory used by offline ``render`` (and ``import``): ``<inventory stem>.keys/``.

Private keys live here only when the operator chose offline mode; keys made by ``apply`` are created on
the hosts and never come here. Directory 0700, files 0600; looser permissions are reported (innernet's
``warn_on_dangerous_mode``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from wiremesh.errors import OperationError, ValidationError
from wiremesh.model.keys import PrivateKey
from wiremesh.store.atomic import write_atomic
from wiremesh.store.bulk import FileWrite, write_files
from wiremesh.store.reading import read_text


class KeyDir:
    """A directory of ``<node>.key`` files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def beside(inventory_path: Path) -> KeyDir:
        """The key directory that belongs to an inventory file."""
        return KeyDir(inventory_path.parent / f"{inventory_path.stem}.keys")

    def _file(self, name: str) -> Path:
        return self.path / f"{name}.key"

    def warnings(self) -> list[str]:
        """Permission problems (group/other access) of the directory and its key files."""
        out: list[str] = []
        if not self.path.is_dir():
            return out
        if stat.S_IMODE(self.path.stat().st_mode) & 0o077:
            out.append(f"{self.path} is accessible by other users; run 'chmod 700 {self.path}'")
        for item in sorted(self.path.glob("*.key")):
            if stat.S_IMODE(item.stat().st_mode) & 0o077:
                out.append(f"{item} is readable by other users; run 'chmod 600 {item}'")
        return out

    def ensure(self) -> None:
        """Create the directory (0700) if it is missing."""
        try:
            self.path.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise OperationError(
                f"cannot create key directory {self.path}: {exc.strerror}"
            ) from None

    def get(self, name: str) -> PrivateKey | None:
        """The private key of node ``name``, or None when there is none here."""
        try:
            text = read_text(self._file(name), "key file")  # a regular file only: no FIFO hang
        except FileNotFoundError:
            return None
        try:
            return PrivateKey.parse(text.strip(), f"key file {self._file(name)}")
        except ValidationError as exc:
            raise ValidationError(exc.message, "delete the file to have a new key made") from None

    def put(self, name: str, key: PrivateKey) -> None:
        """Store the private key of node ``name`` (0600, atomic)."""
        self.ensure()
        try:
            write_atomic(self._file(name), (key.reveal() + "\n").encode("ascii"), 0o600)
        except OSError as exc:
            raise self._write_error(exc) from None

    def _write_error(self, exc: OSError) -> OperationError:
        return OperationError(
            f"cannot write a key into {self.path}: {exc.strerror or exc}",
            f"check that you may write in {self.path} and that the disk is not full",
        )

    def put_many(self, keys: dict[str, PrivateKey]) -> None:
        """Store many keys (0600, atomic, durable), written in parallel."""
        if not keys:
            return
        self.ensure()
        try:
            write_files(
                [
                    FileWrite(self._file(name), (key.reveal() + "\n").encode("ascii"), 0o600)
                    for name, key in keys.items()
                ],
                durable=True,
            )
        except OSError as exc:
            raise self._write_error(exc) from None

    def remove(self, name: str) -> bool:
        """Delete the key of node ``name``; True if there was one."""
        try:
            os.unlink(self._file(name))
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise OperationError(
                f"cannot delete the key file {self._file(name)}: {exc.strerror}",
                "delete it by hand (the node is already out of the inventory)",
            ) from None
        return True
