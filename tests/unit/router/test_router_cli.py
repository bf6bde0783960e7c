"""``wxkf rules check`` and ``wxkf rules test``, through the ``wxkf`` command itself."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from libs.common.schemas import SendText, encode
from services.cli import main
from services.router.compiler import compile_file

EXAMPLE = Path(__file__).parents[3] / "examples" / "rules.yaml"

OFFICE = """\
timezone: Asia/Shanghai
hours:
  office: {weekdays: mon-fri, ranges: ["09:00-18:00"]}
rules:
  - {name: open, match: {type: text, hours: office}, reply: "在的 {time}"}
  - {name: vip, match: {session: {tagged: vip}}, reply: 贵宾}
  - {name: closed, match: {type: text}, reply: 下班了}
fallback: {ignore: true}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def office(tmp_path: Path) -> str:
    path = tmp_path / "office.yaml"
    path.write_text(OFFICE, encoding="utf-8")
    return str(path)


def test_check_a_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rules", "check", str(EXAMPLE))
    assert code == 0
    assert out.strip().endswith(f"ok, {len(compile_file(EXAMPLE))} rules and a fallback")


def test_check_reports_each_problem_with_line_and_column(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent(
            """\
            rules:
              - name: a
                match: {type: txt}
                reply: x
              - name: b
                match: {text: {regex: "(("}}
                reply: y
            fallback: {reply: ok}
            """
        ),
        encoding="utf-8",
    )
    code, out, err = run(capsys, "rules", "check", str(bad), str(EXAMPLE))
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{bad}:3:19: unknown message type `txt`")
    assert lines[1].startswith(f"{bad}:6:27: invalid regular expression")
    assert lines[2] == f"{bad}: 2 problems"
    assert "ok" in out  # the other file is still checked


def test_check_reports_structural_mistakes_of_several_rules_at_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - name: a\n    replay: x\n  - name: b\n    transfer: maybe\n"
        "  - reply: z\nfallback: {reply: ok, tgs: [x]}\n",
        encoding="utf-8",
    )
    code, _, err = run(capsys, "rules", "check", str(bad))
    assert code == 1
    lines = err.strip().splitlines()
    assert [line.split(": ")[0] for line in lines[:4]] == [
        f"{bad}:3:5",
        f"{bad}:5:15",
        f"{bad}:6:5",
        f"{bad}:7:23",
    ]
    assert lines[4] == f"{bad}: 4 problems"


def test_check_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "rules", "check", str(tmp_path / "none.yaml"))
    assert code == 1
    assert "cannot read" in err


def test_test_a_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rules", "test", str(EXAMPLE), "--text", "转人工")
    assert code == 0
    assert "rule:      agent (line " in out
    assert "transfer:  yes" in out
    assert "send.text" in out


def test_the_lines_of_a_multi_line_reply_line_up(capsys: pytest.CaptureFixture[str]) -> None:
    # The shipped welcome is two lines (a YAML block scalar).
    _, out, _ = run(capsys, "rules", "test", str(EXAMPLE), "--enter")
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  1. send.text"))
    column = lines[first].index("您好")
    assert lines[first + 1] == " " * column + "需要人工服务请输入「人工」。"


def test_test_other_kinds_and_session(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "rules", "test", str(EXAMPLE), "--enter", "campaign:x")
    assert "matched:   campaign-visitor → welcome" in out
    assert "tags:      campaign" in out
    _, out, _ = run(capsys, "rules", "test", str(EXAMPLE), "--enter", "--seen-today")
    assert "rule:      quiet-events" in out
    _, out, _ = run(
        capsys, "rules", "test", str(EXAMPLE), "--card", "pages/goods/9", "--title", "围巾"
    )
    assert "「围巾」" in out
    _, out, _ = run(capsys, "rules", "test", str(EXAMPLE), "--image", "--transferred-ago", "10m")
    assert "rule:      waiting-for-agent" in out


def test_test_at_a_time(capsys: pytest.CaptureFixture[str], office: str) -> None:
    _, out, _ = run(capsys, "rules", "test", office, "--text", "hi", "--at", "2026-11-25T10:00")
    assert "rule:      open" in out
    assert "在的 10:00" in out
    _, out, _ = run(capsys, "rules", "test", office, "--text", "hi", "--at", "2026-11-25T20:00")
    assert "rule:      closed" in out
    # 02:00 UTC is 10:00 in Shanghai.
    _, out, _ = run(
        capsys, "rules", "test", office, "--text", "hi", "--at", "2026-11-25T02:00+00:00"
    )
    assert "rule:      open" in out
    _, out, _ = run(capsys, "rules", "test", office, "--image", "--tag", "vip")
    assert "rule:      vip" in out


PUSH_XML = (
    "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o-1]]></FromUserName>"
    "<CreateTime>1764037800</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[我要退货]]></Content><MsgId>6054768590064713728</MsgId></xml>"
)
PUSH_JSON = (
    '{"ToUserName":"gh_1","FromUserName":"o-1","CreateTime":1764037800,"MsgType":"event",'
    '"Event":"user_enter_tempsession","SessionFrom":"campaign:spring"}'
)


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (PUSH_XML, "faq-returns"),
        (PUSH_JSON, "welcome"),
        (
            '{"ToUserName":"gh","FromUserName":"o","CreateTime":1,"MsgType":"event",'
            '"Event":"debug_demo"}',
            "quiet-events",
        ),
        (
            '{"ToUserName":"gh","FromUserName":"o","CreateTime":1,"MsgType":"voice","MsgId":5}',
            "fallback",
        ),
    ],
)
def test_test_a_push_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, body: str, rule: str
) -> None:
    push = tmp_path / "push"
    push.write_text(body, encoding="utf-8")
    code, out, _ = run(capsys, "rules", "test", str(EXAMPLE), "--push", str(push))
    assert code == 0
    assert f"rule:      {rule} " in out


def test_test_a_bus_event_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    push = tmp_path / "event.json"
    push.write_text(
        '{"type":"msg.text","appid":"wx","openid":"o","correlation_id":"c","to_user":"gh",'
        '"create_time":1764037800,"msg_id":1,"content":"尺码"}',
        encoding="utf-8",
    )
    _, out, _ = run(capsys, "rules", "test", str(EXAMPLE), "--push", str(push))
    assert "rule:      faq-size" in out


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("hello", "not a readable push"),
        ("<xml><MsgType>text</MsgType></xml>", "not a readable push"),
        ('{"type":"msg.text"}', "not a bus event"),
        (
            encode(SendText(appid="a", openid="o", correlation_id="c", content="x")).decode(),
            "a send.text message is not an inbound event",
        ),
    ],
)
def test_unusable_push_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, body: str, message: str
) -> None:
    push = tmp_path / "push"
    push.write_text(body, encoding="utf-8")
    code, out, err = run(capsys, "rules", "test", str(EXAMPLE), "--push", str(push))
    assert code == 2
    assert message in err
    assert out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--push", "/nonexistent/push.xml"), "cannot read /nonexistent/push.xml"),
        (("--text", "x", "--at", "tomorrow"), "--at 'tomorrow' is not a time"),
        (("--text", "x", "--transferred-ago", "a while"), "--transferred-ago: `a while` is not"),
    ],
)
def test_bad_command_lines(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, err = run(capsys, "rules", "test", str(EXAMPLE), *args)
    assert code == 2
    assert message in err


def test_test_with_an_invalid_rules_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: 3\nfallback: {reply: x}\n", encoding="utf-8")
    code, _, err = run(capsys, "rules", "test", str(bad), "--text", "x")
    assert code == 1
    assert f"{bad}:1:8:" in err
