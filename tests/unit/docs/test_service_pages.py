"""docs/ingress.md, docs/sender.md and docs/media.md against the code they describe.

Each page names every variable its service reads, has one settings row per variable of the
service's own with the default the code has, names every metric the service defines, and
names no variable or metric that the code does not have.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from libs.common.settings import CommonSettings, WeChatApiSettings, env_name
from services.composition import SETTINGS as SETTINGS_OF

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("ingress", "sender", "media")

SETTINGS_ROW = re.compile(r"^\| `(WXKF_\w+)` \| ([^|]*) \|", re.M)
VARIABLE = re.compile(r"\bWXKF_[A-Z0-9_]*[A-Z0-9]\b")
# A whole metric name: `wxkf_http_*` names a family, not a metric.
METRIC = re.compile(r"\bwxkf_[a-z0-9_]+\b(?!\*)")


def page(service: str) -> str:
    return (ROOT / "docs" / f"{service}.md").read_text(encoding="utf-8")


def settings_of(service: str) -> type[msgspec.Struct]:
    return SETTINGS_OF[service]  # type: ignore[index]


def metrics_in(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        names |= set(re.findall(r'"(wxkf_[a-z0-9_]+)"', path.read_text(encoding="utf-8")))
    return names


def shared_metrics() -> set[str]:
    return metrics_in(sorted((ROOT / "libs" / "common").rglob("*.py")))


def own_fields(cls: type[msgspec.Struct]) -> list[msgspec.structs.FieldInfo]:
    base = WeChatApiSettings if issubclass(cls, WeChatApiSettings) else CommonSettings
    inherited = set(base.__struct_fields__)
    return [f for f in msgspec.structs.fields(cls) if f.name not in inherited]


def shown_default(field: msgspec.structs.FieldInfo) -> str:
    """How the page's default column writes the code's default."""
    default: Any = field.default
    if field.required:
        return "required"
    if default is None:
        return "unset"
    if default == "" or default == frozenset() or default == ():
        return "empty"
    if isinstance(default, frozenset | tuple):
        return ",".join(sorted(default))
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def listed(cell: str) -> str:
    """A comma-separated default in a canonical order (the code keeps some as sets)."""
    return ",".join(sorted(cell.split(","))) if "," in cell else cell


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_the_service_reads_is_on_its_page(service: str) -> None:
    text = page(service)
    missing = [
        env_name(name)
        for name in settings_of(service).__struct_fields__
        if f"`{env_name(name)}`" not in text
    ]
    assert missing == [], f"docs/{service}.md does not name {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_on_the_page_is_read_by_the_service(service: str) -> None:
    read = {env_name(name) for name in settings_of(service).__struct_fields__}
    allowed = read | {f"{name}_FILE" for name in read}
    unknown = sorted(set(VARIABLE.findall(page(service))) - allowed)
    assert unknown == [], f"docs/{service}.md names variables {service} does not read: {unknown}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_settings_table_has_each_own_variable_once_with_its_default(service: str) -> None:
    rows = SETTINGS_ROW.findall(page(service))
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), f"docs/{service}.md: a variable has two rows"
    fields = own_fields(settings_of(service))
    assert sorted(names) == sorted(env_name(f.name) for f in fields)
    shown = {name: listed(cell.strip().strip("`")) for name, cell in rows}
    wrong = {
        env_name(f.name): (shown[env_name(f.name)], shown_default(f))
        for f in fields
        if shown[env_name(f.name)] != shown_default(f)
    }
    assert wrong == {}, f"docs/{service}.md: (page, code) defaults differ: {wrong}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_metric_of_the_service_is_on_its_page(service: str) -> None:
    defined = metrics_in([ROOT / "services" / service / "metrics.py"])
    assert defined, f"no metric found in services/{service}/metrics.py"
    missing = sorted(m for m in defined if f"`{m}`" not in page(service))
    assert missing == [], f"docs/{service}.md does not name {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_metric_on_the_page_exists(service: str) -> None:
    defined = metrics_in([ROOT / "services" / service / "metrics.py"]) | shared_metrics()
    unknown = sorted(set(METRIC.findall(page(service))) - defined)
    assert unknown == [], f"docs/{service}.md names metrics no code defines: {unknown}"
