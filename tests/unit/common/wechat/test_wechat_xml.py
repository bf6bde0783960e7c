"""Safe XML: WeChat's dialect in, every dangerous construct out with its reason."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wechat_vectors import E2_MSG, TEXT_XML

from libs.common.wechat import errors, xml
from libs.common.wechat.xml import MAX_DEPTH

# --- what WeChat sends --------------------------------------------------------------------------


def test_reads_cdata_and_bare_numbers() -> None:
    assert xml.parse(TEXT_XML) == {
        "ToUserName": "toUser",
        "FromUserName": "fromUser",
        "CreateTime": "1482048670",
        "MsgType": "text",
        "Content": "this is a test",
        "MsgId": "1234567890123456",
    }


def test_reads_newline_separated_documents() -> None:
    assert xml.parse(E2_MSG)["Content"] == "abcdteT"
    assert list(xml.parse(E2_MSG)) == [
        "ToUserName",
        "FromUserName",
        "CreateTime",
        "MsgType",
        "Content",
        "MsgId",
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(
            b'<?xml version="1.0" encoding="UTF-8"?>\n<xml><A>1</A></xml>',
            {"A": "1"},
            id="declaration",
        ),
        pytest.param(
            b"<xml><A>a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;</A></xml>",
            {"A": "a & b <c> \"d\" 'e'"},
            id="predefined-entities",
        ),
        pytest.param(
            b"<xml><A>&#20013;&#x6587;&#x1F600;</A></xml>", {"A": "中文😀"}, id="char-refs"
        ),
        pytest.param(
            b"<xml><A><![CDATA[x]]]]><![CDATA[>y]]></A></xml>", {"A": "x]]>y"}, id="split-cdata"
        ),
        pytest.param(
            b"<xml><A>pre<![CDATA[<b>&amp;</b>]]>post</A></xml>",
            {"A": "pre<b>&amp;</b>post"},
            id="text-and-cdata",
        ),
        pytest.param(
            b"<xml><A><![CDATA[<!DOCTYPE html><?php echo 1; ?>&x;]]></A></xml>",
            {"A": "<!DOCTYPE html><?php echo 1; ?>&x;"},
            id="markup-inside-cdata-is-text",
        ),
        pytest.param(b"<xml><A/><B></B></xml>", {"A": "", "B": ""}, id="empty-elements"),
        pytest.param(b"<xml></xml>", {}, id="empty-root"),
        pytest.param(b"<xml/>", {}, id="self-closed-root"),
        pytest.param(
            b'<xml><!-- note --><A id="1">v</A></xml>', {"A": "v"}, id="comment-and-attribute"
        ),
        pytest.param(
            b"<xml><A><![CDATA[a\r\nb\rc]]></A></xml>", {"A": "a\nb\nc"}, id="line-ends-normalised"
        ),
        pytest.param(b"<xml><A>&#13;</A></xml>", {"A": "\r"}, id="carriage-return-by-reference"),
        pytest.param(
            b"<xml><MsgType><![CDATA[event]]></MsgType>"
            b"<List><TemplateId><![CDATA[t1]]></TemplateId><PopupScene>0</PopupScene></List>"
            b"</xml>",
            {"MsgType": "event", "List": {"TemplateId": "t1", "PopupScene": "0"}},
            id="nested-list",
        ),
        pytest.param(
            b"<xml><List><T>1</T></List>\n<List><T>2</T></List><List><T>3</T></List></xml>",
            {"List": [{"T": "1"}, {"T": "2"}, {"T": "3"}]},
            id="repeated-list",
        ),
        pytest.param(b"<xml><A>1</A><A>2</A></xml>", {"A": ["1", "2"]}, id="repeated-flat"),
        pytest.param(
            '<?xml version="1.0" encoding="GBK"?><xml><A>中</A></xml>'.encode(),
            {"A": "中"},
            id="declared-encoding-ignored",
        ),
        pytest.param(b"\xef\xbb\xbf<xml><A>1</A></xml>", {"A": "1"}, id="utf8-bom"),
    ],
)
def test_reads_the_rest_of_the_dialect(doc: bytes, expected: dict[str, object]) -> None:
    assert xml.parse(doc) == expected


def test_nesting_up_to_the_limit_is_read() -> None:
    depth = MAX_DEPTH - 1  # below the root
    doc = b"<xml>" + b"<a>" * depth + b"x" + b"</a>" * depth + b"</xml>"
    value: object = xml.parse(doc)
    for _ in range(depth):
        assert isinstance(value, dict)
        value = value["a"]
    assert value == "x"


# --- what is refused, and why -------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<xml><Content>&lol9;</Content></xml>"""

QUADRATIC = (
    b'<!DOCTYPE xml [<!ENTITY a "'
    + b"A" * 50_000
    + b'">]><xml><C>'
    + b"&a;" * 10_000
    + b"</C></xml>"
)

