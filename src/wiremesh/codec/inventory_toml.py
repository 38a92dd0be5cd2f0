"""The inventory file format (``wiremesh.toml``): versioned TOML, read and validated here.

Loading gives the validated :class:`Inventory`. Saving never regenerates the file:
:mod:`wiremesh.codec.inventory_write` changes only the keys whose values changed, so the user's
comments and layout survive every edit by the tool.

Format version 1::

    version = 1
    [mesh]
    name = "prod"          # cidr is required; the rest have defaults
    cidr = "10.0.0.0/24"
    [[node]]
    name = "web-1"
    address = "10.0.0.1"
    endpoint = "203.0.113.7:51820"
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wiremesh.codec import fields as f
from wiremesh.codec.policy_toml import parse_groups, parse_policy
from wiremesh.errors import ValidationError, quote, wrong_type
from wiremesh.model.addressing import allocate
from wiremesh.model.endpoint import digits
from wiremesh.model.inventory import (
    FORMAT_VERSION,
    InvalidInventory,
    Inventory,
    MeshSettings,
    MetricsSettings,
    Node,
    RemovedNode,
    did_you_mean,
    validate,
)


@dataclass(frozen=True)
class Field:
    """One key of a table: how to parse it, and whether it must be present."""

    key: str
    parse: Callable[[object, str], Any]
    required: bool = False


MESH_FIELDS: tuple[Field, ...] = (
    Field("name", f.parse_label),
    Field("interface", f.parse_interface),
    Field("cidr", f.parse_cidr4, required=True),
    Field("cidr6", f.parse_cidr6),
    Field("port", f.parse_port_value),
    Field("mtu", f.parse_mtu),
    Field("keepalive", f.parse_seconds),
    Field("ssh_config", f.parse_text),
    Field("relay", f.parse_node_name),
)

NODE_FIELDS: tuple[Field, ...] = (
    Field("name", f.parse_node_name, required=True),
    Field("address", f.parse_ipv4),
    Field("address6", f.parse_ipv6),
    Field("endpoint", f.parse_endpoint),
    Field("private_endpoint", f.parse_endpoint),
    Field("site", f.parse_label),
    Field("ssh", f.parse_ssh),
    Field("listen_port", f.parse_port_value),
    Field("allowed_ips", f.parse_subnets),
    Field("public_key", f.parse_public_key),
    Field("relay", f.parse_node_name),
    Field("k3s_role", f.parse_k3s_role),
    Field("groups", parse_groups),
)

REMOVED_FIELDS: tuple[Field, ...] = (
    Field("name", f.parse_node_name, required=True),
    Field("ssh", f.parse_ssh),
    Field("endpoint", f.parse_endpoint),
    Field("public_key", f.parse_public_key),
)

METRICS_FIELDS: tuple[Field, ...] = (
    Field("textfile", f.parse_bool),
    Field("interval", f.parse_metrics_interval),
    Field("directory", f.parse_host_directory),
)

TOP_KEYS = ("version", "mesh", "node", "removed", "policy", "metrics")

# Migrations from version N to N+1, applied in order on load (none yet: version 1 is the first).
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _unknown_keys(
    table: dict[str, Any], allowed: tuple[str, ...], where: str
) -> list[ValidationError]:
    out = []
    for key in table:
        if key not in allowed:
            out.append(
                ValidationError(
                    f"{where}: unknown key {quote(key)}{did_you_mean(key, list(allowed))}",
                    f"known keys are: {', '.join(allowed)}",
                )
            )
    return out


def _parse_table(
    table: dict[str, Any], spec: tuple[Field, ...], where: str, problems: list[ValidationError]
) -> dict[str, Any]:
    problems += _unknown_keys(table, tuple(s.key for s in spec), where)
    values: dict[str, Any] = {}
    for field in spec:
        if field.key not in table:
            if field.required:
                problems.append(
                    ValidationError(f"{where}: '{field.key}' is missing", f"add {field.key} = ...")
                )
            continue
        try:
            values[field.key] = field.parse(table[field.key], f"{where}: {field.key}")
        except ValidationError as exc:
            problems.append(exc)
    return values


def _version(data: dict[str, Any], source: str) -> dict[str, Any]:
    version = data.get("version")
    if version is None:
        raise ValidationError(
            f"{source}: no format 'version'",
            f"add 'version = {FORMAT_VERSION}' at the top of the file",
        )
    if isinstance(version, bool) or not isinstance(version, int):
        fix = version.strip() if isinstance(version, str) and digits(version.strip()) else None
        raise wrong_type(f"{source}: version", version, "a number", fix or str(FORMAT_VERSION))
    if version > FORMAT_VERSION:
        raise ValidationError(
            f"{source}: unsupported format version {version}; this wiremesh reads version "
            f"{FORMAT_VERSION}",
            "upgrade wiremesh to read this file",
        )
    while version < FORMAT_VERSION:
        migrate = MIGRATIONS.get(version)
        if migrate is None:
            raise ValidationError(
                f"{source}: unsupported format version {version}",
                f"this wiremesh reads versions {min(MIGRATIONS, default=FORMAT_VERSION)} to "
                f"{FORMAT_VERSION}",
            )
        data = migrate(data)
        version += 1
    return data


def _tables(data: dict[str, Any], key: str, source: str) -> list[dict[str, Any]]:
    items = data.get(key, [])
    if isinstance(items, dict) or not isinstance(items, list):
        raise ValidationError(
            f"{source}: '{key}' must be an array of tables",
            f"write each entry as a [[{key}]] table (double brackets)",
        )
    for item in items:
        if not isinstance(item, dict):
            raise ValidationError(f"{source}: each '{key}' entry must be a table ([[{key}]])")
    return items


@dataclass(frozen=True)
class Loaded:
    """A validated inventory, and whether loading allocated addresses the file does not hold yet."""

    inventory: Inventory
    allocated: bool


def parse_data(data: dict[str, Any], source: str) -> Loaded:
    """Validate parsed TOML data into an :class:`Inventory`.

    Nodes without ``address`` (or ``address6`` when the mesh has ``cidr6``) get the lowest free one,
    in file order; :func:`update_text` then writes it into the file.
    """
    data = _version(data, source)
    problems: list[ValidationError] = _unknown_keys(data, TOP_KEYS, "top level")
    mesh_table = data.get("mesh")
    if not isinstance(mesh_table, dict):
        problems.append(
            ValidationError("no [mesh] table", 'add [mesh] with at least cidr = "10.0.0.0/24"')
        )
        raise InvalidInventory(problems, source)
    mesh_values = _parse_table(mesh_table, MESH_FIELDS, "[mesh]", problems)
    node_values = []
    for index, table in enumerate(_tables(data, "node", source)):
        name = table.get("name")
        where = f"node {quote(name)}" if isinstance(name, str) else f"node #{index + 1}"
        node_values.append(_parse_table(table, NODE_FIELDS, where, problems))
    removed = []
    for index, table in enumerate(_tables(data, "removed", source)):
        name = table.get("name")
        where = f"removed node {quote(name)}" if isinstance(name, str) else f"removed #{index + 1}"
        values = _parse_table(table, REMOVED_FIELDS, where, problems)
        if "name" in values:  # else its problem is recorded: the entry cannot be built
            removed.append(RemovedNode(**values))
    policy = parse_policy(data.get("policy"), problems)
    metrics_table = data.get("metrics", {})
    if not isinstance(metrics_table, dict):
        problems.append(
            ValidationError(
                "'metrics' must be a table", "write it as [metrics] with its keys below"
            )
        )
        metrics_table = {}
    metrics_values = _parse_table(metrics_table, METRICS_FIELDS, "[metrics]", problems)
    if problems or "cidr" not in mesh_values:
        raise InvalidInventory(problems, source)
    mesh = MeshSettings(**mesh_values)
    before = sum(len(v) for v in node_values)
    nodes = _with_addresses(mesh, node_values)
    allocated = sum(len(v) for v in node_values) != before
    inventory = Inventory(
        mesh, tuple(nodes), tuple(removed), policy, metrics=MetricsSettings(**metrics_values)
    )
    return Loaded(validate(inventory, source), allocated)


def _with_addresses(mesh: MeshSettings, node_values: list[dict[str, Any]]) -> list[Node]:
    used4 = [v["address"] for v in node_values if "address" in v]
    used6 = [v["address6"] for v in node_values if "address6" in v]
    nodes = []
    for values in node_values:
        if "address" not in values:
            values["address"] = allocate(mesh.cidr, used4)
            used4.append(values["address"])
        if mesh.cidr6 is not None and "address6" not in values:
            values["address6"] = allocate(mesh.cidr6, used6, "mesh IPv6")
            used6.append(values["address6"])
        nodes.append(Node(**values))
    return nodes


def loads(text: str, source: str = "wiremesh.toml") -> Loaded:
    """Parse and validate inventory text; a TOML syntax error names the line and column.

    Reading uses the standard library's tomllib (several times faster than tomlkit on big meshes);
    tomlkit is used only to write changes back into the user's text.
    """
    try:
        data = tomllib.loads(text)
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ValidationError(
            f"{source}: values are nested too deeply to read",
            "an inventory nests at most a list of strings; fix the file by hand",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"^(.*) \(at line (\d+), column (\d+)\)$", str(exc))
        where = f" at line {found[2]}, column {found[3]}: {found[1]}" if found else f": {exc}"
        raise ValidationError(
            f"{source}: TOML syntax error{where}",
            "fix the file by hand (an editor with TOML support helps); nothing was changed",
        ) from None
    return parse_data(data, source)
