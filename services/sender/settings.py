"""Sender settings: ``WXKF_*`` variables, checked before a port is bound.

WeChat's documents disagree on several numbers (WECHAT.md §7.1, §8, §15), so each rule the
sender applies is a setting whose default is the current documented value.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from libs.common.settings import Secret, WeChatApiSettings
from libs.common.topology import SENDER_COMMANDS, QueueSpec

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]

_RATE_LIMITED_PAUSE_S = 60.0
"""WeChat's 45011 is a limit per minute."""

MsgType = Literal["text", "image", "link", "miniprogrampage", "typing"]
TypingPath = Literal["/cgi-bin/message/custom/typing", "/cgi-bin/message/custom/business/typing"]
"""WeChat documents both (WECHAT.md §8): the older mini program documents and the SDKs call the
first, the newer OpenApiDoc says mini programs use the second."""


class SenderSettings(WeChatApiSettings, frozen=True, kw_only=True):
    RETIRED: ClassVar[dict[str, str]] = {
        "WXKF_SENDER_PORT": "the sender serves nothing but the internal port "
        "(WXKF_INTERNAL_PORT); unset it",
        "WXKF_RETRY_CAP_S": "no retry delay reached it; the delays double from "
        "WXKF_RETRY_BASE_S; unset it",
        "WXKF_PREFETCH": "it is WXKF_SENDER_PREFETCH now, as the router's is "
        "WXKF_ROUTER_PREFETCH; rename it",
    }

    # -- the reply window (WECHAT.md §7.1) ----------------------------------------------------
    window_message_count: Count = 5
    """Messages allowed after a user message..."""
    window_message_s: Positive = 48 * 3600.0
    """...within this many seconds of its CreateTime."""
    window_enter_count: Count = 2
    """Messages allowed after the user enters the chat (older docs: 1)..."""
    window_enter_s: Positive = 60.0
    """...within this many seconds of the event's CreateTime."""
    window_grace_s: NonNegative = 3.0
    """A command refused by the window is tried again while younger than this: the user
    message that opens its window may still be on its way to the sender (another queue)."""

    # -- typing (WECHAT.md §8) ---------------------------------------------------------------
    typing_path: TypingPath = "/cgi-bin/message/custom/typing"
    """Where typing is sent. WeChat documents both paths (the older mini program pages and the
    SDKs the first, the newer OpenApiDoc the second for mini programs)."""
    typing_exchange_s: Positive = 30.0
    """Typing needs a message exchanged with the user within this many seconds."""
    typing_duration_s: Positive = 15.0

    # -- pace and retries --------------------------------------------------------------------
    send_rate_per_s: NonNegative = 100.0
    """Calls to WeChat per second, shared by every replica (0: no limit)."""
    send_rate_burst: Annotated[int, msgspec.Meta(ge=1)] = 50
    max_pace_wait_s: NonNegative = 1.0
    """Longest wait for the rate limit inside one delivery; beyond it the command is retried
    later through the bus instead of holding its place."""
    retry_base_s: Positive = 1.0
    """First retry delay; it doubles for each of the 7 retries (each delay is a delay queue:
    1, 2, 4 … 64 s by default), and no delay exceeds 300 s."""
    rate_limited_pause_s: Positive | None = None
    """Wait after WeChat's 45011 (minute-level frequency limit). Unset: 60 s, or the longest
    retry delay where that is shorter; a value set must not exceed the longest retry delay,
    since the wait is spent in one of the delay queues."""
    ambiguous_retry: frozenset[MsgType] = frozenset()
    """Message types sent again after an ambiguous failure (a timeout or a dropped connection
    after WeChat may have accepted): at least once, so maybe twice. Every other type is
    reported failed instead: at most once, so maybe lost, never twice."""
    inflight_stale_s: Positive = 60.0
    """A command marked in flight for longer than this was abandoned mid-call (the replica
    died): its fate is unknown, which is an ambiguous failure."""
    ledger_ttl_s: Positive = 3 * 86400.0
    """How long a command's outcome is remembered against redelivery."""
    sender_prefetch: Annotated[int, msgspec.Meta(ge=1)] = 32
    """Deliveries in flight per queue in one sender process."""
    http_connections: Annotated[int, msgspec.Meta(ge=1)] = 64

    # -- the media service (images by asset name) --------------------------------------------
    media_url: str = ""
    """Base URL of the media service, e.g. ``http://wxkf-media:8084``; unset: no assets."""
    internal_token: Secret | None = None
    """Bearer token of the media service's internal API (when it requires one)."""

    def __post_init__(self) -> None:
        # A ValueError ending in msgspec's " - at `$.field`" becomes settings.load's one-line
        # error naming the variable.
        for field, problem in _problems(self):
            raise ValueError(f"{problem} - at `$.{field}`")

    def commands_queue(self) -> QueueSpec:
        """The commands queue with the configured backoff (each delay is a delay queue)."""
        return msgspec.structs.replace(SENDER_COMMANDS, retry_base_s=self.retry_base_s)

    def rate_limited_pause(self) -> float:
        """The wait after 45011 (see ``rate_limited_pause_s``)."""
        if self.rate_limited_pause_s is not None:
            return self.rate_limited_pause_s
        return min(_RATE_LIMITED_PAUSE_S, self.commands_queue().delay_steps()[-1])

    @property
    def ambiguous_retried(self) -> frozenset[str]:
        return frozenset(self.ambiguous_retry)


def _problems(s: SenderSettings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if s.retry_base_s > SENDER_COMMANDS.retry_cap_s:
        problems.append(
            (
                "retry_base_s",
                f"must not exceed the longest delay, {SENDER_COMMANDS.retry_cap_s:g} s",
            )
        )
    else:
        longest = s.commands_queue().delay_steps()[-1]
        if s.rate_limited_pause_s is not None and s.rate_limited_pause_s > longest:
            # A pause is spent in one of the delay queues: a longer one would be cut short.
            problems.append(
                (
                    "rate_limited_pause_s",
                    f"must not exceed the longest retry delay, {longest:g} s with "
                    "WXKF_RETRY_BASE_S as set",
                )
            )
    if s.media_url and not s.media_url.startswith(("http://", "https://")):
        problems.append(("media_url", "must be an http:// or https:// URL"))
    if not s.wechat_api_base.startswith(("http://", "https://")):
        problems.append(("wechat_api_base", "must be an http:// or https:// URL"))
    if s.wechat_timeout_s <= 0:
        problems.append(("wechat_timeout_s", "must be positive"))
    return problems
