"""Hypothesis strategies for WeChat messages, shared by the protocol tests."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from libs.common.wechat import codec

# Text that XML 1.0 can carry (JSON carries any text; XML neither C0 controls nor U+FFFE/F).
XML_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]).filter(
        lambda c: c in "\t\n\r" or (c >= " " and c not in "\ufffe\uffff")
    ),
    max_size=60,
)
IDS = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=32)
TIMES = st.integers(0, 2**32)
MSG_IDS = st.integers(0, 2**64 - 1)
_WIRE_NAMES = {*codec._NAMES.values()}
FIELD_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: n not in _WIRE_NAMES
)


def _common() -> dict[str, st.SearchStrategy[object]]:
    return {"to_user": IDS, "from_user": IDS, "create_time": TIMES}


def kinds(text: st.SearchStrategy[str] = XML_TEXT) -> dict[str, st.SearchStrategy[codec.Message]]:
    """One strategy per kind of message, with field values drawn from ``text``."""
    fields = st.dictionaries(FIELD_NAMES, text, max_size=4)
    return {
        "text": st.builds(codec.TextMessage, **_common(), content=text, msg_id=MSG_IDS),
        "image": st.builds(
            codec.ImageMessage, **_common(), pic_url=text, media_id=text, msg_id=MSG_IDS
        ),
        "miniprogrampage": st.builds(
            codec.MiniProgramPageMessage,
            **_common(),
            msg_id=MSG_IDS,
            title=text,
            app_id=IDS,
            page_path=text,
            thumb_url=text,
            thumb_media_id=text,
        ),
        "enter_session": st.builds(codec.EnterSessionEvent, **_common(), session_from=text),
        "unknown_message": st.builds(
            codec.UnknownMessage,
            **_common(),
            msg_type=IDS.filter(lambda t: t not in ("text", "image", "miniprogrampage", "event")),
            fields=fields,
        ),
        "unknown_event": st.builds(
            codec.UnknownEvent,
            **_common(),
            event=IDS.filter(lambda e: e != "user_enter_tempsession"),
            fields=fields,
        ),
    }


KINDS = tuple(kinds())


def messages(text: st.SearchStrategy[str] = XML_TEXT) -> st.SearchStrategy[codec.Message]:
    """Any kind of message, with field values drawn from ``text``."""
    return st.one_of(*kinds(text).values())