FORBIDDEN = [
    pytest.param(BILLION_LAUGHS, "DOCTYPE lolz", id="billion-laughs"),
    pytest.param(QUADRATIC, "DOCTYPE xml", id="quadratic-blowup"),
    pytest.param(
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<xml><Content>&xxe;</Content></xml>",
        "DOCTYPE xml",
        id="external-entity",
    ),
    pytest.param(
        b'<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://example.invalid/p.dtd"> %p;]><xml/>',
        "DOCTYPE xml",
        id="parameter-entity",
    ),
    pytest.param(
        b'<!DOCTYPE xml SYSTEM "http://example.invalid/x.dtd"><xml/>',
        "DOCTYPE xml",
        id="external-dtd",
    ),
    pytest.param(b"<!DOCTYPE xml><xml><A>1</A></xml>", "DOCTYPE xml", id="doctype-alone"),
    pytest.param(b"<xml><A>&ent;</A></xml>", "predefined", id="undeclared-entity"),
    pytest.param(b"<xml><A>&lol9;</A></xml>", "predefined", id="bomb-reference-without-dtd"),
    pytest.param(b"<xml><?php system('id'); ?><A>1</A></xml>", "<?php", id="processing-instr"),
    pytest.param(
        b'<?xml version="1.0"?><?xml-stylesheet href="x.xsl"?><xml/>',
        "<?xml-stylesheet",
        id="stylesheet-pi",
    ),
]


@pytest.mark.parametrize(("doc", "where"), FORBIDDEN)
def test_dangerous_constructs_are_refused_where_they_start(doc: bytes, where: str) -> None:
    with pytest.raises(errors.XmlForbiddenConstruct) as caught:
        xml.parse(doc)
    assert caught.value.code == "xml_forbidden_construct"
    # The reason names the construct itself: the parse stopped there, before any expansion.
    assert where in caught.value.detail


def test_a_huge_document_is_refused_before_it_is_read() -> None:
    bomb = BILLION_LAUGHS + b" " * xml.MAX_BYTES
    with pytest.raises(errors.TooLarge) as caught:
        xml.parse(bomb)
    assert caught.value.http_status == 413
    with pytest.raises(errors.TooLarge):
        xml.parse(TEXT_XML, max_bytes=len(TEXT_XML) - 1)
    assert xml.parse(TEXT_XML, max_bytes=len(TEXT_XML))["MsgType"] == "text"


def test_deep_nesting_is_refused_at_the_limit() -> None:
    with pytest.raises(errors.XmlTooDeep):
        xml.parse(b"<xml>" + b"<a>" * MAX_DEPTH + b"</a>" * MAX_DEPTH + b"</xml>")
    with pytest.raises(errors.XmlTooDeep):
        xml.parse(b"<xml>" + b"<a>" * 100_000)


MALFORMED = [
    pytest.param(b"", "malformed_xml", id="empty"),
    pytest.param(b"<xml><A>1</A>", "malformed_xml", id="unclosed-root"),
    pytest.param(b"<xml><A>1</B></xml>", "malformed_xml", id="mismatched-tag"),
    pytest.param(b"<xml></xml><xml></xml>", "malformed_xml", id="two-roots"),
    pytest.param(b"<xml></xml>junk", "malformed_xml", id="junk-after-root"),
    pytest.param(b"<root><A>1</A></root>", "malformed_xml", id="wrong-root"),
    pytest.param(b"<xml>hello</xml>", "malformed_xml", id="text-in-root"),
    pytest.param(b"<xml><A>t<B>1</B></A></xml>", "malformed_xml", id="mixed-content"),
    pytest.param(b"<xml><A>a & b</A></xml>", "malformed_xml", id="bare-ampersand"),
    pytest.param(b"<xml><A>a < b</A></xml>", "malformed_xml", id="bare-less-than"),
    pytest.param(b"<xml><A>a ]]> b</A></xml>", "malformed_xml", id="cdata-end-in-text"),
    pytest.param(b"<xml><A>\x01</A></xml>", "malformed_xml", id="control-char"),
    pytest.param(b"<xml><A><![CDATA[\x00]]></A></xml>", "malformed_xml", id="nul-in-cdata"),
    pytest.param(b"<xml><A>\xef\xbf\xbe</A></xml>", "malformed_xml", id="u-fffe"),
    pytest.param(b"<xml><A>&#1;</A></xml>", "malformed_xml", id="control-char-reference"),
    pytest.param(b"<xml><A><![CDATA[x]]></A>", "malformed_xml", id="truncated"),
    pytest.param(b'<!ENTITY a "b"><xml/>', "malformed_xml", id="entity-outside-doctype"),
    pytest.param(b"<xml><A>\xff\xfe</A></xml>", "bad_encoding", id="latin1-bytes"),
    pytest.param(b"<xml><A>\xed\xa0\x80</A></xml>", "bad_encoding", id="utf8-surrogate"),
    pytest.param("<xml><A>1</A></xml>".encode("utf-16"), "bad_encoding", id="utf-16"),
]


@pytest.mark.parametrize(("doc", "code"), MALFORMED)
def test_malformed_documents_are_refused_with_their_reason(doc: bytes, code: str) -> None:
    with pytest.raises(errors.MessageError) as caught:
        xml.parse(doc)
    assert caught.value.code == code
    assert caught.value.http_status == 400


