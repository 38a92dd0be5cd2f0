"""Issue 10, item 1: the render-time guards refuse a value that would break out of its line, even
from an inventory built in code (validation at the edge is tested in test_injection.py)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from ipaddress import IPv6Address, IPv6Interface
from pathlib import Path

import pytest
import yaml

from tests.helpers import simple_inventory
from wiremesh.codec import sysctl
from wiremesh.codec.wgquick import KeyFile, render
from wiremesh.model.device import WantedDevice
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.k3s import render_yaml, yaml_string
from wiremesh.model.names import NodeName
from wiremesh.model.safe import UnsafeValue
from wiremesh.model.topology import hosts_block, wanted_mesh
from wiremesh.remote import scripts


def _device() -> WantedDevice:
    inventory, _ = simple_inventory(2)
    return wanted_mesh(inventory)["n0"]


def test_wg_quick_render_refuses_a_scoped_address_built_in_code() -> None:
    device = _device()
    iface = replace(device.interface, addresses=(IPv6Interface("fd00::1%x/64"),))
    with pytest.raises(UnsafeValue, match="zone id"):
        render(replace(device, interface=iface), KeyFile("/k"))


def test_wg_quick_render_refuses_a_newline_in_a_peer_name_or_endpoint() -> None:
    device = _device()
    bad_name = replace(device.peers[0], name=NodeName("n1\nPostUp = id"))
    with pytest.raises(UnsafeValue):
        render(replace(device, peers=(bad_name,)), KeyFile("/k"))
    bad_host = replace(device.peers[0], endpoint=Endpoint("evil\nPostUp=id", 1))
    with pytest.raises(UnsafeValue):
        render(replace(device, peers=(bad_host,)), KeyFile("/k"))
    scoped = replace(device.peers[0], endpoint=Endpoint(IPv6Address("fe80::1%a"), 1))
    with pytest.raises(UnsafeValue):
        render(replace(device, peers=(scoped,)), KeyFile("/k"))
    with pytest.raises(UnsafeValue):
        render(device, KeyFile("/k"), header="node x\nPreUp = id")


def test_hosts_block_refuses_a_scoped_address_or_a_blank_in_a_name() -> None:
    inventory, _ = simple_inventory(2)
    node = replace(inventory.nodes[0], address6=IPv6Address("fd00::1%x"))
    with pytest.raises(UnsafeValue):
        hosts_block(replace(inventory, nodes=(node,)))
    mesh = replace(inventory.mesh, name="t # x")
    with pytest.raises(UnsafeValue):
        hosts_block(replace(inventory, mesh=mesh))
    assert hosts_block(inventory) == ("10.0.0.1 n0.mesh", "10.0.0.2 n1.mesh")


def test_k3s_yaml_refuses_line_breaks_and_odd_keys() -> None:
    for text in ("a\nb: c", "a\u2028b", "a\x85b", "a\rb"):
        with pytest.raises(UnsafeValue):
            yaml_string(text)
    with pytest.raises(UnsafeValue):
        render_yaml((("node-name\nevil", "x"),))
    assert yaml.safe_load(render_yaml((("token-file", "/a#b: c"),))) == {"token-file": "/a#b: c"}


def test_sysctl_lines_are_guarded() -> None:
    assert sysctl.render_lines(sysctl.forwarding(True, True)) == (
        "net.ipv4.ip_forward = 1",
        "net.ipv6.conf.all.forwarding = 1",
    )
    with pytest.raises(UnsafeValue):
        sysctl.render_lines((("net.ipv4.ip_forward", "1\nkernel.x = 1"),))
    with pytest.raises(UnsafeValue):
        sysctl.render_lines((("net.ipv4.ip_forward\nkernel.x", "1"),))


def test_the_forwarding_script_writes_exactly_the_codec_s_file(tmp_path: Path) -> None:
    """Run the host script's file-writing part (sysctl itself stubbed) against a temp path: the
    file it leaves is the codec's header, the host's own lines, then the codec's settings."""
    target = tmp_path / "60-wiremesh.conf"
    target.write_text("# old\nkernel.foo = 2\nnet.ipv4.ip_forward = 0\n")
    script = scripts.enable_forwarding(True, True).replace(scripts.SYSCTL_FILE, str(target))
    script = script.replace("mkdir -p /etc/sysctl.d", f"mkdir -p {tmp_path}")
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "sysctl").write_text("#!/bin/sh\nexit 0\n")
    (stub / "sysctl").chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", script], check=True, env=env)
    text = target.read_text()
    assert text.split("\n")[0] == sysctl.HEADER
    assert sysctl.parse(text) == (("kernel.foo", "2"), *sysctl.forwarding(True, True))
