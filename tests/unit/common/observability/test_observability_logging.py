"""Logging configuration: formats, levels, the service on every line, redaction, openid hashes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from libs.common.observability import logging as obs_logging
from libs.common.observability.logging import (
    REDACTED,
    ConfigError,
    configure,
    hash_openid,
    redact,
    set_openid_key,
)
from libs.common.settings import Secret


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    """Each test configures logging its own way; put back what the test run had."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    key = obs_logging._openid_key
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.contextvars.clear_contextvars()
    set_openid_key(key)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_level_time_service_and_context() -> None:
    out = io.StringIO()
    configure("ingress", fmt="json", level="info", stream=out)
    structlog.contextvars.bind_contextvars(correlation_id="c-1")
    structlog.get_logger("wxkf.test").info("push.accepted", msgtype="text")
    [line] = lines(out)
    assert line["event"] == "push.accepted"
    assert line["level"] == "info"
    assert line["service"] == "ingress"
    assert line["correlation_id"] == "c-1"
    assert line["msgtype"] == "text"
    assert line["logger"] == "wxkf.test"
    assert str(line["timestamp"]).endswith("Z")
    assert str(line["timestamp"])[10] == "T"


def test_library_logging_goes_through_the_same_formatter() -> None:
    out = io.StringIO()
    configure("sender", fmt="json", level="info", stream=out)
    structlog.contextvars.bind_contextvars(correlation_id="c-2")
    logging.getLogger("aio_pika.robust_connection").warning("reconnecting to %s", "broker")
    [line] = lines(out)
    assert line["event"] == "reconnecting to broker"
    assert line["level"] == "warning"
    assert line["logger"] == "aio_pika.robust_connection"
    assert line["service"] == "sender"
    assert line["correlation_id"] == "c-2"


def test_level_filters_our_lines_and_libraries() -> None:
    out = io.StringIO()
    configure("router", fmt="json", level="WARNING", stream=out)
    log = structlog.get_logger("wxkf.test")
    log.info("not.shown")
    logging.getLogger("lib").info("not shown either")
    log.warning("shown")
    assert [line["event"] for line in lines(out)] == ["shown"]


def test_exceptions_are_rendered_in_the_line() -> None:
    out = io.StringIO()
    configure("media", fmt="json", level="info", stream=out)
    try:
        raise ValueError("bad media")
    except ValueError:
        structlog.get_logger("wxkf.test").exception("media.failed")
    [line] = lines(out)
    assert "Traceback" in str(line["exception"])
    assert "ValueError: bad media" in str(line["exception"])


def test_console_on_a_terminal_and_json_otherwise() -> None:
    tty, pipe = Tty(), io.StringIO()
    configure("ingress", level="info", stream=tty)
    structlog.get_logger("wxkf.test").info("on.console", n=1)
    assert "on.console" in tty.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(tty.getvalue())
    configure("ingress", level="info", stream=pipe)
    structlog.get_logger("wxkf.test").info("on.pipe")
    assert lines(pipe)[0]["event"] == "on.pipe"


def test_configuring_again_replaces_rather_than_duplicates() -> None:
    out = io.StringIO()
    configure("a", fmt="json", level="info", stream=io.StringIO())
    configure("b", fmt="json", level="info", stream=out)
    structlog.get_logger("wxkf.test").info("once")
    assert [(line["event"], line["service"]) for line in lines(out)] == [("once", "b")]


@pytest.mark.parametrize(
    ("fmt", "level", "match"), [("json", "loud", "loud"), ("xml", "info", "xml")]
)
def test_bad_configuration_is_refused_by_name(fmt, level, match) -> None:
    with pytest.raises(ConfigError, match=match):
        configure("x", fmt=fmt, level=level, stream=io.StringIO())


@pytest.mark.parametrize(
    "key",
    [
        "secret",
        "app_secret",
        "token",
        "access_token",
        "encoding_aes_key",
        "aes_key",
        "password",
        "db-password",
        "Authorization",
        "api_key",
    ],
)
def test_values_under_secret_names_are_redacted(key: str) -> None:
    assert redact(None, "info", {"event": "e", key: "s3cr3t"})[key] == REDACTED