# --- any document: a dict or a typed refusal -----------------------------------------------------

_NAMES = st.sampled_from(["A", "MsgId", "Content", "a.b", "_x", "x-y", "xml", "b:c", "1a"])
_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["]]>", "]]", "]", "\r\n", "&amp;", "&x;", "<", "\x01", "\ufffe", " 12 "]
)
_SPACE = st.sampled_from(["", " ", "\n", "\r\n", "\t", "\x0c", "  \n  "])


@st.composite
def _element(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(_NAMES)
    kind = draw(st.sampled_from(["cdata", "text", "cdata", "nested", "empty", "junk"]))
    if kind == "cdata":
        body = f"<![CDATA[{draw(_TEXT)}]]>"
    elif kind == "text":
        body = draw(_TEXT)
    elif kind == "nested" and depth < 3:
        body = "".join(draw(st.lists(_element(depth + 1), max_size=3)))
    elif kind == "junk":
        body = draw(st.sampled_from(["<!-- c -->", "<?pi x?>", "<!DOCTYPE x>", "&#13;", "<a/>"]))
    else:
        body = ""
    close = name if draw(st.integers(0, 9)) else name + "x"
    return f"{draw(_SPACE)}<{name}>{body}</{close}>"


@st.composite
def _document(draw: st.DrawFn) -> bytes:
    head = draw(st.sampled_from(["", " \n", '<?xml version="1.0"?>', "\ufeff"]))
    root = draw(st.sampled_from(["xml", "xml", "xml", "root"]))
    children = "".join(draw(st.lists(_element(), max_size=6)))
    tail = draw(st.sampled_from(["", "\n", " \r\n", "junk", "<xml/>"]))
    return f"{head}<{root}>{children}{draw(_SPACE)}</{root}>{tail}".encode()


def _dict_or_refused(doc: bytes) -> None:
    try:
        result = xml.parse(doc)
    except errors.WeChatError:
        return
    assert isinstance(result, dict)


@given(_document())
@settings(deadline=None, max_examples=400)
def test_documents_near_wechats_shape_give_a_dict_or_a_typed_error(doc: bytes) -> None:
    _dict_or_refused(doc)


@given(st.binary(max_size=300).map(lambda b: b"<xml><A>" + b + b"</A></xml>"))
@settings(deadline=None)
def test_arbitrary_bytes_inside_an_element_give_a_dict_or_a_typed_error(doc: bytes) -> None:
    _dict_or_refused(doc)


@given(st.binary(max_size=500))
@settings(deadline=None)
def test_arbitrary_bytes_give_a_dict_or_a_typed_error(doc: bytes) -> None:
    try:
        result = xml.parse(doc)
    except errors.WeChatError:
        return
    assert isinstance(result, dict)


# --- building -----------------------------------------------------------------------------------


def test_builds_cdata_strings_and_bare_numbers() -> None:
    assert xml.build([("A", "x"), ("N", 12), ("B", True), ("F", 1.5), ("E", None)]) == (
        b"<xml><A><![CDATA[x]]></A><N>12</N><B>true</B><F>1.5</F><E></E></xml>"
    )


def test_builds_nested_and_repeated_elements() -> None:
    doc = xml.build([("List", [{"T": "1"}, {"T": "2"}]), ("M", {"a": "b"})])
    assert doc == (
        b"<xml><List><T><![CDATA[1]]></T></List><List><T><![CDATA[2]]></T></List>"
        b"<M><a><![CDATA[b]]></a></M></xml>"
    )
    assert xml.parse(doc) == {"List": [{"T": "1"}, {"T": "2"}], "M": {"a": "b"}}


def test_cdata_splits_its_terminator_and_keeps_carriage_returns() -> None:
    assert xml.cdata("a]]>b") == "<![CDATA[a]]]]><![CDATA[>b]]>"
    for text in ("a]]>b", "]]>]]>", "x\r\ny\r", "]]\r>"):
        assert xml.parse(xml.build([("A", text)])) == {"A": text}


@pytest.mark.parametrize("text", ["\x00", "a\x1fb", "\ufffe", "\ud800"])
def test_text_xml_cannot_carry_is_refused(text: str) -> None:
    with pytest.raises(errors.Unrepresentable):
        xml.build([("A", text)])


@pytest.mark.parametrize(
    ("name", "value"),
    [("a b", "x"), ("", "x"), ("1a", "x"), ("A", [["x"]]), ("A", object()), ("A", b"bytes")],
)
def test_what_xml_cannot_express_is_refused(name: str, value: object) -> None:
    with pytest.raises(errors.Unrepresentable):
        xml.build([(name, value)])


_XML_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]).filter(
        lambda c: c in "\t\n\r" or (c >= " " and c not in "\ufffe\uffff")
    )
)


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,10}", fullmatch=True), _XML_TEXT, max_size=8
    )
)
@settings(deadline=None)
def test_build_then_parse_gives_back_the_text(fields: dict[str, str]) -> None:
    assert xml.parse(xml.build(fields.items())) == fields
