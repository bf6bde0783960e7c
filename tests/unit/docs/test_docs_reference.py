"""The architecture, bus, operations and service pages against the code they describe.

Names move in the code; these pages must move with them: every exchange, queue, header and
schema tag on the bus page, every Redis key on the architecture page, every alert on the
operations page, and every link of these pages to a file or heading that exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
import yaml

from libs.common import bus, schemas, topology
from libs.common.wechat.token import token_key
from services.ingress.dedupe import key_for
from services.media import records
from services.router import plans, sessions
from services.sender import ledger, order, typing_rules, windows

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
PAGES = (
    "architecture.md",
    "bus.md",
    "operations.md",
    "wechat-setup.md",
    "ingress.md",
    "sender.md",
    "media.md",
    "deploy.md",
)


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_the_bus_page_names_every_exchange_queue_and_header() -> None:
    text = page("bus.md")
    for name in (topology.EVENTS, topology.COMMANDS, topology.RETRY, topology.DEAD):
        assert f"`{name}`" in text
    for header in (
        bus.ATTEMPT_HEADER,
        bus.DEATH_REASON_HEADER,
        bus.ROUTING_KEY_HEADER,
        bus.REQUEST_ID_HEADER,
    ):
        assert f"`{header}`" in text
    for spec in topology.ALL_QUEUES:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{spec.name}` |"))
        assert f"| {spec.max_attempts} |" in row, row
        assert all(f"`{b}`" in row for b in spec.bindings), row
    assert f"`x-delivery-limit: {topology.ROUTER_EVENTS.delivery_limit}`" in text


def test_the_bus_page_names_every_message_type() -> None:
    text = page("bus.md")
    tags = {cls.__struct_config__.tag for cls in get_args(schemas.AnyMessage)}
    for tag in tags:
        assert f"`{tag}`" in text or f"`{tag}." in text, tag


@pytest.mark.parametrize(
    "key",
    [
        key_for("ID"),
        sessions.key("ID"),
        plans.key("ID"),
        windows.window_key("ID", "ID"),
        ledger.ledger_key("ID"),
        order.step_key("ID", 0),
        typing_rules.chat_key("ID", "ID"),
        token_key("ID"),
        records.sha_key("ID"),
        records.id_key("ID"),
    ],
)
def test_every_redis_key_is_on_the_architecture_page(key: str) -> None:
    stem = key.split("ID")[0]
    assert f"`{stem}" in page("architecture.md"), stem


def test_every_alert_is_explained_with_its_severity() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "wxkf-alerts.yaml").read_text())
    alerts = {
        rule["alert"]: rule["labels"]["severity"]
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert alerts
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in page("operations.md").splitlines()
        if line.startswith("| Wxkf")
    }
    assert rows == alerts


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {_slug(m.group(1)) for line in lines if (m := re.match(r"#+\s+(.*)", line))}


@pytest.mark.parametrize("name", PAGES)
def test_every_link_leads_somewhere(name: str) -> None:
    source = DOCS / name
    for link in re.findall(r"\]\(([^)\s]+)\)", page(name)):
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        target = (source.parent / path).resolve() if path else source
        assert target.exists(), f"{name}: {link}"
        if anchor and target.suffix == ".md":
            assert anchor in _anchors(target), f"{name}: {link}"
