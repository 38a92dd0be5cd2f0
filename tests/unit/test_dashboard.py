"""The Grafana dashboard (issue 13, item 4), checked offline since Grafana's own schema check needs a
Grafana server: it is JSON with the structure Grafana imports (panels, targets, a Prometheus data
source variable), it has every panel the README names, every metric its queries name is one that
``wiremesh metrics`` emits (with samples), and ``promtool check rules`` parses every query. The lab
test (tests/integration/test_metrics.py) runs every query against a real Prometheus."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.unit import mesh_fixture as mf
from wiremesh.codec.mesh_metrics import HostRead, MetricsInput, mesh_families
from wiremesh.codec.prometheus import parse, render
from wiremesh.ops.status import mesh_status

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana-wiremesh.json"
METRIC = re.compile(r"\b(?:wireguard|wiremesh)_[a-z0-9_]+\b")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def documented_panels() -> list[str]:
    """The bold names of the README's list under "The Grafana dashboard"."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### The Grafana dashboard", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- \*\*(.+?)\*\*", section, flags=re.MULTILINE)


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, with Grafana's variables filled in."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m")
            out.append((panel["title"], expr.replace("$job", ".*").replace("$node", ".*")))
    return out


def emitted() -> set[str]:
    """Metric names with at least one sample in ``wiremesh metrics`` output (the test mesh)."""
    health = mesh_status(mf.inventory(), mf.observed())
    reads = {n: HostRead(0.05, 1.0) for n in mf.NAMES}
    text = render(mesh_families(MetricsInput(health, "m", "wg0", reads, 0.2)))
    return set(parse(text))


def test_it_is_a_dashboard_grafana_imports() -> None:
    data = dashboard()
    assert data["title"] and data["uid"] and isinstance(data["schemaVersion"], int)
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))


def test_the_panels_the_readme_names_exist() -> None:
    named = documented_panels()
    assert len(named) >= 8, named
    titles = [p["title"] for p in dashboard()["panels"]]
    assert sorted(named) == sorted(titles)
    for must in ("Link-state matrix", "Handshake age", "Traffic per link", "Relayed links"):
        assert must in titles  # the list


def test_every_query_names_metrics_that_wiremesh_metrics_emits() -> None:
    names = emitted()
    used: set[str] = set()
    for title, expr in queries():
        found = set(METRIC.findall(expr))
        assert found, (title, expr)
        assert found <= names, (title, found - names)
        used |= found
    # the panels the issue asks for query what they should
    by_title: dict[str, str] = {}
    for title, expr in queries():
        by_title[title] = by_title.get(title, "") + expr
    assert "wiremesh_link_state" in by_title["Link-state matrix"]
    assert "wireguard_sent_bytes_total" in by_title["Traffic per link"]
    assert "wireguard_received_bytes_total" in by_title["Traffic per link"]
    assert "via" in by_title["Relayed links"]
    assert len(used) >= 10


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, (_, expr) in enumerate(queries())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    try:
        result = subprocess.run(
            ["promtool", "check", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        pytest.fail("promtool is missing: run ./scripts/install-deps (package prometheus)")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries())} rules found" in result.stdout


def _series_lines() -> list[dict[str, str]]:
    """The test mesh's ``wiremesh metrics`` samples as promtool input series (scraped as job
    wiremesh), constant over the test's ten minutes."""
    health = mesh_status(mf.inventory(), mf.observed())
    reads = {n: HostRead(0.05, 1.0) for n in mf.NAMES}
    text = render(mesh_families(MetricsInput(health, "m", "wg0", reads, 0.2)))
    out = []
    for name, samples in parse(text).items():
        for labels, value in samples:
            inner = ",".join(f'{k}="{v}"' for k, v in {**labels, "job": "wiremesh"}.items())
            out.append({"series": f"{name}{{{inner}}}", "values": f"{value:g}x10"})
    return out


def _expect(title: str, samples: list[tuple[str, float]]) -> dict[str, Any]:
    (expr,) = [e for t, e in queries() if t == title]
    return {
        "expr": expr,
        "eval_time": "5m",
        "exp_samples": [{"labels": labels, "value": value} for labels, value in samples],
    }


def test_queries_give_the_right_answers_on_the_test_mesh(tmp_path: Path) -> None:
    """``promtool test rules`` evaluates the panels' queries over the test mesh's metrics: the
    matrix codes each link (3 direct, 2 relayed, 1 idle, 0 down), the tables list the right links."""
    code = {"direct": 3, "relayed": 2, "idle": 1, "down": 0}
    health = mesh_status(mf.inventory(), mf.observed())
    from wiremesh.model.health import link_states

    matrix = [
        (f'{{node="{n}",peer="{p}"}}', float(code[s]))
        for (n, p), s in sorted(link_states(health).items())
    ]

    def info(node: str, peer: str, via: str) -> str:
        endpoint = f"198.51.100.{11 + mf.INDEX[peer]}:51820"
        return (
            f'wiremesh_link_info{{endpoint="{endpoint}",endpoint_configured="{endpoint}",'
            f'job="wiremesh",node="{node}",peer="{peer}",via="{via}"}}'
        )

    tests = [
        _expect("Link-state matrix", matrix),
        _expect("Mesh healthy", [("{}", 0)]),
        _expect(
            "Links by state",
            [
                ('{state="direct"}', 4),
                ('{state="relayed"}', 2),
                ('{state="idle"}', 3),
                ('{state="down"}', 3),
            ],
        ),
        _expect("Relayed links", [(info("a", "c", "b"), 1), (info("c", "a", "b"), 1)]),
        _expect(
            "Down links",
            [
                (f'wiremesh_link_state{{job="wiremesh",node="d",peer="{p}",state="down"}}', 1)
                for p in ("a", "b", "c")
            ],
        ),
    ]
    spec = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": _series_lines(), "promql_expr_test": tests}],
    }
    path = tmp_path / "test.yml"
    path.write_text(json.dumps(spec))
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
