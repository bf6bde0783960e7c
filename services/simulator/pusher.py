"""The push side of WeChat: messages and events POSTed to a developer's URL, as WeChat does.

A :class:`Pusher` builds each push with the project's codec (signed, encrypted per mode, XML
or JSON), tells the simulated API that the user wrote (which opens the reply window, as on
WeChat), POSTs it with WeChat's 5 s deadline, resends the very same request when the answer
is slow, not 200 or not a valid passive reply (3 attempts in all by default, WECHAT.md §6
and §15.4), and reads the passive reply the way WeChat does. :data:`WECHAT_RETRIES` is the
pattern WeChat's servers follow in production: 4 attempts in all, about 5 s apart, after
which WeChat forgets the push.

    async with Pusher("http://127.0.0.1:8080/wechat", aes_key=KEY, sim=state) as pusher:
        result = await pusher.text("你好")
        assert result.outcome == "success"
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from types import TracebackType
from typing import Any, Literal, TypeAlias

import aiohttp
import msgspec

from libs.common.wechat import codec, replies
from libs.common.wechat.codec import Format, Message
from libs.common.wechat.crypto import Cipher
from libs.common.wechat.errors import WeChatError
from libs.common.wechat.push import Mode, build_push
from libs.common.wechat.replies import ReplyKind
from libs.common.wechat.signature import sign
from services.simulator.config import DEMO_APPID, DEMO_GH_ID, DEMO_OPENID, DEMO_TOKEN
from services.simulator.errors import ApiError, PushError
from services.simulator.images import tiny_png
from services.simulator.state import SimState
from services.simulator.users import UserAction

USER_NOTICE = "该小程序客服暂时无法提供服务，请稍后再试"
"""What the user sees when no valid answer came back (WECHAT.md §6)."""

Outcome: TypeAlias = Literal["success", "empty", "transfer_customer_service", "invalid", "failed"]
ACCEPTED: frozenset[str] = frozenset({"success", "empty", "transfer_customer_service"})

# MsgIds: unique per process, above 2**53 like WeChat's (a float cannot hold them exactly),
# from a random start so that several processes hardly ever collide.
_msg_ids = itertools.count(2**60 + secrets.randbelow(2**61))


def new_msg_id() -> int:
    return next(_msg_ids)


class RetryPattern(msgspec.Struct, frozen=True, kw_only=True):
    """How WeChat resends one push: ``attempts`` in all, each cut off after ``timeout_s``, the
    next starting no sooner than ``interval_s`` after the one before started."""

    attempts: int
    timeout_s: float = 5.0
    interval_s: float = 0.0


WECHAT_RETRIES = RetryPattern(attempts=4, timeout_s=5.0, interval_s=5.0)
"""WeChat in production: the push and 3 retries about 5 s apart; then it gives up."""


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """What one attempt got back."""

    attempt: int
    status: int | None = None
    """The HTTP status; None when no answer came (``error`` says why)."""
    error: str | None = None
    """``timeout`` or ``connection: <what>`` when there was no HTTP answer."""
    reply: ReplyKind | None = None
    """How WeChat read the body: success, empty, transfer_customer_service or invalid."""
    reason: str = ""
    """Why the answer was invalid."""
    latency_ms: float = 0.0
    body: bytes = b""
    """The first KiB of the answer, for diagnosis."""


class PushResult(msgspec.Struct, frozen=True, kw_only=True):
    openid: str
    msg_type: str
    event: str | None = None
    msg_id: int | None = None
    create_time: int
    attempts: int
    answers: list[Answer]
    outcome: Outcome
    user_notice: str | None = None
    """Set when WeChat would show the user its "cannot serve" notice."""
    latency_ms: float
    """From the first attempt to the final answer (or giving up)."""

    @property
    def ok(self) -> bool:
        return self.outcome in ACCEPTED

    @property
    def transferred(self) -> bool:
        return self.outcome == "transfer_customer_service"

    @property
    def ack_latency_ms(self) -> float | None:
        """The latency of the attempt that was accepted, if one was."""
        return self.answers[-1].latency_ms if self.ok else None


class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    status: int | None
    echostr: str
    body: bytes = b""
    error: str | None = None


class Pusher:
    """Pushes to one URL as one mini program's WeChat."""

    def __init__(
        self,
        url: str,
        *,
        token: str = DEMO_TOKEN,
        appid: str = DEMO_APPID,
        aes_key: str | None = None,
        mode: Mode | None = None,
        fmt: Format = "xml",
        sim: str | SimState | None = None,
        gh_id: str = DEMO_GH_ID,
        openid: str = DEMO_OPENID,
        timeout_s: float = 5.0,
        attempts: int = 3,
        retry_interval_s: float = 0.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        mode = mode or ("safe" if aes_key else "plain")
        if mode not in ("plain", "compatible", "safe"):
            raise PushError(f"mode must be plain, compatible or safe, not {mode!r}")
        if fmt not in ("xml", "json"):
            raise PushError(f"fmt must be xml or json, not {fmt!r}")
        if mode != "plain" and not aes_key:
            raise PushError(f"the {mode} mode needs an EncodingAESKey (aes_key)")
        if not token:
            raise PushError("the token must not be empty")
        if attempts < 1 or timeout_s <= 0:
            raise PushError("attempts must be at least 1 and timeout_s positive")
        if retry_interval_s < 0:
            raise PushError("retry_interval_s must not be negative")
        try:
            self.cipher = Cipher.from_key(aes_key, appid) if aes_key else None
        except WeChatError as exc:
            raise PushError(f"bad EncodingAESKey or appid: {exc}") from None
        self.url = url
        self.token = token
        self.appid = appid
        self.mode: Mode = mode
        self.fmt: Format = fmt
        self.sim = sim
        self.gh_id = gh_id
        self.openid = openid
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.attempts = attempts
        self.retry_interval_s = retry_interval_s
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> Pusher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def now(self) -> float:
        return self.sim.now() if isinstance(self.sim, SimState) else time.time()

    # -- one method per message and event ------------------------------------------------------

    async def text(
        self, content: str, *, openid: str | None = None, msg_id: int | None = None
    ) -> PushResult:
        return await self.push(
            codec.TextMessage(
                to_user=self.gh_id,
                from_user=openid or self.openid,
                create_time=int(self.now()),
                content=content,
                msg_id=msg_id or new_msg_id(),
            )
        )

    async def image(
        self,
        data: bytes | None = None,
        *,
        media_id: str | None = None,
        pic_url: str = "",
        openid: str | None = None,
        msg_id: int | None = None,
    ) -> PushResult:
        """An image the user sends; without ``media_id`` the image (``data``, or a tiny PNG)
        is registered with the simulated API first, so its MediaId can be downloaded."""
        if media_id is None:
            media_id, pic_url = await self.register_media(data or tiny_png())
        return await self.push(
            codec.ImageMessage(
                to_user=self.gh_id,
                from_user=openid or self.openid,
                create_time=int(self.now()),
                pic_url=pic_url,
                media_id=media_id,
                msg_id=msg_id or new_msg_id(),
            )
        )

    async def miniprogrampage(
        self,
        *,
        title: str,
        page_path: str,
        app_id: str | None = None,
        thumb_url: str = "",
        thumb_media_id: str = "",
        openid: str | None = None,
        msg_id: int | None = None,
    ) -> PushResult:
        return await self.push(
            codec.MiniProgramPageMessage(
                to_user=self.gh_id,
                from_user=openid or self.openid,
                create_time=int(self.now()),
                msg_id=msg_id or new_msg_id(),
                title=title,
                app_id=app_id or self.appid,
                page_path=page_path,
                thumb_url=thumb_url,
                thumb_media_id=thumb_media_id,
            )
        )

    async def enter_session(
        self, session_from: str = "", *, openid: str | None = None
    ) -> PushResult:
        return await self.push(
            codec.EnterSessionEvent(
                to_user=self.gh_id,
                from_user=openid or self.openid,
                create_time=int(self.now()),
                session_from=session_from,
            )
        )

    async def unknown_message(
        self, msg_type: str, fields: dict[str, Any] | None = None, *, openid: str | None = None
    ) -> PushResult:
        """A MsgType WeChat may add one day; it carries a MsgId like every user message."""
        return await self.push(
            codec.UnknownMessage(
                to_user=self.gh_id,
                from_user=openid or self.openid,
                create_time=int(self.now()),
                msg_type=msg_type,
                fields={**(fields or {}), "MsgId": new_msg_id()},
            )
        )

    async def unknown_event(
        self, event: str, fields: dict[str, Any] | None = None, *, openid: str | None = None
    ) -> PushResult:
        return await self.push(
            codec.UnknownEvent(
                to_user=self.gh_id,
                from_user=openid or self.openid,
                create_time=int(self.now()),
                event=event,
                fields=fields or {},
            )
        )

    # -- the mechanics -------------------------------------------------------------------------

    async def push(self, msg: Message) -> PushResult:
        """Tell the API side what the user did, then deliver ``msg`` with WeChat's retries."""
        action = _user_action(msg)
        if action is not None:
            await self._record(msg.from_user, action, msg.create_time)
        nonce = str(secrets.randbelow(10**10))
        query, body = build_push(
            msg,
            token=self.token,
            cipher=self.cipher,
            mode=self.mode,
            fmt=self.fmt,
            timestamp=msg.create_time,
            nonce=nonce,
        )
        answers: list[Answer] = []
        started = time.perf_counter()
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                # WeChat's own schedule: the next attempt starts an interval after the last.
                due = started + (attempt - 1) * self.retry_interval_s
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            # Every attempt is the very same request: same query, same body, same MsgId.
            answer = await self._attempt(attempt, query, body, msg.from_user)
            answers.append(answer)
            if answer.reply in ACCEPTED:
                break
        outcome = _outcome(answers[-1])
        return PushResult(
            openid=msg.from_user,
            msg_type=msg.msg_type,
            event=getattr(msg, "event", None),
            msg_id=getattr(msg, "msg_id", None),
            create_time=msg.create_time,
            attempts=len(answers),
            answers=answers,
            outcome=outcome,
            user_notice=None if outcome in ACCEPTED else USER_NOTICE,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def _attempt(
        self, attempt: int, query: dict[str, str], body: bytes, openid: str
    ) -> Answer:
        content_type = "text/xml" if self.fmt == "xml" else "application/json"
        started = time.perf_counter()
        try:
            async with self.session.post(
                self.url,
                params=query,
                data=body,
                headers={"Content-Type": content_type},
                timeout=self.timeout,
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            return Answer(attempt=attempt, error="timeout", latency_ms=_since(started))
        except aiohttp.ClientError as exc:
            return Answer(
                attempt=attempt,
                error=f"connection: {type(exc).__name__}",
                latency_ms=_since(started),
            )
        latency = _since(started)
        if status != 200:
            return Answer(attempt=attempt, status=status, latency_ms=latency, body=raw[:1024])
        reply = self.read_reply(raw, openid)
        return Answer(
            attempt=attempt,
            status=status,
            reply=reply.kind,
            reason=reply.reason,
            latency_ms=latency,
            body=raw[:1024],
        )

    def read_reply(self, body: bytes, openid: str) -> replies.Reply:
        """How WeChat reads a passive reply to a push from ``openid``."""
        reply = replies.read_reply(
            body, token=self.token, cipher=self.cipher, fmt=self.fmt, mode=self.mode
        )
        if reply.kind == "transfer_customer_service" and reply.to_user != openid:
            # WeChat hands over the pushing user's message; a transfer naming anyone else
            # is not an answer to this push.
            return replies.Reply(kind="invalid", reason="the transfer names another user")
        return reply

    async def _record(self, openid: str, action: UserAction, at: int) -> None:
        if isinstance(self.sim, SimState):
            self.sim.user_action(openid, action, float(at))
        elif isinstance(self.sim, str):
            url = f"{self.sim.rstrip('/')}/sim/users/{openid}/message"
            async with self.session.post(url, json={"kind": action}) as resp:
                if resp.status != 200:
                    raise PushError(f"the simulator refused the user's {action}: {resp.status}")

    async def register_media(self, data: bytes) -> tuple[str, str]:
        """Give the simulated API an image a user sends: its MediaId and PicUrl."""
        if isinstance(self.sim, SimState):
            try:
                media = self.sim.upload_media(data)
            except ApiError as exc:
                raise PushError(f"the simulator refused the image: {exc}") from None
            # In process there is no server to fetch from; .invalid never resolves anywhere.
            return media.media_id, f"http://sim.invalid/sim/pic/{media.media_id}"
        if isinstance(self.sim, str):
            async with self.session.post(f"{self.sim.rstrip('/')}/sim/media", data=data) as resp:
                answer = await resp.json(content_type=None)
                if resp.status != 200:
                    raise PushError(f"the simulator refused the image: {answer}")
                return str(answer["media_id"]), str(answer["pic_url"])
        raise PushError("an image push needs media_id, or sim= to register the image with")

    async def verify(self, echostr: str | None = None) -> VerifyResult:
        """WeChat's URL check: a signed GET whose answer must be the echostr, exactly."""
        echostr = echostr or str(secrets.randbelow(10**19))
        timestamp = str(int(self.now()))
        nonce = str(secrets.randbelow(10**10))
        query = {
            "signature": sign(self.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": echostr,
        }
        try:
            async with self.session.get(self.url, params=query, timeout=self.timeout) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            return VerifyResult(ok=False, status=None, echostr=echostr, error="timeout")
        except aiohttp.ClientError as exc:
            error = f"connection: {type(exc).__name__}"
            return VerifyResult(ok=False, status=None, echostr=echostr, error=error)
        ok = status == 200 and raw == echostr.encode()
        return VerifyResult(ok=ok, status=status, echostr=echostr, body=raw[:1024])


def _user_action(msg: Message) -> UserAction | None:
    if isinstance(msg, codec.EnterSessionEvent):
        return "enter"
    if isinstance(msg, codec.UnknownEvent):
        return None
    return "message"


def _outcome(last: Answer) -> Outcome:
    if last.reply is None:
        return "failed"
    return last.reply


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
