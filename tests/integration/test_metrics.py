"""Issue 13 on lab hosts: the mesh's metrics from a 4-host mesh with a NAT pair (two public hosts,
two hosts behind two NAT routers), the textfile collector on the hosts, and a real Prometheus
(Debian's package, started here on 127.0.0.1 with its data in a temp dir, stopped after) scraping
``wiremesh exporter``.

The tests of this module share one lab and run in order: the last two change the mesh (a host's
SSH blocked, an interface deleted, the textfile turned off).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Result, cli
from tests.integration.conftest import LAB_WAIT
from tests.unit.test_dashboard import queries
from tests.unit.test_prometheus import promtool
from wiremesh.codec.prometheus import parse
from wiremesh.lab import Lab

pytestmark = pytest.mark.root

SCRIPT = "/var/lib/wiremesh/metrics-wg0.sh"
UNITS = (
    "/etc/systemd/system/wiremesh-metrics-wg0.service",
    "/etc/systemd/system/wiremesh-metrics-wg0.timer",
)
TEXTFILE = "/var/lib/prometheus/node-exporter/wiremesh-wg0.prom"
HOSTS = ("lab1", "lab2", "lab3", "lab4")


def wm(lab: Lab, *args: str) -> Result:
    return cli("-f", str(lab.inventory_path), *args)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """lab1, lab2 public; lab3 behind NAT router a, lab4 behind NAT router b; the mesh applied with
    ``[metrics] textfile = true`` and every pair pinged (so that every link is fresh)."""
    if os.geteuid() != 0:
        pytest.fail("the lab needs root", pytrace=False)
    made = Lab.up(
        tmp_path_factory.mktemp("metrics") / "lab", 2, nats={"a": 1, "b": 1}, wait=LAB_WAIT
    )
    try:
        text = made.inventory_path.read_text()
        made.inventory_path.write_text(text + "\n[metrics]\ntextfile = true\ninterval = 10\n")
        for _ in range(2):  # the second apply moves a NAT pair that punched through to direct
            r = wm(made, "apply", "--yes")
            assert r.code == 0, r.out + r.err
        r = wm(made, "status", "--ping", "--json")
        assert r.code == 0, r.out
        yield made
    finally:
        made.down()


def links_of(report: Any) -> dict[tuple[str, str], str]:
    return {(n["name"], p["name"]): p["link"] for n in report["nodes"] for p in n["peers"]}


def states(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[tuple[str, str], str]:
    return {(h["node"], h["peer"]): h["state"] for h, v in samples["wiremesh_link_state"] if v == 1}


def private_keys(lab: Lab) -> list[str]:
    return [lab.exec(h, ["cat", "/etc/wireguard/wg0.key"]).stdout.strip() for h in HOSTS]


def test_metrics_of_the_mesh_pass_promtool_and_agree_with_status(lab: Lab) -> None:
    r = wm(lab, "status", "--ping", "--json")
    assert r.code == 0, r.out
    report = json.loads(r.out)
    m = wm(lab, "metrics")
    assert m.code == 0, m.err
    check = promtool(m.out)
    assert check.returncode == 0, check.stdout + check.stderr
    samples = parse(m.out)
    assert samples["wiremesh_links_expected"] == [({}, 12.0)]
    assert samples["wiremesh_healthy"] == [({}, 1.0)]
    assert [v for _, v in samples["wiremesh_host_reachable"]] == [1, 1, 1, 1]
    assert states(samples) == links_of(report)  # the same words as status
    assert set(states(samples).values()) <= {"direct", "relayed"}  # all fresh after the pings
    # the WireGuard exporter's labels, with the real key and allowed IPs of lab1's entry for lab2
    key2 = lab.exec("lab2", ["wg", "show", "wg0", "public-key"]).stdout.strip()
    allowed = dict(
        line.split("\t")
        for line in lab.exec("lab1", ["wg", "show", "wg0", "allowed-ips"]).stdout.splitlines()
    )
    (sent,) = [
        (h, v)
        for h, v in samples["wireguard_sent_bytes_total"]
        if h["node"] == "lab1" and h["friendly_name"] == "lab2"
    ]
    assert sent[0]["public_key"] == key2 and sent[1] > 0
    assert sent[0]["allowed_ips"] == allowed[key2].replace(" ", ",")
    # NAT: the pair behind two routers is relayed through lab1 or has punched through
    (info,) = [
        h for h, _ in samples["wiremesh_link_info"] if (h["node"], h["peer"]) == ("lab3", "lab4")
    ]
    assert (states(samples)[("lab3", "lab4")], info["via"]) in {("relayed", "lab1"), ("direct", "")}
    for key in private_keys(lab):
        assert key and key not in m.out


def test_the_textfile_collector_on_the_lab_hosts(lab: Lab) -> None:
    central = states(parse(wm(lab, "metrics").out))
    keys = private_keys(lab)
    for host in HOSTS:
        for path in (SCRIPT, *UNITS):
            first = lab.exec(host, ["head", "-n", "1", path]).stdout
            assert first.startswith("# wiremesh: managed file"), (host, path, first)
        # no systemd in a lab host: apply wrote the file once; run the script again now (as the
        # timer would) so that it sees the handshakes of the pings
        assert lab.exec(host, ["sh", "-c", f"test -f {TEXTFILE}"], check=False).returncode == 0
        lab.exec(host, ["sh", SCRIPT])
        text = lab.exec(host, ["cat", TEXTFILE]).stdout
        check = promtool(text)
        assert check.returncode == 0, (host, check.stdout + check.stderr)
        assert lab.exec(host, ["stat", "-c", "%a", TEXTFILE]).stdout.strip() == "644"
        assert not any(k in text for k in keys), host
        mine = states(parse(text))
        assert mine == {pair: s for pair, s in central.items() if pair[0] == host}, host
        leftovers = lab.exec(host, ["ls", "-a", TEXTFILE.rsplit("/", 1)[0]]).stdout.split()
        assert sorted(leftovers) == [".", "..", "wiremesh-wg0.prom"], leftovers
    # written once: a plan has nothing to change in them (a NAT pair may still move to its direct
    # path, which is not about metrics)
    r = wm(lab, "plan", "--json")
    assert r.code == 0, r.err
    for host in json.loads(r.out)["hosts"]:
        described = [c["description"] for c in host["changes"]]
        assert not [d for d in described if "metrics" in d or "/var/lib" in d], described


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
        data: bytes = response.read()
        return data


class PromAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> list[Any]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = json.loads(_get(url))
        assert answer["status"] == "success", answer
        result: list[Any] = answer["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def wait(
        self, expr: str, ok: Callable[[float | None], bool], timeout: float = 60
    ) -> float | None:
        deadline = time.monotonic() + timeout
        while True:
            got = self.value(expr)
            if ok(got):
                return got
            assert time.monotonic() < deadline, f"{expr} is still {got}"
            time.sleep(0.5)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL after 15 s: the process (started here) is gone afterwards."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def test_prometheus_scrapes_the_exporter(lab: Lab, tmp_path: Path) -> None:
    """Every second; the expected series with the right values; a host whose SSH hangs is served
    from its latest data, then exported as unreachable, while scrapes stay fast; one host's
    interface deleted takes wiremesh_links{state="down"} from 0 to 6: in a mesh of 4, the 3 links
    from that host and the 3 toward it (the brief's "0 to 2" is the same rule for 2 hosts)."""
    exporter_port, prom_port = _free_port(), _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: wiremesh\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter_port}']\n"
    )
    with (
        (tmp_path / "exporter.log").open("wb") as exporter_log,
        (tmp_path / "prometheus.log").open("wb") as prom_log,
    ):
        exporter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wiremesh",
                "-f",
                str(lab.inventory_path),
                "exporter",
                "--listen",
                f"127.0.0.1:{exporter_port}",
                "--interval",
                "1",
                "--scrape-timeout",
                "0.7",
                "--host-timeout",
                "3",
                "--stale-after",
                "4",
            ],
            stdout=exporter_log,
            stderr=exporter_log,
        )
        prometheus = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            stdout=prom_log,
            stderr=prom_log,
            cwd=tmp_path,
        )
        blocked = False
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if _get(f"http://127.0.0.1:{prom_port}/-/ready") and _get(
                        f"http://127.0.0.1:{exporter_port}/metrics"
                    ):
                        break
                except OSError:
                    pass
                assert exporter.poll() is None and prometheus.poll() is None, "one of them died"
                assert time.monotonic() < deadline, "prometheus or the exporter never came up"
                time.sleep(0.3)
            api = PromAPI(prom_port)
            assert api.wait('up{job="wiremesh"}', lambda v: v == 1) == 1
            assert api.wait('wiremesh_links{state="down"}', lambda v: v is not None) == 0
            assert api.value("wiremesh_links_expected") == 12
            assert api.value("sum(wiremesh_host_reachable)") == 4
            assert api.value("count(wiremesh_link_state == 1)") == 12
            assert api.value("wiremesh_healthy") == 1
            assert (
                api.value('wireguard_sent_bytes_total{node="lab1",friendly_name="lab2"}') or 0
            ) > 0
            # every dashboard query runs; those of the panels have data
            time.sleep(3)  # rate() needs two samples
            for title, expr in queries():
                result = api.query(expr)
                if title in (
                    "Link-state matrix",
                    "Handshake age",
                    "Traffic per link",
                    "Links by state",
                ):
                    assert result, (title, expr)
            matrix = next(e for t, e in queries() if t == "Link-state matrix")
            assert len(api.query(matrix)) == 12
            # lab4's SSH hangs (packets to its port 22 dropped inside lab4): its latest data is
            # served with its age, then it is unreachable; scrapes stay within their timeout
            lab.exec("lab4", ["nft", "-f", "-"], input=NFT_BLOCK_SSH)
            blocked = True
            api.wait('wiremesh_host_reachable{node="lab4"}', lambda v: v == 0, timeout=30)
            api.wait(
                'sum(wiremesh_link_state{node="lab4",state="down"})', lambda v: v == 3, timeout=30
            )
            assert api.value('wiremesh_links{state="down"}') == 3
            (error,) = api.query('wiremesh_host_error_info{node="lab4"}')
            assert error["metric"]["error"], error
            slowest = api.value('max_over_time(scrape_duration_seconds{job="wiremesh"}[20s])')
            assert slowest is not None and slowest < 1.0, slowest
            assert api.value('min_over_time(up{job="wiremesh"}[20s])') == 1
            lab.exec("lab4", ["nft", "delete", "table", "inet", "wiremesh_test"])
            blocked = False
            api.wait('wiremesh_host_reachable{node="lab4"}', lambda v: v == 1, timeout=30)
            api.wait('wiremesh_links{state="down"}', lambda v: v == 0, timeout=30)
            # one connection per host, kept: lab4 reconnected once, the others never
            connects = {
                r["metric"]["node"]: float(r["value"][1])
                for r in api.query("wiremesh_exporter_ssh_connects_total")
            }
            assert connects == {"lab1": 1, "lab2": 1, "lab3": 1, "lab4": 2}, connects
            # lab2's interface goes away
            lab.exec("lab2", ["ip", "link", "del", "wg0"])
            assert api.wait('wiremesh_links{state="down"}', lambda v: v == 6, timeout=30) == 6
            assert api.value('wiremesh_interface_up{node="lab2"}') == 0
            assert api.value('wiremesh_link_state{node="lab1",peer="lab2",state="down"}') == 1
            assert api.value('wiremesh_link_state{node="lab2",peer="lab3",state="down"}') == 1
            assert api.value("wiremesh_healthy") == 0
            assert api.value("sum(wiremesh_host_reachable)") == 4
        finally:
            if blocked:
                lab.exec("lab4", ["nft", "delete", "table", "inet", "wiremesh_test"], check=False)
            prom_code = _stop(prometheus)
            exporter_code = _stop(exporter)
    log = (tmp_path / "exporter.log").read_text(errors="replace")
    assert exporter_code == 0, log  # SIGTERM: a clean stop
    assert prom_code == 0, (tmp_path / "prometheus.log").read_text(errors="replace")


NFT_BLOCK_SSH = """
table inet wiremesh_test {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 22 drop
  }
}
"""


def test_turning_the_textfile_off_removes_it(lab: Lab) -> None:
    text = lab.inventory_path.read_text().replace("textfile = true", "textfile = false")
    lab.inventory_path.write_text(text)
    r = wm(lab, "apply", "--yes")  # also brings lab2's interface back
    assert r.code == 0, r.out + r.err
    assert "remove /var/lib/wiremesh/metrics-wg0.sh" in r.out
    for host in HOSTS:
        for path in (SCRIPT, *UNITS, TEXTFILE):
            gone = lab.exec(host, ["sh", "-c", f"test -e {path}"], check=False).returncode == 1
            assert gone, (host, path)
    r = wm(lab, "plan", "--json")
    assert r.code == 0 and "metrics" not in r.out, r.out
