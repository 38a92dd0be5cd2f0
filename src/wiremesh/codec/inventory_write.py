"""Writing the inventory file: edits made in place with tomlkit, so the user's comments, order and
formatting survive every change the tool makes (reading is :mod:`wiremesh.codec.inventory_toml`).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table
from tomlkit.toml_document import TOMLDocument

from wiremesh.codec import fields as f
from wiremesh.codec.inventory_toml import MESH_FIELDS, NODE_FIELDS, REMOVED_FIELDS, Field
from wiremesh.model.inventory import FORMAT_VERSION, Inventory, MeshSettings, Node, RemovedNode


def _as_toml(value: object) -> Any:
    dumped = f.dump_value(value)
    if isinstance(dumped, list):
        array = tomlkit.array()
        array.extend(dumped)
        return array
    return dumped


def _sync_table(
    table: Table, spec: tuple[Field, ...], values: dict[str, Any], defaults: dict[str, Any]
) -> None:
    """Make ``table`` hold ``values``, touching only keys whose value changed."""
    for field in spec:
        key = field.key
        new = values.get(key)
        if new is None or new == ():
            if key in table:
                del table[key]
            continue
        wanted = f.dump_value(new)
        if key in table:
            current = table[key]
            current = current.unwrap() if hasattr(current, "unwrap") else current
            if current == wanted:
                continue
        elif key in defaults and defaults[key] == new:
            continue  # an absent key already means the default
        table[key] = _as_toml(new)


def _values(obj: MeshSettings | Node | RemovedNode) -> dict[str, Any]:
    return {fl.name: getattr(obj, fl.name) for fl in fields(obj)}


def _mesh_defaults() -> dict[str, Any]:
    return {fl.name: fl.default for fl in fields(MeshSettings) if fl.name != "cidr"}


def update_document(document: TOMLDocument, inventory: Inventory) -> TOMLDocument:
    """Edit ``document`` in place so that it describes ``inventory``; returns it.

    Keys whose value did not change are left exactly as written (comments, quoting, order); removed
    nodes are deleted, new ones appended at the end.
    """
    if "version" not in document:
        document["version"] = FORMAT_VERSION
    elif document["version"] != FORMAT_VERSION:
        document["version"] = FORMAT_VERSION  # after a migration
    if "mesh" not in document:
        document["mesh"] = tomlkit.table()
    mesh_table = document["mesh"]
    assert isinstance(mesh_table, Table)
    _sync_table(mesh_table, MESH_FIELDS, _values(inventory.mesh), _mesh_defaults())

    _sync_aot(document, "node", NODE_FIELDS, inventory.nodes)
    _sync_aot(document, "removed", REMOVED_FIELDS, inventory.removed)
    return document


def _sync_aot(
    document: TOMLDocument,
    key: str,
    spec: tuple[Field, ...],
    records: tuple[Node, ...] | tuple[RemovedNode, ...],
) -> None:
    """Make the array of tables ``key`` hold ``records`` (matched by name), editing in place."""
    if key not in document:
        if not records:
            return
        document.append(key, tomlkit.aot())
    aot = document[key]
    assert isinstance(aot, AoT)
    wanted: dict[str, Node | RemovedNode] = {r.name: r for r in records}
    for index in reversed(range(len(aot.body))):
        if aot.body[index].get("name") not in wanted:
            del aot[index]
    present: set[str] = set()
    for table in aot.body:
        record = wanted[str(table.get("name"))]
        _sync_table(table, spec, _values(record), {})
        present.add(record.name)
    for record in records:
        if record.name not in present:
            table = tomlkit.table()
            table.trivia.indent = "\n"  # a blank line before each new table
            _sync_table(table, spec, _values(record), {})
            aot.append(table)
    if not aot.body:
        del document[key]


def new_document(inventory: Inventory, comment: str | None = None) -> TOMLDocument:
    """A fresh document for ``inventory``, with every mesh setting written out."""
    document = tomlkit.document()
    document.add(tomlkit.comment(comment or "wiremesh inventory: the desired state of the mesh."))
    document.add(tomlkit.comment("Edit by hand or with 'wiremesh node ...'; keys: see README.md."))
    document.add("version", FORMAT_VERSION)
    document.add(tomlkit.nl())
    mesh = tomlkit.table()
    for field in MESH_FIELDS:
        value = getattr(inventory.mesh, field.key)
        if value is not None:
            mesh[field.key] = _as_toml(value)
    document["mesh"] = mesh
    return update_document(document, inventory)


def update_text(text: str, inventory: Inventory) -> str:
    """``text`` (a valid inventory) edited to describe ``inventory``, keeping everything else."""
    return tomlkit.dumps(update_document(tomlkit.parse(text), inventory))


def new_text(inventory: Inventory, comment: str | None = None) -> str:
    """The text of a new inventory file."""
    return tomlkit.dumps(new_document(inventory, comment))
