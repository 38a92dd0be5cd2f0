"""Offline mode: ``render`` (configs for every node into a directory) and ``show`` (one node's config).

Offline keys are made on the operator's machine, in the key directory beside the inventory; only the
public keys go into the inventory.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from wiremesh.codec.wgquick import HiddenKey, KeySource, LiteralKey, render
from wiremesh.errors import OperationError, ValidationError, quote
from wiremesh.model.inventory import Inventory
from wiremesh.model.keys import PrivateKey
from wiremesh.model.topology import wanted_device, wanted_mesh
from wiremesh.store.bulk import FileWrite, Writer
from wiremesh.store.inventory_file import InventoryFile
from wiremesh.store.keydir import KeyDir


@dataclass(frozen=True)
class RenderReport:
    """What ``render`` did."""

    files: tuple[Path, ...]
    new_keys: tuple[str, ...]
    warnings: tuple[str, ...]


def _offline_keys(
    inventory: Inventory, keys: KeyDir
) -> tuple[Inventory, dict[str, PrivateKey], list[str]]:
    """Every node's offline private key, making the missing ones; the inventory gets the public keys."""
    private: dict[str, PrivateKey] = {}
    made: list[str] = []
    problems: list[ValidationError] = []
    for node in inventory:
        key = keys.get(node.name)
        if key is None:
            if node.public_key is not None:
                problems.append(
                    ValidationError(
                        f"node {quote(node.name)}: its public key is in the inventory but its private key "
                        f"is not in {keys.path}/ (it was made on the host by 'apply')",
                        "offline render needs every key locally: remove 'public_key' from the node "
                        "to make a new key pair (the host then needs the new config), or use 'apply'",
                    )
                )
                continue
            key = PrivateKey.generate()
            made.append(node.name)
        elif node.public_key is not None and key.public_key() != node.public_key:
            problems.append(
                ValidationError(
                    f"node {quote(node.name)}: the key in {keys.path}/{node.name}.key does not match the "
                    "inventory's public_key",
                    "restore the right key file, or remove one of them to start over with a new key",
                )
            )
            continue
        private[node.name] = key
    if problems:
        from wiremesh.model.inventory import InvalidInventory

        raise InvalidInventory(problems, "render")
    nodes = tuple(
        replace(node, public_key=private[node.name].public_key())
        if node.public_key is None
        else node
        for node in inventory
    )
    return replace(inventory, nodes=nodes), private, made


def render_all(file: InventoryFile, out_dir: Path) -> RenderReport:
    """Write ``<out>/<node>/<interface>.conf`` (0600) for every node.

    New keys are stored (and made durable) while the configs are rendered and written: the two go to
    different directories, whose file creations the file system can then do side by side. The
    inventory records the new public keys only after the keys are safely on disk.
    """
    keys = KeyDir.beside(file.path)
    with file.edit() as edit:
        inventory, private, made = _offline_keys(edit.inventory, keys)
        if not inventory.nodes:
            raise ValidationError(
                "the inventory has no nodes", "add some with 'wiremesh node add NAME'"
            )
        with ThreadPoolExecutor(max_workers=1) as background:
            stored = background.submit(keys.put_many, {n: private[n] for n in made})
            written = _write_configs(inventory, private, out_dir)
            stored.result()
        edit.inventory = inventory
    return RenderReport(tuple(written), tuple(made), tuple(keys.warnings()))


def _write_configs(
    inventory: Inventory, private: dict[str, PrivateKey], out_dir: Path
) -> list[Path]:
    memo: dict[int, str] = {}
    devices = wanted_mesh(inventory)
    name = inventory.mesh.interface
    written: list[Path] = []
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Rendering (CPU) overlaps with writing (disk latency); a 1,000-node mesh renders ~150 MB of
        # text, of which only a few configs wait in memory at any time.
        with Writer() as writer:
            for node in inventory:
                path = out_dir / node.name / f"{name}.conf"
                text = render(
                    devices[node.name],
                    LiteralKey(private[node.name]),
                    f"node {node.name} of mesh {inventory.mesh.name}",
                    memo,
                )
                writer.write(FileWrite(path, text.encode(), 0o600), make_parent=True)
                written.append(path)
    except OSError as exc:
        raise OperationError(
            f"cannot write configs to {out_dir}: {exc.strerror}",
            "check the directory and its permissions",
        ) from None
    return written


@dataclass(frozen=True)
class Shown:
    """What ``show`` prints, and the peers whose public key is not known yet (then the text is
    marked, and wg refuses it: see :data:`~wiremesh.codec.wgquick.UNKNOWN_PEER_KEY`)."""

    text: str
    unknown: tuple[str, ...]


def _where(path: Path, fallback: str) -> str:
    """``path`` for the ``<hidden: ...>`` placeholder if it fits on a config line, else ``fallback``
    (a directory name may hold '#' or characters outside ASCII)."""
    text = str(path)
    return text if text.isascii() and text.isprintable() and "#" not in text else fallback


def show(file: InventoryFile, name: str, reveal: bool) -> Shown:
    """One node's config as text: the private key hidden unless ``reveal``. A peer whose public
    key does not exist yet gets a placeholder instead of stopping the whole output."""
    inventory = file.load()
    node = inventory.node(name)
    keys = KeyDir.beside(file.path)
    source: KeySource
    if reveal:
        key = keys.get(node.name)
        if key is None:
            raise ValidationError(
                f"node {quote(name)} has no private key in {keys.path}/",
                "keys made by 'apply' stay on the host; 'wiremesh render' makes offline keys",
            )
        source = LiteralKey(key)
    elif keys.get(node.name) is not None:
        where = _where(keys.path / f"{node.name}.key", "in the key directory beside the inventory")
        source = HiddenKey(f"{where}; --reveal shows it")
    else:
        source = HiddenKey(f"on the host, /etc/wireguard/{inventory.mesh.interface}.key")
    device = wanted_device(inventory, node)
    text = render(
        device,
        source,
        f"node {node.name} of mesh {inventory.mesh.name}",
        unknown_keys=True,
    )
    return Shown(text, tuple(p.name for p in device.peers if p.public_key is None))
