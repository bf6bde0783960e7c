"""Reply templates: ``{field}`` placeholders filled from a small fixed set of event fields.

Deliberately not ``str.format`` (which reaches attributes and items: ``{0.__class__}``) and
not a template language: a template is literal text and names from :data:`FIELDS`, parsed
once when the rules load. ``{{`` and ``}}`` stand for literal braces. Values are cut to
:data:`MAX_VALUE_CHARS` so that a long message echoed back cannot exceed WeChat's text limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Final

import msgspec

from libs.common.schemas import InboundEvent, MiniProgramPageReceived, SessionEntered, TextReceived
from services.router.errors import SpecError

MAX_VALUE_CHARS: Final = 200


def _text(event: InboundEvent, at: datetime) -> str:
    return event.content if isinstance(event, TextReceived) else ""


def _session_from(event: InboundEvent, at: datetime) -> str:
    return event.session_from if isinstance(event, SessionEntered) else ""


def _page_title(event: InboundEvent, at: datetime) -> str:
    return event.title if isinstance(event, MiniProgramPageReceived) else ""


def _page_path(event: InboundEvent, at: datetime) -> str:
    return event.page_path if isinstance(event, MiniProgramPageReceived) else ""


FIELDS: Final[Mapping[str, Callable[[InboundEvent, datetime], str]]] = {
    "text": _text,
    "session_from": _session_from,
    "page_title": _page_title,
    "page_path": _page_path,
    "date": lambda event, at: at.strftime("%Y-%m-%d"),
    "time": lambda event, at: at.strftime("%H:%M"),
}
"""The only names a template may use; ``at`` is the event's time in the rules' time zone."""


class Template(msgspec.Struct, frozen=True):
    parts: tuple[str, ...]
    """Literal text and field names alternate: literal, field, literal, field, …, literal."""

    @property
    def fields(self) -> tuple[str, ...]:
        return self.parts[1::2]

    def render(self, event: InboundEvent, at: datetime) -> str:
        if len(self.parts) == 1:
            return self.parts[0]
        out = []
        for i, part in enumerate(self.parts):
            out.append(FIELDS[part](event, at)[:MAX_VALUE_CHARS] if i % 2 else part)
        return "".join(out)


def parse(text: str) -> Template:
    parts: list[str] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif c == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif c == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise SpecError(f"unclosed `{{` at character {i + 1}; write `{{{{` for a brace")
            name = text[i + 1 : end].strip()
            if name not in FIELDS:
                known = ", ".join(FIELDS)
                raise SpecError(f"unknown template field `{{{name}}}`; known fields: {known}")
            parts.extend(("".join(literal), name))
            literal = []
            i = end + 1
        elif c == "}":
            raise SpecError(f"unmatched `}}` at character {i + 1}; write `}}}}` for a brace")
        else:
            literal.append(c)
            i += 1
    parts.append("".join(literal))
    return Template(tuple(parts))
