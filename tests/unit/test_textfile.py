"""The host-side textfile collector (issue 13): the real script run with ``sh`` against stand-ins for
``wg``, ``ip`` and ``date`` (the rest is the machine's own awk, grep, mv): what it writes is what the
central ``wiremesh metrics`` says of that host, it passes ``promtool check metrics``, no secret gets
through, a reader never sees a half-written file; and the systemd units pass ``systemd-analyze
verify``. On a real lab host: tests/integration/test_metrics.py."""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit import mesh_fixture as mf
from tests.unit.test_prometheus import promtool
from wiremesh.codec.mesh_metrics import TEXTFILE_FAMILIES, MetricsInput, mesh_families
from wiremesh.codec.prometheus import parse, render
from wiremesh.model.device import ObservedPeer, PeerStats
from wiremesh.model.host import FILE_MARKER, ObservedHost
from wiremesh.ops.status import mesh_status
from wiremesh.ops.textfile import retired_files, textfile_files
from wiremesh.remote.textfile import (
    Target,
    TextfilePaths,
    activate,
    collector_script,
    deactivate,
    service_unit,
    timer_unit,
    unit_name,
)

SECRET = "c2VjcmV0LXByaXZhdGUta2V5LW11c3Qtbm90LWxlYWsh"
PSK = "cHJlc2hhcmVkLWtleS1tdXN0LW5vdC1sZWFrLWVpdGhlcg=="


def dump_text(seen: ObservedHost, psk: bool = False) -> str:
    """``wg show wg0 dump`` of ``seen`` as wg prints it: the private key first, then the peers."""
    device = seen.device
    assert device is not None
    lines = [f"{SECRET}\t{device.public_key}\t{device.listen_port}\toff"]
    for p in device.peers:
        lines.append(
            "\t".join(
                [
                    str(p.public_key),
                    PSK if psk else "(none)",
                    str(p.endpoint) if p.endpoint else "(none)",
                    ",".join(str(n) for n in p.allowed_ips) or "(none)",
                    str(p.stats.latest_handshake),
                    str(p.stats.rx_bytes),
                    str(p.stats.tx_bytes),
                    str(p.persistent_keepalive or "off"),
                ]
            )
        )
    return "\n".join(lines) + "\n"


def config_text(name: str, seen: ObservedHost) -> str:
    """The host's wg0.conf as apply leaves it (with the private key the host inserted)."""
    assert seen.device is not None and seen.config is not None
    names = {k: n for n, k in zip(mf.NAMES, mf.KEYS, strict=True)}
    out = [
        f"{FILE_MARKER}: node {name} of mesh m",
        "[Interface]",
        f"PrivateKey = {SECRET}",
        "Address = 10.0.0.1/24",
    ]
    for p in seen.device.peers:
        out += ["", f"# {names[p.public_key]}", "[Peer]", f"PublicKey = {p.public_key}"]
        endpoint = seen.config.endpoints.get(p.public_key)
        if endpoint is not None:
            out.append(f"Endpoint = {endpoint}")
        out.append(f"PresharedKey = {PSK}")
    return "\n".join(out) + "\n"


class Host:
    """A directory that stands in for a host: stand-ins for wg, ip and date in bin/, the config."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.out = root / "textfile"
        self.conf = root / "wg0.conf"

    def stage(
        self,
        dump: str | None,
        config: str,
        link: str | None = "<POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420",
        now: int = mf.NOW,
    ) -> None:
        """What the stand-ins answer: no ``dump`` means no interface (wg fails)."""
        (self.root / "dump").write_text(dump or "")
        self.conf.write_text(config)
        port = "51820" if dump is not None else ""
        wg = f"""#!/bin/sh
[ -n "{port}" ] || {{ echo "Unable to access interface: No such device" >&2; exit 1; }}
case "$3" in
  listen-port) echo {port} ;;
  dump) cat {self.root}/dump ;;
  *) exit 1 ;;
