"""``wiremesh exporter``'s HTTP side and the CLI of issue 13 (no hosts: readers stand in for SSH, or
the inventory's hosts are closed loopback ports): /metrics answers within the scrape timeout even
with a slow host, 404/405/400 for the rest; ``metrics`` prints text promtool accepts and exits 0;
``status --watch`` refuses without a terminal and ends with 130 on Ctrl-C in a real pty."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import cli
from tests.unit.test_monitor import INVENTORY, monitor
from tests.unit.test_prometheus import promtool
from wiremesh.cli.cmd_metrics import parse_listen
from wiremesh.codec.prometheus import CONTENT_TYPE, parse
from wiremesh.errors import ValidationError
from wiremesh.ops.exporter import Exporter
from wiremesh.store.inventory_file import InventoryFile


async def get(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` raw; return (status line, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], headers, body


def test_metrics_over_http_within_the_scrape_timeout(tmp_path: Path) -> None:
    path = tmp_path / "wiremesh.toml"
    path.write_text(INVENTORY)

    async def run() -> None:
        mon, readers = monitor(InventoryFile(path), interval=0, host_timeout=30)
        readers["c"].delay = 10.0  # a slow host
        exporter = Exporter(mon, scrape_timeout=0.5)
        stop = asyncio.Event()
        urls: list[str] = []
        task = asyncio.create_task(exporter.serve("127.0.0.1", 0, stop, urls.append))
        while exporter.address is None:
            await asyncio.sleep(0.01)
        port = exporter.address[1]
        assert urls == [f"http://127.0.0.1:{port}/metrics"]
        began = time.monotonic()
        status, headers, body = await get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        took = time.monotonic() - began
        assert status == "HTTP/1.1 200 OK" and took < 1.5, (status, took)
        assert headers["Content-Type"] == CONTENT_TYPE
        assert int(headers["Content-Length"]) == len(body)
        text = body.decode()
        assert promtool(text).returncode == 0, promtool(text).stdout
        samples = parse(text)
        reachable = {h["node"]: v for h, v in samples["wiremesh_host_reachable"]}
        assert reachable == {"a": 1, "b": 1, "c": 0, "d": 1}  # c is slow: exported, not dropped
        assert samples["wiremesh_exporter_scrapes_total"] == [({}, 1.0)]
        connects = {h["node"]: v for h, v in samples["wiremesh_exporter_ssh_connects_total"]}
        assert connects == {"a": 1, "b": 1, "c": 1, "d": 1}
        (wait,) = samples["wiremesh_exporter_scrape_duration_seconds"]
        assert 0.4 < wait[1] < 1.5
        # the rest of HTTP
        assert (await get(port, b"GET /nope HTTP/1.1\r\n\r\n"))[0] == "HTTP/1.1 404 Not Found"
        status, headers, _ = await get(port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert status == "HTTP/1.1 405 Method Not Allowed" and headers["Allow"] == "GET, HEAD"
        assert (await get(port, b"nonsense\r\n\r\n"))[0] == "HTTP/1.1 400 Bad Request"
        status, headers, body = await get(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert status.endswith("200 OK") and body == b"" and int(headers["Content-Length"]) > 0
        status, _, body = await get(port, b"GET / HTTP/1.0\r\n\r\n")
        assert b'href="/metrics"' in body
        # a client that sends nothing does not hang the server for others
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await get(port, b"GET /metrics HTTP/1.1\r\n\r\n"))[0].endswith("200 OK")
        idle_writer.close()
        stop.set()
        await asyncio.wait_for(task, 10)
        assert readers["c"].running == 0
        del idle_reader

    asyncio.run(run())


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9586") == ("127.0.0.1", 9586)
    assert parse_listen("[::1]:9586") == ("::1", 9586)
    assert parse_listen("localhost:0") == ("localhost", 0)
    for bad in ("9586", ":9586", "::1:9586", "127.0.0.1:x", "127.0.0.1:70000"):
        with pytest.raises(ValidationError):
            parse_listen(bad)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unreachable_inventory(tmp_path: Path) -> Path:
    """Two nodes whose SSH ports on loopback are closed (connection refused at once)."""
    path = tmp_path / "wiremesh.toml"
    nodes = "".join(
        f'[[node]]\nname = "{n}"\nendpoint = "198.51.100.{11 + i}"\n'
        f'ssh = "root@127.0.0.1:{_closed_port()}"\n'
        for i, n in enumerate(("x1", "x2"))
    )
    path.write_text(f'version = 1\n[mesh]\nname = "t"\ncidr = "10.9.0.0/24"\n{nodes}')
    return path


def test_metrics_command_exports_unreachable_hosts_and_exits_0(tmp_path: Path) -> None:
    path = _unreachable_inventory(tmp_path)
    result = cli("-f", path, "metrics", "--host-timeout", "5")
    assert result.code == 0, result.err
    assert promtool(result.out).returncode == 0
    samples = parse(result.out)
    assert [v for _, v in samples["wiremesh_host_reachable"]] == [0, 0]
    errors = [h["error"] for h, _ in samples["wiremesh_host_error_info"]]
    assert all(e.startswith("cannot connect to root@127.0.0.1:") for e in errors), errors
    assert samples["wiremesh_links"][3] == ({"state": "down"}, 2.0)
    assert samples["wiremesh_healthy"] == [({}, 0.0)]


def test_exporter_command_errors(tmp_path: Path) -> None:
    path = _unreachable_inventory(tmp_path)
    result = cli("-f", path, "exporter", "--listen", "9586")
    assert result.code == 2 and "HOST:PORT" in result.err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("-f", path, "exporter", "--listen", f"127.0.0.1:{port}")
    assert result.code == 2 and "cannot listen on" in result.err, result.err
    result = cli("-f", path, "exporter", "--interval", "-1")
    assert result.code == 2


def test_watch_refuses_without_a_terminal(tmp_path: Path) -> None:
    path = _unreachable_inventory(tmp_path)
    result = cli("-f", path, "status", "--watch")
    assert result.code == 2 and "needs a terminal" in result.err
    assert "status --json" in result.err
    assert cli("-f", path, "status", "--watch", "--json").code == 2
    assert cli("-f", path, "status", "--watch", "--interval", "0.1").code == 2


def test_watch_redraws_on_a_terminal_and_ctrl_c_exits_130(tmp_path: Path) -> None:
    path = _unreachable_inventory(tmp_path)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real entry point on a pseudo-terminal
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "wiremesh",
                "-f",
                str(path),
                "status",
                "--watch",
                "--interval",
                "1",
            ],
        )
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while seen.count(b"wiremesh status --watch") < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    break
        assert seen.count(b"wiremesh status --watch") >= 2, seen  # refreshed at least once
        assert b"unreachable" in seen and b"NOT healthy" in seen
        os.kill(pid, signal.SIGINT)
        _, status = os.waitpid(pid, 0)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 130, status


def test_python_dash_m_runs_wiremesh() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wiremesh", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("wiremesh ")
