"""One handler per kind of message (libs/common/bus ``by_kind``)."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.bus import Delivery, Reject, by_kind, on
from libs.common.schemas import SendText, SendTyping, SessionEntered


def text() -> SendText:
    return SendText(appid="wx", openid="o", correlation_id="c", content="hi")


def typing() -> SendTyping:
    return SendTyping(appid="wx", openid="o", correlation_id="c")


async def test_each_kind_goes_to_its_own_handler() -> None:
    seen: list[str] = []

    async def texts(msg: SendText, delivery: Delivery) -> None:
        seen.append(f"text {msg.content}")

    async def typings(msg: SendTyping, delivery: Delivery) -> None:
        seen.append(f"typing {msg.command}")

    handle = by_kind(on(SendText, texts), on(SendTyping, typings))
    delivery: Any = None  # the handlers here do not look at it
    await handle(typing(), delivery)
    await handle(text(), delivery)
    assert seen == ["typing Typing", "text hi"]


async def test_any_other_kind_is_rejected_by_name() -> None:
    async def texts(msg: SendText, delivery: Delivery) -> None:
        raise AssertionError("not a text")

    handle = by_kind(on(SendText, texts))
    entered = SessionEntered(
        appid="wx", openid="o", correlation_id="c", to_user="gh", create_time=1
    )
    with pytest.raises(
        Reject, match=r"no handler for SessionEntered \(event.user_enter_tempsession\)"
    ):
        await handle(entered, None)  # type: ignore[arg-type]