esac
"""
        ip = f"#!/bin/sh\necho '7: wg0: {link} qdisc noqueue state UNKNOWN'\n" if link else ""
        for name, text in (("wg", wg), ("ip", ip or "#!/bin/sh\nexit 1\n")):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        (self.bin / "date").write_text(f"#!/bin/sh\necho {now}\n")
        (self.bin / "date").chmod(0o755)

    def script(self, node: str = "a", targets: list[Target] | None = None) -> str:
        chosen = (
            targets
            if targets is not None
            else [Target(t.name, t.address) for t in mf.inventory() if t.name != node]
        )
        return collector_script(node, "m", "wg0", chosen, str(self.out), str(self.conf))

    def run(self, node: str = "a", targets: list[Target] | None = None) -> str:
        """Run the script; return what it wrote."""
        path = self.root / "metrics.sh"
        path.write_text(self.script(node, targets))
        env = {"PATH": f"{self.bin}:{os.environ['PATH']}", "LC_ALL": "C"}
        result = subprocess.run(
            ["sh", str(path)], capture_output=True, text=True, env=env, timeout=30, check=False
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        return (self.out / "wiremesh-wg0.prom").read_text()


def _series(text: str, node: str) -> dict[str, set[tuple[tuple[tuple[str, str], ...], float]]]:
    out: dict[str, set[tuple[tuple[tuple[str, str], ...], float]]] = {}
    for name, samples in parse(text).items():
        if name in TEXTFILE_FAMILIES:
            for labels, v in samples:
                if labels.get("node", node) == node:
                    out.setdefault(name, set()).add((tuple(sorted(labels.items())), v))
    return out


@pytest.mark.parametrize("name", ["a", "b", "c"])
def test_the_textfile_says_what_the_central_view_says_of_that_host(
    tmp_path: Path, name: str
) -> None:
    observed = mf.observed()
    seen = observed[name]
    assert isinstance(seen, ObservedHost)
    # the script looks at this machine's /sys/module/wireguard: so must the central view
    seen = observed[name] = replace(seen, kernel_module=Path("/sys/module/wireguard").is_dir())
    host = Host(tmp_path)
    host.stage(dump_text(seen), config_text(name, seen))
    text = host.run(name)
    result = promtool(text)
    assert result.returncode == 0, result.stdout + result.stderr
    central = render(mesh_families(MetricsInput(mesh_status(mf.inventory(), observed), "m", "wg0")))
    mine, theirs = _series(text, name), _series(central, name)
    for family in TEXTFILE_FAMILIES:
        assert mine.get(family, set()) == theirs.get(family, set()), family
    # the families come in the fixed order, each with HELP and TYPE, ending with a line feed
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert types == list(TEXTFILE_FAMILIES) and text.endswith("\n")


def _one_link(tmp_path: Path, entry: ObservedPeer, now: int = mf.NOW) -> dict[str, float]:
    """The state set of a→b when a's only peer entry is ``entry``."""
    seen = mf.host("a", [entry])
    host = Host(tmp_path)
    host.stage(dump_text(seen), config_text("a", seen), now=now)
    samples = parse(host.run("a", [Target("b", mf.inventory().node("b").address)]))
    return {h["state"]: v for h, v in samples["wiremesh_link_state"] if h["peer"] == "b"}


def test_quiet_links_are_idle_or_down_as_status_says(tmp_path: Path) -> None:
    fresh = mf.peer("b", 100)
    assert _one_link(tmp_path / "1", fresh)["direct"] == 1
    stale = mf.peer("b", 181)
    assert _one_link(tmp_path / "2", stale)["idle"] == 1
    keepalive = replace(mf.peer("b", 300), persistent_keepalive=25)
    assert _one_link(tmp_path / "3", keepalive)["down"] == 1
    unanswered = replace(mf.peer("b"), stats=PeerStats(0, 0, 1480))
    assert _one_link(tmp_path / "4", unanswered)["down"] == 1
    never = mf.peer("b")
    assert _one_link(tmp_path / "5", never)["idle"] == 1
    unrouted = mf.peer("b", 1, ())
    assert _one_link(tmp_path / "6", unrouted)["down"] == 1


def test_no_interface_or_a_down_one_makes_every_link_down(tmp_path: Path) -> None:
    seen = mf.observed()["a"]
    assert isinstance(seen, ObservedHost)
    host = Host(tmp_path / "gone")
    host.stage(None, config_text("a", seen), link=None)
    text = host.run()
    assert promtool(text).returncode == 0
    samples = parse(text)
    assert samples["wiremesh_interface_up"] == [({"node": "a", "interface": "wg0"}, 0.0)]
    assert "wiremesh_interface_listen_port" not in samples
    assert "wireguard_sent_bytes_total" not in samples
    downs = [h["peer"] for h, v in samples["wiremesh_link_state"] if h["state"] == "down" and v]
    assert downs == ["b", "c", "d"]
    host = Host(tmp_path / "down")
    host.stage(dump_text(seen), config_text("a", seen), link="<POINTOPOINT,NOARP> mtu 1420")
    samples = parse(host.run())
    assert samples["wiremesh_interface_up"][0][1] == 0
    assert {h["peer"] for h, v in samples["wiremesh_link_state"] if h["state"] == "down" and v} == {
        "b",
        "c",
        "d",
    }


