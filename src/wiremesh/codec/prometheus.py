"""The Prometheus text exposition format, version 0.0.4 (pure): metric families in, text out.

What the format requires, and what is checked here (https://prometheus.io/docs/instrumenting/
exposition_formats/#text-based-format, and ``promtool check metrics``, which the tests run):

- Each family is printed once: ``# HELP name text``, ``# TYPE name gauge|counter``, then its samples.
  In HELP text a backslash is written ``\\\\`` and a line feed ``\\n``.
- Metric names match ``[a-zA-Z_:][a-zA-Z0-9_:]*``; label names ``[a-zA-Z_][a-zA-Z0-9_]*`` and do
  not start with ``__`` (reserved for Prometheus itself). A counter's name ends in ``_total``, and
  nothing else does (promtool's lint: "non-counter metrics should not have _total suffix").
- A label value is any UTF-8 text between double quotes, with ``\\`` written ``\\\\``, ``"`` written
  ``\\"`` and a line feed ``\\n``. Nothing else is escaped.
- Values are Go-style floats: ``NaN``, ``+Inf``, ``-Inf``; whole numbers are printed without ``.0``.
- No two samples of a family have the same label set; the text ends with a line feed.

Rules broken by the caller are bugs, so they raise :class:`ValueError` rather than print bad text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What an HTTP server sends with this text (the Prometheus client libraries' value)."""

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
KINDS = ("gauge", "counter")


def escape_label_value(value: str) -> str:
    """A label value as it goes between the double quotes."""
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value  # the common case, and most of the time of a big mesh's render
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: only backslash and line feed are escaped (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: whole numbers without a fraction, else Python's shortest round-trip repr."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) or (value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    return repr(float(value))


@dataclass
class Family:
    """One metric family: its name, type, help text and samples (label sets with a value each)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[tuple[tuple[str, str], ...], float]] = field(default_factory=list)
    _names: set[tuple[str, ...]] = field(default_factory=set, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _METRIC_NAME.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: unknown metric type {self.kind!r}")
        if (self.kind == "counter") != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: a counter's name, and only a counter's, ends in _total")

    def add(self, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Add one sample (labels in the order given)."""
        items = tuple((labels or {}).items())
        names = tuple(name for name, _ in items)
        if names not in self._names:  # a family's samples mostly share their label names
            for name in names:
                if not _LABEL_NAME.match(name) or name.startswith("__"):
                    raise ValueError(f"{self.name}: invalid label name {name!r}")
            self._names.add(names)
        for name, text in items:
            if not isinstance(text, str):
                raise ValueError(f"{self.name}: label {name} must be text, not {text!r}")
        self.samples.append((items, value))


def _sample_line(name: str, labels: tuple[tuple[str, str], ...], value: float) -> str:
    if not labels:
        return f"{name} {format_value(value)}"
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
    return f"{name}{{{inner}}} {format_value(value)}"


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families``, in the order given."""
    lines: list[str] = []
    seen: set[str] = set()
    for family in families:
        if family.name in seen:
            raise ValueError(f"metric family {family.name} appears twice")
        seen.add(family.name)
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        label_sets: set[frozenset[tuple[str, str]]] = set()
        for labels, value in family.samples:
            key = frozenset(labels)
            if key in label_sets or len(key) != len(labels):
                raise ValueError(f"{family.name}: duplicate sample or label {dict(labels)}")
            label_sets.add(key)
            lines.append(_sample_line(family.name, labels, value))
    return "\n".join(lines) + "\n" if lines else ""


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by metric name (a small reader of what :func:`render` writes, for tests and tools:
    label values unescaped; HELP and TYPE lines skipped)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.split("\n"):  # only a line feed ends a line (not \r, nor U+2028)
        if not line or line.startswith("#"):
            continue
        name_end = len(line)
        for i, c in enumerate(line):
            if c in "{ ":
                name_end = i
                break
        name = line[:name_end]
        labels: dict[str, str] = {}
        rest = line[name_end:]
        if rest.startswith("{"):
            i = 1
            while rest[i] != "}":
                eq = rest.index("=", i)
                key = rest[i:eq].strip(", ")
                j = eq + 2  # past ="
                value = []
                while rest[j] != '"':
                    if rest[j] == "\\":
                        value.append({"n": "\n", "\\": "\\", '"': '"'}[rest[j + 1]])
                        j += 2
                    else:
                        value.append(rest[j])
                        j += 1
                labels[key] = "".join(value)
                i = j + 1
                if rest[i] == ",":
                    i += 1
            rest = rest[i + 1 :]
        words = rest.split()
        number = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}.get(words[0])
        out.setdefault(name, []).append((labels, float(words[0]) if number is None else number))
    return out