@pytest.mark.parametrize("key", ["tokens", "openid", "msgtype", "expires_in", "secretary_name"])
def test_ordinary_names_are_kept(key: str) -> None:
    assert redact(None, "info", {"event": "e", key: "v"})[key] == "v"


def test_secret_values_access_tokens_in_urls_and_nested_data_are_redacted() -> None:
    event = redact(
        None,
        "info",
        {
            "event": "call https://api/x?access_token=ABC&y=1",
            "url": "https://api/cgi-bin/message/custom/send?access_token=TOKEN123",
            "settings": {"app_secret": "s", "appid": "wx1"},
            "given": Secret("hunter2"),
            "many": ["a?access_token=Q", ("b", Secret("z"))],
        },
    )
    flat = json.dumps(event, default=str)
    for leaked in ("ABC", "TOKEN123", "hunter2", '"s"', "=Q", '"z"'):
        assert leaked not in flat
    assert event["url"] == "https://api/cgi-bin/message/custom/send?access_token=***"
    assert event["settings"] == {"app_secret": REDACTED, "appid": "wx1"}


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("amqp://wxkf:brokerpass@rabbit:5672/wxkf", "amqp://wxkf:***@rabbit:5672/wxkf"),
        (
            "connect to redis://:redispass@cache:6379/0 failed",
            "connect to redis://:***@cache:6379/0 failed",
        ),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("https://api.weixin.qq.com/cgi-bin/token", "https://api.weixin.qq.com/cgi-bin/token"),
        ("a ratio of 1:2@noon", "a ratio of 1:2@noon"),
    ],
)
def test_passwords_in_urls_are_redacted(text: str, clean: str) -> None:
    assert redact(None, "info", {"event": text})["event"] == clean


def test_a_traceback_quoting_a_token_url_is_redacted_in_the_output() -> None:
    out = io.StringIO()
    configure("sender", fmt="json", level="info", stream=out)
    try:
        raise RuntimeError("POST https://api.weixin.qq.com/x?access_token=LEAKED failed")
    except RuntimeError:
        structlog.get_logger("wxkf.test").exception("send.failed", app_secret="also-leaked")
    text = out.getvalue()
    assert "LEAKED" not in text
    assert "also-leaked" not in text
    assert "access_token=***" in text


def test_openid_hash_is_short_stable_and_keyed() -> None:
    set_openid_key("deployment-a")
    first = hash_openid("oUser123")
    assert first == hash_openid("oUser123")
    assert len(first) == 12
    assert int(first, 16) >= 0
    assert first != hash_openid("oUser124")
    assert "oUser123" not in first
    set_openid_key("deployment-b")
    assert hash_openid("oUser123") != first
    set_openid_key(b"deployment-a")
    assert hash_openid("oUser123") == first


def test_configure_sets_the_openid_key() -> None:
    set_openid_key("one")
    before = hash_openid("oUser")
    configure("x", fmt="json", level="info", stream=io.StringIO(), openid_key="two")
    assert hash_openid("oUser") != before


def test_an_empty_openid_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="key"):
        set_openid_key("")


def test_a_service_configured_from_its_settings_hashes_openids_with_the_deployment_key() -> None:
    from libs.common.observability.logging import configure_service
    from libs.common.settings import CommonSettings, load

    plain = hash_openid("oUser1")
    settings = load(CommonSettings, {"WXKF_APPID": "wx1", "WXKF_LOG_KEY": "k-of-this-site"})
    out = io.StringIO()
    configure_service("router", settings, stream=out)
    keyed = hash_openid("oUser1")
    assert keyed != plain
    assert keyed == hash_openid("oUser1")  # stable for one key
    structlog.get_logger("t").info("x.y")
    assert lines(out)[0]["service"] == "router"
    assert "k-of-this-site" not in repr(settings)


def test_the_amqp_clients_frames_never_reach_the_log_even_at_debug() -> None:
    # aiormq logs every frame it sends at debug: message bodies, openids and content included.
    configure("svc", fmt="json", level="debug", stream=io.StringIO())
    try:
        for library in ("aiormq", "aio_pika", "pamqp", "redis"):
            assert not logging.getLogger(library).isEnabledFor(logging.DEBUG), library
        assert logging.getLogger("services.ingress").isEnabledFor(logging.DEBUG)
    finally:
        configure("svc", fmt="json", level="info", stream=io.StringIO())
