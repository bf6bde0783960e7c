"""Router settings: ``WXKF_*`` variables, checked before a port is bound."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from libs.common.settings import CommonSettings

SHIPPED_RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
"""The example rules, used when ``WXKF_RULES`` is not set (the demo, ``wxkf run all``)."""


class RouterSettings(CommonSettings, frozen=True, kw_only=True):
    RETIRED: ClassVar[dict[str, str]] = {
        "WXKF_ROUTER_PORT": "the router serves nothing but the internal port "
        "(WXKF_INTERNAL_PORT); unset it",
    }
    rules: str = ""
    """Path of the rules file (a mounted ConfigMap in Kubernetes); unset: the shipped example."""
    decision_budget_ms: int = 2000
    """How long ingress waits for a decision (the same variable ingress reads); a decision
    made after it is still carried out, and marked and counted as late."""
    router_session_ttl_s: float = 7 * 24 * 3600.0
    """A user's session (handed to an agent at, last day seen, tags) expires this long after
    its last change."""
    router_plan_ttl_s: float = 7 * 24 * 3600.0
    """How long a handled event id is remembered, so its redelivery does nothing twice; cover
    the time a dead letter may wait before it is replayed."""
    router_rules_poll_s: float = 2.0
    """How often the rules file is checked for changes; 0 = only on SIGHUP."""
    router_prefetch: int = 64
    """Events handled concurrently by one router process."""

    def __post_init__(self) -> None:
        # A ValueError naming the field becomes settings.load's one-line error naming the
        # variable: " - at `$.field`" is msgspec's way of saying which field, which load reads.
        for field, problem in _problems(self):
            raise ValueError(f"{problem} - at `$.{field}`")

    @property
    def rules_path(self) -> Path:
        return Path(self.rules) if self.rules else SHIPPED_RULES


def _problems(s: RouterSettings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if s.decision_budget_ms <= 0:
        problems.append(("decision_budget_ms", "must be positive"))
    for name in ("router_session_ttl_s", "router_plan_ttl_s"):
        if getattr(s, name) <= 0:
            problems.append((name, "must be positive"))
    if s.router_rules_poll_s < 0:
        problems.append(("router_rules_poll_s", "must be 0 (off) or positive"))
    if s.router_prefetch < 1:
        problems.append(("router_prefetch", "must be at least 1"))
    return problems
