"""The Prometheus text format writer (issue 13): escaping, names, one family per name, and
``promtool check metrics`` (Debian's prometheus package) on what it writes, hostile label values
included."""

from __future__ import annotations

import math
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wiremesh.codec.prometheus import (
    Family,
    escape_help,
    escape_label_value,
    format_value,
    parse,
    render,
)

HOSTILE = [
    'quote " inside',
    "back\\slash",
    "line\nfeed",
    'all: \\" \n \\n "\\',
    "trailing backslash \\",
    "unicode: ünïcødé ✓ 日本",
    "{braces}=,commas",
    "",
    "tab\tand\rcarriage",
]


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` on ``text`` (stdin); it exits non-zero on any problem, lint
    problems included."""
    try:
        return subprocess.run(
            ["promtool", "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        pytest.fail("promtool is missing: run ./scripts/install-deps (package prometheus)")


def test_label_values_escape_backslash_quote_and_line_feed_only() -> None:
    assert escape_label_value('a"b') == 'a\\"b'
    assert escape_label_value("a\\b") == "a\\\\b"
    assert escape_label_value("a\nb") == "a\\nb"
    assert escape_label_value("a\tb ü") == "a\tb ü"
    # the backslash first: an escaped quote is not escaped again
    assert escape_label_value('\\"') == '\\\\\\"'
    assert escape_help('say "x"\\\n') == 'say "x"\\\\\\n'


def test_values_are_go_style() -> None:
    assert format_value(3) == "3"
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(True) == "1"
    assert format_value(math.nan) == "NaN"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(1796172256) == "1796172256"
    assert float(format_value(1e300)) == 1e300


def test_hostile_label_values_pass_promtool_and_read_back() -> None:
    family = Family("wiremesh_host_error_info", "gauge", 'help with "quotes" and \\ and\nnewline')
    for i, text in enumerate(HOSTILE):
        family.add(1, {"node": f"n{i}", "error": text})
    counter = Family("x_sent_bytes_total", "counter", "bytes")
    counter.add(12, {"peer": 'a"b'})
    text = render([family, counter])
    assert text.endswith("\n") and text.count("# TYPE") == 2
    assert "\n\n" not in text  # a raw line feed never ends up in a label or help text
    result = promtool(text)
    assert result.returncode == 0, result.stdout + result.stderr
    back = parse(text)
    assert [labels["error"] for labels, _ in back["wiremesh_host_error_info"]] == HOSTILE
    assert back["x_sent_bytes_total"] == [({"peer": 'a"b'}, 12.0)]


@given(st.lists(st.text(), min_size=1, max_size=5, unique=True))
def test_any_text_survives_as_a_label_value(values: list[str]) -> None:
    family = Family("t", "gauge", "t")
    for i, value in enumerate(values):
        family.add(i, {"v": value})
    back = parse(render([family]))["t"]
    assert [labels["v"] for labels, _ in back] == values
    assert [v for _, v in back] == list(range(len(values)))


def test_rules_of_the_format_are_enforced() -> None:
    with pytest.raises(ValueError, match="_total"):
        Family("bytes_sent", "counter", "x")
    with pytest.raises(ValueError, match="_total"):
        Family(
            "peers_total", "gauge", "x"
        )  # promtool: non-counter metrics should not end in _total
    with pytest.raises(ValueError, match="metric name"):
        Family("1abc", "gauge", "x")
    with pytest.raises(ValueError, match="type"):
        Family("abc", "histogram", "x")
    family = Family("abc", "gauge", "x")
    with pytest.raises(ValueError, match="label name"):
        family.add(1, {"__name__": "x"})
    with pytest.raises(ValueError, match="label name"):
        family.add(1, {"bad-name": "x"})
    family.add(1, {"a": "1"})
    family.add(2, {"a": "1"})
    with pytest.raises(ValueError, match="duplicate"):
        render([family])
    with pytest.raises(ValueError, match="twice"):
        render([Family("abc", "gauge", "x"), Family("abc", "gauge", "x")])


def test_families_without_samples_keep_their_help_and_type() -> None:
    text = render([Family("a_total", "counter", "A"), Family("b", "gauge", "B")])
    assert text == "# HELP a_total A\n# TYPE a_total counter\n# HELP b B\n# TYPE b gauge\n"
    assert promtool(text).returncode == 0
    assert render([]) == ""
