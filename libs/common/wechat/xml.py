"""WeChat's ``<xml>`` documents: parsed safely, built with CDATA.

WeChat's dialect is tiny: a root ``<xml>`` whose children are elements holding text or CDATA,
with whitespace between them, and rarely a nested element (the ``List`` of subscribe events).
:func:`parse` turns it into a dict of the root's children: text becomes ``str``, an element
with children becomes a dict, and a name that repeats becomes a list, in document order.

Safety, in bounded time and memory: the size is capped before anything is read; a DOCTYPE
stops the parse where it begins, so no entity can be declared and none expanded (billion
laughs, quadratic blowup, external and parameter entities); references other than the five
predefined entities and numeric character references are refused; so are processing
instructions other than the XML declaration; nesting is capped. The parser is expat.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pyexpat import ExpatError, ParserCreate
from pyexpat import errors as expat_errors
from typing import Any, NoReturn, TypeAlias

from libs.common.wechat.errors import (
    BadEncoding,
    MalformedXml,
    TooLarge,
    Unrepresentable,
    XmlForbiddenConstruct,
    XmlTooDeep,
)

XmlValue: TypeAlias = "str | dict[str, XmlValue] | list[XmlValue]"

MAX_BYTES = 1024 * 1024
"""Default size cap; a customer-service push is a few KB, three times that in compatible mode."""
MAX_DEPTH = 8
"""The root is depth 1; WeChat's deepest documents (subscribe events) reach depth 3."""

# --- parsing: expat, with everything a WeChat document never needs refused --------------------


def _put(parent: dict[str, XmlValue], name: str, value: XmlValue) -> None:
    """Add a child; a repeated name collects its values in a list, in document order."""
    seen = parent.get(name)
    if seen is None:
        parent[name] = value
    elif isinstance(seen, list):  # an element's own value is never a list: this is a repeat
        seen.append(value)
    else:
        parent[name] = [seen, value]


class _Frame:
    """An open element: its text so far and, once it has any, its children."""

    __slots__ = ("children", "name", "text")

    def __init__(self, name: str) -> None:
        self.name = name
        self.text: list[str] = []
        self.children: dict[str, XmlValue] | None = None

    def value(self) -> XmlValue:
        text = "".join(self.text)
        if self.children is None:
            return text
        if text.strip(" \t\r\n"):
            raise MalformedXml(f"<{self.name}> mixes text with elements")
        return self.children


class _Tree:
    """Expat handlers that build the dict and refuse the constructs WeChat never sends."""

    __slots__ = ("result", "stack")

    def __init__(self) -> None:
        self.stack: list[_Frame] = []
        self.result: dict[str, XmlValue] | None = None

    def start(self, name: str, _attributes: dict[str, str]) -> None:
        # Attributes are ignored: WeChat writes none, and one added some day must not cost
        # a push.
        if not self.stack:
            if name != "xml":
                raise MalformedXml(f"the root element is <{name}>, not <xml>")
        elif len(self.stack) >= MAX_DEPTH:
            raise XmlTooDeep(f"elements nest deeper than {MAX_DEPTH} levels")
        else:
            parent = self.stack[-1]
            if parent.children is None:
                parent.children = {}
        self.stack.append(_Frame(name))

    def end(self, name: str) -> None:
        frame = self.stack.pop()
        value = frame.value()
        if self.stack:
            children = self.stack[-1].children
            assert children is not None  # start() created it when this element opened
            _put(children, name, value)
        else:
            if isinstance(value, str) and value.strip(" \t\r\n"):
                raise MalformedXml("<xml> holds text instead of elements")
            self.result = frame.children if frame.children is not None else {}

    def text(self, data: str) -> None:
        self.stack[-1].text.append(data)


def _refuse_doctype(name: str, *_: object) -> NoReturn:
    raise XmlForbiddenConstruct(f"<!DOCTYPE {name[:40]}> is not allowed")


def _refuse_declaration(*_: object) -> NoReturn:
    raise XmlForbiddenConstruct("entity and notation declarations are not allowed")


