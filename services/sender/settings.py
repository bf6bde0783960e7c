"""Sender settings: ``WXKF_*`` variables, checked before a port is bound.

WeChat's documents disagree on several numbers (WECHAT.md §7.1, §8, §15), so each rule the
sender applies is a setting whose default is the current documented value.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from libs.common.settings import Secret, WeChatApiSettings
from libs.common.topology import SENDER_COMMANDS, QueueSpec
from libs.common.wechat.api import TYPING_PATHS

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]

_RATE_LIMITED_PAUSE_S = 60.0
"""WeChat's 45011 is a limit per minute."""

MSGTYPES = ("text", "image", "link", "miniprogrampage", "typing")


class SenderSettings(WeChatApiSettings, frozen=True, kw_only=True):
    sender_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8082

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
    typing_path: str = TYPING_PATHS[0]
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
    """First retry delay; doubles per attempt up to ``retry_cap_s`` (delay queues)."""
    retry_cap_s: Positive = 300.0
    """Longest retry delay (the defaults' 7 doubling delays end at 64 s, below it)."""
    rate_limited_pause_s: Positive | None = None
    """Wait after WeChat's 45011 (minute-level frequency limit). Unset: 60 s, or the longest
    retry delay where that is shorter; a value set must not exceed the longest retry delay,
    since the wait is spent in one of the delay queues."""
    ambiguous_retry: str = ""
    """Comma-separated message types sent again after an ambiguous failure (a timeout or a
    dropped connection after WeChat may have accepted): at least once, so maybe twice. Every
    other type is reported failed instead: at most once, so maybe lost, never twice."""
    inflight_stale_s: Positive = 60.0
    """A command marked in flight for longer than this was abandoned mid-call (the replica
    died): its fate is unknown, which is an ambiguous failure."""
    ledger_ttl_s: Positive = 3 * 86400.0
    """How long a command's outcome is remembered against redelivery."""
    prefetch: Annotated[int, msgspec.Meta(ge=1)] = 32
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
        return msgspec.structs.replace(
            SENDER_COMMANDS, retry_base_s=self.retry_base_s, retry_cap_s=self.retry_cap_s
        )

    def rate_limited_pause(self) -> float:
        """The wait after 45011 (see ``rate_limited_pause_s``)."""
        if self.rate_limited_pause_s is not None:
            return self.rate_limited_pause_s
        return min(_RATE_LIMITED_PAUSE_S, self.commands_queue().delay_steps()[-1])

    @property
    def ambiguous_retried(self) -> frozenset[str]:
        return frozenset(_split(self.ambiguous_retry))


def _split(raw: str) -> list[str]:
    return [part.strip().lower() for part in raw.split(",") if part.strip()]


def _problems(s: SenderSettings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    unknown = [t for t in _split(s.ambiguous_retry) if t not in MSGTYPES]
    if unknown:
        problems.append(
            ("ambiguous_retry", f"unknown message types {unknown}; known: {', '.join(MSGTYPES)}")
        )
    if not s.typing_path.startswith("/"):
        problems.append(("typing_path", "must start with '/'"))
    if s.retry_cap_s < s.retry_base_s:
        problems.append(("retry_cap_s", "must not be below WXKF_RETRY_BASE_S"))
    else:
        longest = s.commands_queue().delay_steps()[-1]
        if s.rate_limited_pause_s is not None and s.rate_limited_pause_s > longest:
            # A pause is spent in one of the delay queues: a longer one would be cut short.
            problems.append(
                (
                    "rate_limited_pause_s",
                    f"must not exceed the longest retry delay, {longest:g} s with "
                    "WXKF_RETRY_BASE_S and WXKF_RETRY_CAP_S as set",
                )
            )
    if s.media_url and not s.media_url.startswith(("http://", "https://")):
        problems.append(("media_url", "must be an http:// or https:// URL"))
    if not s.wechat_api_base.startswith(("http://", "https://")):
        problems.append(("wechat_api_base", "must be an http:// or https:// URL"))
    if s.wechat_timeout_s <= 0:
        problems.append(("wechat_timeout_s", "must be positive"))
    return problems
