"""What the simulated WeChat enforces: every number of WECHAT.md §7–§10, configurable.

The defaults are WeChat's documented (or measured) values; :data:`DEMO` holds the demo
credentials that ``wxkf sim`` and ``wxkf demo`` use when no ``WXKF_*`` variable is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import msgspec

# Demo credentials: public, documented, and only ever accepted by the simulator.
DEMO_APPID = "wx5f2a0c4e9b7d1386"
DEMO_SECRET = "0c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f"  # noqa: S105 - public demo value
DEMO_GH_ID = "gh_5f2a0c4e9b7d"
DEMO_TOKEN = "wxkfdemotoken"  # noqa: S105 - public demo value
DEMO_AES_KEY = "wxkfDemoEncodingAESKey0123456789abcdefghijk"
DEMO_OPENID = "oWxkfDemoUser0000000000000001"


class SimConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The simulated mini program's credentials and the rules WeChat applies to it."""

    appid: str = DEMO_APPID
    secret: str = DEMO_SECRET
    gh_id: str = DEMO_GH_ID
    """The mini program's original id: ToUserName of every push."""

    # access_token (§10)
    token_ttl_s: float = 7200.0
    token_overlap_s: float = 300.0
    """How long /cgi-bin/token keeps the previous token alive after issuing a new one."""
    stable_rotate_before_s: float = 300.0
    """stable_token hands out a new token once the current one has less than this left."""
    force_refresh_daily: int = 20
    force_refresh_spacing_s: float = 30.0
    force_refresh_overlap_s: float = 30.0
    """How long a token replaced by ``force_refresh`` stays valid (WECHAT.md §15.9: WeChat
    documents that a leaked token dies only after a second forced call 30 s later, so the
    replaced token lives on for that spacing; any older one dies at once)."""

    # reply window (§7.1)
    window_message_count: int = 5
    window_message_s: float = 48 * 3600.0
    window_enter_count: int = 2
    window_enter_s: float = 60.0

    # content (§7.2)
    text_max_bytes: int = 2048
    bad_type_errcode: Literal[40008, 45162] = 40008
    """Older accounts answer an unknown msgtype with 40008, newer ones with 45162."""
    known_users_only: bool = False
    """When true, sending to an openid that never wrote or entered the chat gives 40003
    (a stranger to this mini program); otherwise 45015, as for any closed window."""

    # typing (§8)
    typing_exchange_s: float = 30.0
    typing_duration_s: float = 15.0

    # temporary media (§9)
    media_max_bytes: int = 2 * 1024 * 1024
    media_ttl_s: float = 3 * 86400.0

    max_body_bytes: int = 1024 * 1024
    """Cap on JSON request bodies (send, typing, stable_token)."""

    def __post_init__(self) -> None:
        for name in (
            "token_ttl_s",
            "window_message_s",
            "window_enter_s",
            "typing_duration_s",
            "media_ttl_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"SimConfig.{name} must be positive")
        for name in (
            "token_overlap_s",
            "stable_rotate_before_s",
            "force_refresh_spacing_s",
            "force_refresh_overlap_s",
            "typing_exchange_s",
            "window_message_count",
            "window_enter_count",
            "force_refresh_daily",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"SimConfig.{name} must not be negative")
        for name in ("text_max_bytes", "media_max_bytes", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"SimConfig.{name} must be at least 1")
        if self.stable_rotate_before_s >= self.token_ttl_s:
            raise ValueError("SimConfig.stable_rotate_before_s must be below token_ttl_s")
        if not self.appid or not self.secret:
            raise ValueError("SimConfig.appid and SimConfig.secret must not be empty")


def from_env(environ: Mapping[str, str] | None = None, **overrides: object) -> SimConfig:
    """The demo config, with the app's credentials from ``WXKF_APPID``/``WXKF_APP_SECRET``
    (and ``WXKF_GH_ID``) when they are set; ``overrides`` win."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for field, var in (
        ("appid", "WXKF_APPID"),
        ("secret", "WXKF_APP_SECRET"),
        ("gh_id", "WXKF_GH_ID"),
    ):
        if env.get(var):
            raw[field] = env[var]
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return msgspec.convert(raw, SimConfig, strict=False)
