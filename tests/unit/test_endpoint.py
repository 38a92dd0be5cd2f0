"""Endpoints and SSH targets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wiremesh.errors import ValidationError
from wiremesh.model.endpoint import Endpoint, SshTarget


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("203.0.113.7", IPv4Address("203.0.113.7"), None),
        ("203.0.113.7:51820", IPv4Address("203.0.113.7"), 51820),
        ("[2001:db8::7]", IPv6Address("2001:db8::7"), None),
        ("[2001:db8::7]:1", IPv6Address("2001:db8::7"), 1),
        ("vpn.example.com", "vpn.example.com", None),
        ("VPN.Example.com:65535", "vpn.example.com", 65535),
        ("lab1", "lab1", None),
    ],
)
def test_endpoint_forms(text: str, host: object, port: int | None) -> None:
    endpoint = Endpoint.parse(text)
    assert endpoint.host == host
    assert endpoint.port == port
    assert Endpoint.parse(str(endpoint)) == endpoint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2001:db8::7", "must be in brackets"),
        ("203.0.113.7:0", "not a valid port"),
        ("203.0.113.7:70000", "not a valid port"),
        ("203.0.113.7:http", "is not a number"),
        ("300.1.2.3", "not a valid IPv4"),
        ("[2001:db8::7", "without ']'"),
        ("[zz::1]:5", "not a valid IPv6"),
        ("bad_host!", "not a valid host"),
        ("", "non-empty"),
    ],
)
def test_bad_endpoints(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Endpoint.parse(text)


def test_ssh_targets() -> None:
    target = SshTarget.parse("admin@web-1:2222")
    assert (target.user, target.host, target.port) == ("admin", "web-1", 2222)
    assert str(target) == "admin@web-1:2222"
    assert SshTarget.parse("[2001:db8::1]").host == IPv6Address("2001:db8::1")
    with pytest.raises(ValidationError, match="not a valid user"):
        SshTarget.parse("Bad User@host")


@given(
    st.ip_addresses(),
    st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
)
def test_endpoint_round_trip(address: IPv4Address | IPv6Address, port: int | None) -> None:
    endpoint = Endpoint(address, port)
    assert Endpoint.parse(str(endpoint)) == endpoint
