"""The mesh's metrics (issue 13): the WireGuard exporter's families and labels for existing
dashboards, link state as a state set, mesh totals, unreachable hosts exported (not dropped), and
text that ``promtool check metrics`` accepts, also with hostile error texts."""

from __future__ import annotations

from tests.unit import mesh_fixture as mf
from tests.unit.test_prometheus import HOSTILE, promtool
from wiremesh.codec.mesh_metrics import (
    FAMILIES,
    LINK_STATES,
    TEXTFILE_FAMILIES,
    HostRead,
    MetricsInput,
    mesh_families,
)
from wiremesh.codec.prometheus import parse, render
from wiremesh.model.health import link_states
from wiremesh.ops.status import mesh_status

Samples = dict[str, list[tuple[dict[str, str], float]]]


def metrics(error: str = "cannot connect: timed out", **reads: HostRead) -> tuple[str, Samples]:
    health = mesh_status(mf.inventory(), mf.observed(error))
    text = render(
        mesh_families(MetricsInput(health, "m", "wg0", reads, read_duration_s=0.123456789))
    )
    return text, parse(text)


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [v for have, v in samples[name] if all(have.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def test_the_output_passes_promtool_and_has_every_family_once_in_order() -> None:
    text, _ = metrics()
    result = promtool(text)
    assert result.returncode == 0, result.stdout + result.stderr
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert types == list(FAMILIES)
    assert set(TEXTFILE_FAMILIES) <= set(FAMILIES)


def test_wireguard_exporter_families_keep_its_names_types_and_labels() -> None:
    # MindFlavor/prometheus_wireguard_exporter src/metrics.rs, word for word
    assert FAMILIES["wireguard_sent_bytes_total"] == ("counter", "Bytes sent to the peer")
    assert FAMILIES["wireguard_received_bytes_total"] == ("counter", "Bytes received from the peer")
    assert FAMILIES["wireguard_latest_handshake_seconds"] == (
        "gauge",
        "Seconds from the last handshake",
    )
    _, samples = metrics()
    sent = samples["wireguard_sent_bytes_total"]
    # a has 3 peer entries, b 3, c 3; d could not be read
    assert len(sent) == 9
    labels = {"interface", "public_key", "allowed_ips", "friendly_name", "node"}
    assert all(set(have) == labels for have, _ in sent)
    b_from_a = {
        "interface": "wg0",
        "public_key": str(mf.KEYS[1]),
        "allowed_ips": "10.0.0.2/32,10.0.0.3/32",
        "friendly_name": "b",
        "node": "a",
    }
    assert (b_from_a, 800.0) in sent
    assert (b_from_a, 900.0) in samples["wireguard_received_bytes_total"]
    assert (b_from_a, float(mf.NOW - 3)) in samples["wireguard_latest_handshake_seconds"]
    # a never shook hands with c: 0, as in that exporter; c's probe entry routes nothing
    assert value(samples, "wireguard_latest_handshake_seconds", node="a", friendly_name="c") == 0
    assert value(samples, "wireguard_sent_bytes_total", node="a", friendly_name="c") == 0
    assert ("allowed_ips", "") in next(
        tuple(h.items()) for h, _ in sent if h["node"] == "a" and h["friendly_name"] == "c"
    )


def test_link_state_is_a_state_set_matching_status() -> None:
    health = mesh_status(mf.inventory(), mf.observed())
    _, samples = metrics()
    states = link_states(health)
    assert len(samples["wiremesh_link_state"]) == 12 * len(LINK_STATES)
    for (node, peer), state in states.items():
        for s in LINK_STATES:
            want = 1.0 if s == state else 0.0
            assert value(samples, "wiremesh_link_state", node=node, peer=peer, state=s) == want
    assert value(samples, "wiremesh_link_state", node="a", peer="c", state="relayed") == 1
    assert value(samples, "wiremesh_link_info", node="a", peer="c")  # via b
    info = {h["peer"]: h for h, _ in samples["wiremesh_link_info"] if h["node"] == "a"}
    assert info["c"]["via"] == "b" and info["b"]["via"] == ""
    assert info["b"]["endpoint"] == "198.51.100.12:40000"
    assert info["b"]["endpoint_configured"] == "198.51.100.12:51820"
    assert value(samples, "wiremesh_link_endpoint_mismatch", node="a", peer="b") == 1
    assert value(samples, "wiremesh_link_endpoint_mismatch", node="b", peer="a") == 0
    assert value(samples, "wiremesh_link_handshake_age_seconds", node="a", peer="b") == 3
    ages = {(h["node"], h["peer"]) for h, _ in samples["wiremesh_link_handshake_age_seconds"]}
    assert ("a", "c") not in ages  # never: absent, not a made-up number


def test_mesh_totals_and_an_unreachable_host() -> None:
    _, samples = metrics()
    assert value(samples, "wiremesh_links_expected") == 12
    assert value(samples, "wiremesh_links", state="down") == 3  # d's three links
    assert value(samples, "wiremesh_links", state="relayed") == 2
    assert value(samples, "wiremesh_links", state="idle") == 3
    assert value(samples, "wiremesh_links", state="direct") == 4
    assert sum(v for _, v in samples["wiremesh_links"]) == 12
    assert value(samples, "wiremesh_links_up") == 6
    assert value(samples, "wiremesh_healthy") == 0
    assert value(samples, "wiremesh_nodes") == 4
    assert value(samples, "wiremesh_read_duration_seconds") == 0.123457
    # d is exported as unreachable, with why, and its links as down: not dropped
    assert value(samples, "wiremesh_host_reachable", node="d") == 0
    assert value(samples, "wiremesh_host_reachable", node="a") == 1
    (error,) = [h["error"] for h, _ in samples["wiremesh_host_error_info"]]
    assert error == "cannot connect: timed out"
    for peer in ("a", "b", "c"):
        assert value(samples, "wiremesh_link_state", node="d", peer=peer, state="down") == 1
    # its interface is unknown: no interface series rather than a false "down"
    assert all(h["node"] != "d" for h, _ in samples["wiremesh_interface_up"])
    assert value(samples, "wiremesh_interface_up", node="a") == 1
    assert value(samples, "wiremesh_interface_mtu_bytes", node="a") == 1420
    assert value(samples, "wiremesh_interface_listen_port", node="a") == 51820
    assert value(samples, "wiremesh_interface_backend", node="b", backend="kernel") == 1
    assert value(samples, "wiremesh_interface_backend", node="b", backend="wireguard-go") == 0
    assert value(samples, "wiremesh_interface_backend", node="a", backend="wireguard-go") == 1
    (info,) = samples["wiremesh_info"]
    assert info[0]["mesh"] == "m" and info[0]["interface"] == "wg0"


def test_read_bookkeeping_is_exported() -> None:
    _, samples = metrics(
        a=HostRead(0.05, 0.0),
        b=HostRead(0.07, 12.5, error="no answer within 10 s"),  # old data still served
    )
    assert value(samples, "wiremesh_host_read_duration_seconds", node="a") == 0.05
    assert value(samples, "wiremesh_host_data_age_seconds", node="b") == 12.5
    assert value(samples, "wiremesh_host_reachable", node="b") == 0
    errors = {h["node"]: h["error"] for h, _ in samples["wiremesh_host_error_info"]}
    assert errors == {"b": "no answer within 10 s", "d": "cannot connect: timed out"}


def test_hostile_error_texts_are_escaped() -> None:
    for hostile in HOSTILE:
        text, samples = metrics(hostile or "x")
        result = promtool(text)
        assert result.returncode == 0, (hostile, result.stdout + result.stderr)
        (error,) = [h["error"] for h, _ in samples["wiremesh_host_error_info"]]
        assert error == (hostile or "x")
