"""Ingress settings: ``WXKF_*`` variables of the push endpoint, checked before a port is bound."""

from __future__ import annotations

from typing import Literal

from libs.common.settings import CommonSettings, Secret
from libs.common.wechat.crypto import aes_key
from libs.common.wechat.errors import BadAesKey

PushMode = Literal["plain", "compatible", "safe"]
PushFormat = Literal["xml", "json", "auto"]


class IngressSettings(CommonSettings, frozen=True, kw_only=True):
    token: Secret
    """The Token of WeChat's push configuration: the key of every signature."""
    aes_key: Secret | None = None
    """The 43-character EncodingAESKey; needed by the compatible and safe modes."""
    push_mode: PushMode | None = None
    """As chosen in WeChat's console; unset means ``safe`` with an AES key, else ``plain``."""
    push_format: PushFormat = "auto"
    """``xml`` or ``json`` as chosen in WeChat's console; ``auto`` sniffs each body."""
    push_path: str = "/wechat"
    ingress_port: int = 8080
    max_body_bytes: int = 256 * 1024
    """A customer-service push is a few KB at most, three times that in compatible mode."""
    max_push_age_s: int = 600
    """Refuse pushes whose signed timestamp is older than this (replay window); 0 = off."""
    decision_budget_ms: int = 2000
    """How long a user message waits for the router's decision; WeChat gives up after 5 s."""
    dedupe_pending_ttl_s: float = 8.0
    """How long a claim outlives an attempt that died before finishing it: longer than a
    first attempt lasts (the publish confirm bound, the decision budget and the wait margin),
    shorter than WeChat's retries go on (about 10 s), so that one of them publishes the push."""
    dedupe_ttl_s: float = 1800.0
    """How long an answered push is remembered; must outlive the replay window."""
    dedupe_wait_margin_ms: int = 1000
    """A retry that finds its push pending waits the decision budget plus this margin."""
    max_in_flight: int = 2000
    """Pushes one process handles at once; beyond, 503 at once (WeChat sends them again).
    A push takes its place only once its body is read, so a slow client never holds one."""
    read_timeout_s: float = 3.0
    """The time a push may take to arrive, headers and body together, from its first byte.
    WeChat sends a push of a few KB at once, and waits 5 s for the answer; past this, the
    connection is closed (headers) or the push answered 408 (body)."""
    idle_timeout_s: float = 15.0
    """How long an idle connection (new, or kept alive after an answer) may wait for the
    first byte of its next request."""
    max_connections_per_source: int = 512
    """Connections one address may hold open at once; 0: no cap. WeChat pushes from a few
    addresses, each answered within the decision budget, so this is far above what one of them
    holds; behind a proxy that hides clients' addresses, set 0 and cap at the proxy."""
    publish_confirm_ms: int = 1500
    """How long a push waits for the broker to confirm its event before it is kept in the
    spool instead (and answered ``success`` without a transfer decision)."""
    spool_limit: int = 100_000
    """Most events the spool keeps while the broker is away; beyond, 503. 0: no spool (a push
    the broker does not confirm is answered 503, and WeChat sends it again)."""

    def __post_init__(self) -> None:
        # A ValueError here becomes settings.load's one-line error naming the variable; the
        # " - at `$.field`" suffix is msgspec's own way of naming a field, which load reads.
        for field, problem in _problems(self):
            raise ValueError(f"{problem} - at `$.{field}`")

    @property
    def mode(self) -> PushMode:
        """The effective push mode."""
        if self.push_mode is not None:
            return self.push_mode
        return "safe" if self.aes_key else "plain"


def _problems(s: IngressSettings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not s.token:
        problems.append(("token", "must not be empty"))
    if s.push_mode in ("compatible", "safe") and not s.aes_key:
        problems.append(("aes_key", f"is required when WXKF_PUSH_MODE is {s.push_mode}"))
    if s.aes_key:
        try:
            aes_key(s.aes_key)
        except BadAesKey as exc:
            problems.append(("aes_key", exc.detail))
    if not s.push_path.startswith("/"):
        problems.append(("push_path", "must start with '/'"))
    if not 0 <= s.ingress_port < 65536:
        problems.append(("ingress_port", "must be in 0..65535 (0: any free port)"))
    if s.max_body_bytes < 1024:
        problems.append(("max_body_bytes", "must be at least 1024"))
    if s.max_push_age_s < 0:
        problems.append(("max_push_age_s", "must be 0 (off) or positive"))
    if not 0 < s.decision_budget_ms < 5000:
        problems.append(
            ("decision_budget_ms", "must be in 1..4999: WeChat drops the push after 5 s")
        )
    first_attempt_ms = s.publish_confirm_ms + s.decision_budget_ms + s.dedupe_wait_margin_ms
    if s.dedupe_pending_ttl_s * 1000 <= first_attempt_ms:
        problems.append(
            (
                "dedupe_pending_ttl_s",
                "must be longer than the publish confirm bound, the decision budget and its "
                "margin together",
            )
        )
    if s.dedupe_ttl_s <= s.max_push_age_s:
        problems.append(
            (
                "dedupe_ttl_s",
                "must be longer than WXKF_MAX_PUSH_AGE_S, or a push replayed inside the window "
                "would be taken for a new one",
            )
        )
    if s.dedupe_wait_margin_ms < 0:
        problems.append(("dedupe_wait_margin_ms", "must not be negative"))
    if not 0 < s.read_timeout_s <= 30:
        problems.append(("read_timeout_s", "must be in (0, 30]: WeChat gives up after 5 s"))
    if s.idle_timeout_s <= 0:
        problems.append(("idle_timeout_s", "must be positive"))
    if s.max_connections_per_source < 0:
        problems.append(("max_connections_per_source", "must be 0 (no cap) or positive"))
    if s.max_in_flight < 1:
        problems.append(("max_in_flight", "must be at least 1"))
    if s.publish_confirm_ms < 1 or s.publish_confirm_ms + s.decision_budget_ms >= 5000:
        problems.append(
            (
                "publish_confirm_ms",
                "must be at least 1, and with WXKF_DECISION_BUDGET_MS under WeChat's 5 s",
            )
        )
    if s.spool_limit < 0:
        problems.append(("spool_limit", "must be 0 (no spool) or positive"))
    return problems
