"""The in-place key insertion used for big inventories, against tomlkit's full round trip."""

from __future__ import annotations

from dataclasses import replace

from tests.helpers import keys
from wiremesh.codec.inventory_fastpath import add_keys
from wiremesh.codec.inventory_toml import loads
from wiremesh.codec.inventory_write import update_text

TEXT = """\
# big mesh
version = 1

[mesh]
name = "big"   # the name
cidr = "10.0.0.0/24"

[[node]]
name = "a"            # first
address = "10.0.0.1"
allowed_ips = [
  "172.16.0.0/24",    # a subnet
]
# a comment that belongs to b

[[node]]
name = 'b'
address = "10.0.0.2"

[[node]]
name = "c"
address = "10.0.0.3"
endpoint = "203.0.113.3"
"""


def test_adding_keys_keeps_every_line_and_matches_tomlkit() -> None:
    old = loads(TEXT).inventory
    k = keys(3)
    new = replace(old, nodes=tuple(n for n in old.nodes if n.name != "b"))
    assert add_keys(TEXT, old, new) is None  # a node disappeared: not an addition
    new = replace(
        old, nodes=tuple(replace(n, public_key=k[i].public_key()) for i, n in enumerate(old.nodes))
    )
    fast = add_keys(TEXT, old, new)
    # node b is written with single quotes: the fast path cannot place its key and gives up
    assert fast is None
    text = TEXT.replace("name = 'b'", 'name = "b"')
    old = loads(text).inventory
    new = replace(
        old, nodes=tuple(replace(n, public_key=k[i].public_key()) for i, n in enumerate(old.nodes))
    )
    fast = add_keys(text, old, new)
    assert fast is not None
    for line in text.splitlines():
        assert line in fast.splitlines()
    assert loads(fast).inventory == new == loads(update_text(text, new)).inventory
    assert fast.index(f'public_key = "{k[0].public_key()}"') < fast.index(
        "# a comment that belongs to b"
    )


def test_changes_that_are_not_additions_go_through_tomlkit() -> None:
    old = loads(TEXT.replace("name = 'b'", 'name = "b"')).inventory
    moved = replace(
        old, nodes=(replace(old.nodes[0], address=old.nodes[0].address + 9), *old.nodes[1:])
    )
    assert add_keys(TEXT, old, moved) is None
    other_mesh = replace(old, mesh=replace(old.mesh, keepalive=5))
    assert add_keys(TEXT, old, other_mesh) is None
