"""access_token issuing and checking as WeChat does it (WECHAT.md §10).

The two endpoints keep separate books: a refresh through one never touches the tokens of
the other. A token that reached its natural end answers 42001; one cut short because a
newer one replaced it answers 40001 ("not latest"), as WeChat does.

``force_refresh`` beyond the daily limit answers 45009 (WeChat's quota errcode); a forced call
sooner than the spacing after the last one returns the current token unchanged.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Literal

from services.simulator.config import SimConfig
from services.simulator.errors import ApiError

Endpoint = Literal["token", "stable_token"]
StableOutcome = Literal["same", "new", "rotated", "forced", "force_ignored"]

# China Standard Time: the day WeChat's daily limits count in.
_CST_OFFSET_S = 8 * 3600
_SECRET_SHAPE = re.compile(r"[0-9a-f]{32}")


@dataclass(slots=True)
class TokenRecord:
    value: str
    endpoint: Endpoint
    issued_at: float
    expires_at: float
    natural: bool = True
    """False once a newer token cut this one's life short."""

    def cut(self, at: float) -> None:
        if at < self.expires_at:
            self.expires_at = at
            self.natural = False


def check_credentials(config: SimConfig, *, grant_type: str, appid: str, secret: str) -> None:
    """The checks both token endpoints make, in WeChat's order."""
    if grant_type != "client_credential":
        raise ApiError(40002)
    if not appid:
        raise ApiError(41002)
    if appid != config.appid:
        raise ApiError(40013)
    if not secret:
        raise ApiError(41004)
    if secret != config.secret:
        # A secret that has the shape of one but is not ours is a wrong credential (40001);
        # anything else is not a secret at all (40125), as WeChat tells the two apart.
        raise ApiError(40001 if _SECRET_SHAPE.fullmatch(secret) else 40125)


def _new_token() -> str:
    # WeChat's tokens are long opaque strings (callers must store >= 512 characters).
    return secrets.token_urlsafe(120)


class TokenBook:
    """Every token ever handed out (until reset), and the rules for new ones."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.records: dict[str, TokenRecord] = {}
        self.current: dict[Endpoint, TokenRecord] = {}
        self.forced_per_day: dict[int, int] = {}
        self.last_forced_at: float | None = None

    def _issue(self, endpoint: Endpoint, now: float) -> TokenRecord:
        self._prune(now)
        rec = TokenRecord(
            value=_new_token(),
            endpoint=endpoint,
            issued_at=now,
            expires_at=now + self.config.token_ttl_s,
        )
        self.records[rec.value] = rec
        self.current[endpoint] = rec
        return rec

    def _prune(self, now: float) -> None:
        # Keep dead tokens a day so a caller still gets 40001/42001 (not "unknown") for them.
        horizon = now - 86400.0
        for value in [v for v, r in self.records.items() if r.expires_at < horizon]:
            del self.records[value]

    def _alive(self, endpoint: Endpoint, now: float) -> list[TokenRecord]:
        return [r for r in self.records.values() if r.endpoint == endpoint and r.expires_at > now]

    def issue(self, now: float) -> tuple[str, int]:
        """``/cgi-bin/token``: a new token; the previous ones live on for the overlap only."""
        for rec in self._alive("token", now):
            rec.cut(now + self.config.token_overlap_s)
        rec = self._issue("token", now)
        return rec.value, int(self.config.token_ttl_s)

    def stable(self, now: float, *, force: bool) -> tuple[str, int, StableOutcome]:
        """``/cgi-bin/stable_token``: the current token, rotated near its end or on force."""
        cur = self.current.get("stable_token")
        if force:
            day = int((now + _CST_OFFSET_S) // 86400)
            if self.forced_per_day.get(day, 0) >= self.config.force_refresh_daily:
                raise ApiError(45009)
            too_soon = (
                self.last_forced_at is not None
                and now - self.last_forced_at < self.config.force_refresh_spacing_s
            )
            if too_soon and cur is not None and cur.expires_at > now:
                # WeChat: calls closer than 30 s apart "不会刷新" — the current token comes back.
                return cur.value, int(cur.expires_at - now), "force_ignored"
            self.forced_per_day[day] = self.forced_per_day.get(day, 0) + 1
            self.last_forced_at = now
            for rec in self._alive("stable_token", now):
                if rec is cur:
                    rec.cut(now + self.config.force_refresh_overlap_s)
                else:
                    rec.cut(now)
            rec = self._issue("stable_token", now)
            return rec.value, int(self.config.token_ttl_s), "forced"
        if cur is not None and cur.expires_at - now > self.config.stable_rotate_before_s:
            return cur.value, int(cur.expires_at - now), "same"
        # Rotation keeps the old token valid until its own end: both work in the last minutes.
        outcome: StableOutcome = "rotated" if cur is not None else "new"
        rec = self._issue("stable_token", now)
        return rec.value, int(self.config.token_ttl_s), outcome

    def check(self, token: str | None, now: float) -> TokenRecord:
        """The token check every API call makes first."""
        if not token:
            raise ApiError(41001)
        rec = self.records.get(token)
        if rec is None:
            raise ApiError(40001)
        if now >= rec.expires_at:
            raise ApiError(42001 if rec.natural else 40001)
        return rec