def _refuse_pi(target: str, _data: str) -> NoReturn:
    raise XmlForbiddenConstruct(f"the processing instruction <?{target[:40]} is not allowed")


def _refuse_external(*_: object) -> NoReturn:
    raise XmlForbiddenConstruct("external entities are not allowed")


_UNDEFINED_ENTITY = expat_errors.codes[expat_errors.XML_ERROR_UNDEFINED_ENTITY]


def parse(data: bytes, *, max_bytes: int = MAX_BYTES) -> dict[str, XmlValue]:
    """The children of the ``<xml>`` root of ``data``, or a :class:`MessageError`."""
    if len(data) > max_bytes:
        raise TooLarge(f"{len(data)} bytes is more than the {max_bytes} allowed")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadEncoding(f"not UTF-8 at byte {exc.start}") from None
    tree = _Tree()
    # The encoding is forced: WeChat writes UTF-8, and a declaration claiming otherwise must
    # not change how the bytes checked above are read.
    parser = ParserCreate(encoding="utf-8")
    parser.buffer_text = True
    parser.StartElementHandler = tree.start
    parser.EndElementHandler = tree.end
    parser.CharacterDataHandler = tree.text
    # The DOCTYPE handler fires when "<!DOCTYPE name" has been read, before any declaration
    # inside it, so nothing is ever declared; the other refusals are a second line.
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_declaration
    parser.UnparsedEntityDeclHandler = _refuse_declaration
    parser.NotationDeclHandler = _refuse_declaration
    parser.ExternalEntityRefHandler = _refuse_external
    parser.ProcessingInstructionHandler = _refuse_pi
    try:
        parser.Parse(data, True)
    except ExpatError as exc:
        where = f"line {exc.lineno}, column {exc.offset}"
        if exc.code == _UNDEFINED_ENTITY:
            raise XmlForbiddenConstruct(
                f"only the five predefined entities and character references are allowed ({where})"
            ) from None
        raise MalformedXml(f"{expat_errors.messages[exc.code]} ({where})") from None
    if tree.result is None:  # expat reports an unclosed root itself; kept as a guard
        raise MalformedXml("no <xml> root element")
    return tree.result


# --- building -----------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
# Characters XML 1.0 cannot carry in any form, and lone surrogates, which UTF-8 cannot.
_UNREPRESENTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def cdata(text: str) -> str:
    """``text`` as CDATA that every XML parser reads back exactly."""
    if _UNREPRESENTABLE.search(text):
        raise Unrepresentable("the text holds a character that XML cannot carry")
    # "]]>" would end the section: split it across two. A "\r" inside CDATA would reach the
    # reader as "\n" (XML normalises line ends), so it goes out as a character reference.
    text = text.replace("]]>", "]]]]><![CDATA[>").replace("\r", "]]>&#13;<![CDATA[")
    return f"<![CDATA[{text}]]>"


def build(fields: Iterable[tuple[str, Any]]) -> bytes:
    """An ``<xml>`` document: strings as CDATA, integers bare, mappings nested, lists repeated."""
    parts = ["<xml>"]
    for name, value in fields:
        _write(parts, name, value)
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


def _write(parts: list[str], name: str, value: Any) -> None:
    if not _NAME.fullmatch(name):
        raise Unrepresentable(f"{name[:40]!r} cannot be an XML element name")
    if isinstance(value, list):
        for item in value:
            if isinstance(item, list):
                raise Unrepresentable(f"<{name}> holds a list inside a list")
            _write(parts, name, item)
        return
    parts.append(f"<{name}>")
    if isinstance(value, str):
        parts.append(cdata(value))
    elif isinstance(value, bool):  # before int: bool is an int in Python
        parts.append("true" if value else "false")
    elif isinstance(value, int | float):
        parts.append(repr(value))
    elif isinstance(value, Mapping):
        for child, item in value.items():
            _write(parts, child, item)
    elif value is not None:
        raise Unrepresentable(f"<{name}> holds a {type(value).__name__}")
    parts.append(f"</{name}>")