def test_no_secret_gets_through(tmp_path: Path) -> None:
    seen = mf.observed()["a"]
    assert isinstance(seen, ObservedHost)
    host = Host(tmp_path)
    host.stage(dump_text(seen, psk=True), config_text("a", seen))
    text = host.run()
    assert SECRET not in text and PSK not in text
    assert SECRET not in host.script() and PSK not in host.script()


def test_hostile_config_text_is_escaped_or_ignored(tmp_path: Path) -> None:
    seen = mf.host("a", [mf.peer("b", 5)])
    config = config_text("a", seen).replace(
        "Endpoint = 198.51.100.12:51820", 'Endpoint = ev"il\\host:51820 # comment'
    )
    config = config.replace("# b\n", "# PrivateKey = not-a-name\n")
    host = Host(tmp_path)
    host.stage(dump_text(seen), config)
    text = host.run("a", [Target("b", mf.inventory().node("b").address)])
    assert promtool(text).returncode == 0, promtool(text).stdout
    samples = parse(text)
    # the comment is no node name: the peer stays unnamed; its key is then not b's for the link
    assert samples["wireguard_sent_bytes_total"][0][0]["friendly_name"] == ""
    assert "not-a-name" not in text
    config = config.replace("# PrivateKey = not-a-name\n", "# b\n")
    host.stage(dump_text(seen), config)
    samples = parse(host.run("a", [Target("b", mf.inventory().node("b").address)]))
    (info,) = samples["wiremesh_link_info"]
    assert info[0]["endpoint_configured"] == 'ev"il\\host:51820'
    assert samples["wiremesh_link_endpoint_mismatch"][0][1] == 0  # a name: not compared


def test_a_reader_never_sees_a_half_written_file(tmp_path: Path) -> None:
    seen = mf.observed()["a"]
    assert isinstance(seen, ObservedHost)
    host = Host(tmp_path)
    host.stage(dump_text(seen), config_text("a", seen))
    first = host.run()
    out = host.out / "wiremesh-wg0.prom"
    assert (out.stat().st_mode & 0o777) == 0o644  # node_exporter reads it as another user
    seen_texts: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen_texts.add(out.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(25):
            host.run()
    finally:
        stop.set()
        reader.join()
    assert seen_texts == {first}
    assert sorted(p.name for p in host.out.iterdir()) == ["wiremesh-wg0.prom"]  # no temp left


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    paths = TextfilePaths.of("wg0", "/var/lib/prometheus/node-exporter")
    assert paths.script == "/var/lib/wiremesh/metrics-wg0.sh"
    assert paths.output == "/var/lib/prometheus/node-exporter/wiremesh-wg0.prom"
    service, timer = service_unit("wg0", paths.script), timer_unit("wg0", 30)
    assert service.startswith(FILE_MARKER) and timer.startswith(FILE_MARKER)
    assert "Type=oneshot" in service and f"ExecStart=/bin/sh {paths.script}" in service
    assert "OnUnitActiveSec=30s" in timer and "WantedBy=timers.target" in timer
    assert "OnActiveSec=0" in timer  # at once when started, so also at boot
    name = unit_name("wg0")
    (tmp_path / f"{name}.service").write_text(service)
    (tmp_path / f"{name}.timer").write_text(timer)
    units = [f"{tmp_path}/{name}.service", f"{tmp_path}/{name}.timer"]
    try:
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", *units],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        pytest.fail("systemd-analyze is missing: run ./scripts/install-deps (package systemd)")
    # it exits 0 even for unknown keys; a warning on stderr is a failure here
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    assert unit_name("wg+0") == "wiremesh-metrics-wg-0"


def test_apply_wants_the_files_when_on_and_removes_them_when_off() -> None:
    inventory = mf.inventory()
    off = textfile_files(inventory)
    assert set(off) == set(mf.NAMES)
    assert all(not f.present and f.deactivate for f in off["a"])
    assert [f.path for f in off["a"]] == [f.path for f in retired_files(inventory)]
    on = textfile_files(
        replace(inventory, metrics=replace(inventory.metrics, textfile=True, interval=15))
    )
    script, service, timer = on["a"]
    assert (script.mode, service.mode, timer.mode) == (0o755, 0o644, 0o644)
    assert all(f.present and f.text.startswith(FILE_MARKER) for f in on["a"])
    assert "OnUnitActiveSec=15s" in timer.text
    assert "b=10.0.0.2" in script.text and "a=10.0.0.1" not in script.text
    assert script.activate == activate("wg0", script.path)
    assert "systemctl restart wiremesh-metrics-wg0.timer" in (script.activate or "")
    assert "rm -f /var/lib/prometheus/node-exporter/wiremesh-wg0.prom" in deactivate(
        "wg0", TextfilePaths.of("wg0", "/var/lib/prometheus/node-exporter").output
    )
