"""Address allocation: never a duplicate, always inside the network, lowest free first."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wiremesh.errors import ValidationError
from wiremesh.model.addressing import allocate, host_capacity, is_host_address


@given(
    prefix=st.integers(min_value=24, max_value=30),
    taken=st.sets(st.integers(min_value=0, max_value=255)),
    rounds=st.integers(min_value=1, max_value=20),
)
def test_allocation_is_unique_and_inside(prefix: int, taken: set[int], rounds: int) -> None:
    network = IPv4Network(f"10.9.8.0/{prefix}")
    candidates = [IPv4Address(int(network.network_address) + t) for t in taken]
    used: list[IPv4Address | IPv6Address] = [a for a in candidates if is_host_address(network, a)]
    for _ in range(rounds):
        if len(used) >= host_capacity(network):
            with pytest.raises(ValidationError, match="is full"):
                allocate(network, used)
            return
        new = allocate(network, used)
        assert is_host_address(network, new)
        assert new not in used
        # lowest free: every host address below it is taken
        below = range(int(network.network_address) + 1, int(new))
        assert all(IPv4Address(b) in used for b in below)
        used.append(new)


def test_first_addresses_and_exhaustion() -> None:
    network = IPv4Network("10.0.0.0/30")
    first = allocate(network, [])
    second = allocate(network, [first])
    assert (str(first), str(second)) == ("10.0.0.1", "10.0.0.2")
    with pytest.raises(ValidationError, match=r"10\.0\.0\.0/30 is full: all 2 addresses"):
        allocate(network, [first, second])


def test_ipv6_allocation_skips_subnet_router_anycast() -> None:
    network = IPv6Network("fd00:77::/64")
    assert str(allocate(network, [])) == "fd00:77::1"
