"""The dashboard and the alert rules as data: their PromQL expressions and the metric names
in them, for the static checks (test_monitoring.py) and the live one (test_monitoring_live.py).

Metric names are read with a small scanner rather than a PromQL parser (the Prometheus on
these machines predates its parse API). It removes what cannot hold a metric name (strings,
label matchers, ranges, grouping label lists) and keeps the identifiers that are not
functions or keywords. The live test then asks the real Prometheus for every name found, so
a scanning mistake shows up as a failure, never as a silent pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "wxkf-overview.json"
RULES = ROOT / "deploy" / "prometheus" / "wxkf-alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "wxkf-alerts.test.yaml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

SYNTHETIC = frozenset({"up", "absent", "scrape_duration_seconds", "scrape_samples_scraped"})
"""Series Prometheus makes itself: never in any exposition."""

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "atan2", "inf", "nan", "start", "end"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_RANGE = re.compile(r"\[[^\]]*\]")
_MATCHERS = re.compile(r"\{[^}]*\}")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*+)(?!\s*\()")
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (``up`` included)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {m for m in _IDENT.findall(text) if m.lower() not in _KEYWORDS}


def selectors(expr: str) -> list[tuple[str, str]]:
    """Each vector selector as (metric name, its label matchers without braces)."""
    # Blank out strings and grouping label lists, keeping every offset into ``expr``.
    text = _STRING.sub(lambda m: "_" * len(m.group()), expr)
    text = _GROUPING.sub(lambda m: " " * len(m.group()), text)
    found = []
    for match in re.finditer(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?", text):
        name = match.group(1)
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        start, end = match.span(2) if match.group(2) else (match.end(), match.end())
        found.append((name, expr[start + 1 : end - 1] if match.group(2) else ""))
    return found


def variables(expr: str) -> set[str]:
    return {a or b for a, b in _VARIABLE.findall(expr)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Grafana's template variables replaced; an unknown one is an error, not a pass."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for the dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard (a panel target or a variable's query)."""

    where: str
    expr: str


@cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(dash: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in (dash or dashboard())["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dash: Mapping[str, Any] | None = None) -> list[Query]:
    return [
        Query(where=f"panel {p['title']!r} target {t['refId']}", expr=t["expr"])
        for p in panels(dash)
        for t in p.get("targets", [])
    ]


_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),\s*)?(\w+)\)\s*$", re.DOTALL)


def variable_queries(dash: Mapping[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """Query variables as (variable, selector expression, label) from ``label_values``."""
    found = []
    for var in (dash or dashboard())["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = _LABEL_VALUES.match(query)
        assert match, f"variable {var['name']}: only label_values(selector, label) is checked"
        found.append((var["name"], match.group(1) or "", match.group(2)))
    return found


@cache
def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return loaded


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rules()["groups"] for rule in group["rules"]]


def dashboard_metric_names() -> set[str]:
    names = {n for q in panel_queries() for n in metric_names(q.expr)}
    return names | {n for _, selector, _ in variable_queries() for n in metric_names(selector)}


def alert_metric_names() -> set[str]:
    return {n for rule in alert_rules() for n in metric_names(rule["expr"])}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def doc_anchors(path: Path = DEPLOY_DOC) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", path.read_text(encoding="utf-8"), re.MULTILINE)
    return {github_anchor(h) for h in headings}
