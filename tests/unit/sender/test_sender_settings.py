"""Sender settings: defaults from WeChat's documents, and errors that name the variable."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from libs.common.settings import SettingsError, load
from services.sender.settings import SenderSettings
from tests.support.service_alone import start_alone

BASE = {"WXKF_APPID": "wx0123456789abcdef", "WXKF_APP_SECRET": "s" * 32}


def settings(**env: str) -> SenderSettings:
    return load(SenderSettings, {**BASE, **env})


def test_defaults_follow_wechats_documents() -> None:
    s = settings()
    assert (s.window_message_count, s.window_message_s) == (5, 48 * 3600)
    assert (s.window_enter_count, s.window_enter_s) == (2, 60)
    assert s.typing_path == "/cgi-bin/message/custom/typing"
    assert (s.typing_exchange_s, s.typing_duration_s) == (30, 15)
    assert s.ambiguous_retried == frozenset()  # at most once unless told otherwise
    assert s.media_url == ""
    assert s.internal_token is None


def test_values_come_from_the_environment() -> None:
    s = settings(
        WXKF_WINDOW_ENTER_COUNT="1",
        WXKF_TYPING_PATH="/cgi-bin/message/custom/business/typing",
        WXKF_AMBIGUOUS_RETRY=" Text, image ",
        WXKF_SEND_RATE_PER_S="20.5",
        WXKF_MEDIA_URL="http://media:8084",
        WXKF_INTERNAL_TOKEN="tok",
    )
    assert s.window_enter_count == 1
    assert s.typing_path.endswith("/business/typing")
    assert s.ambiguous_retried == {"text", "image"}  # a list, in any case
    assert s.send_rate_per_s == 20.5
    assert s.media_url == "http://media:8084"
    assert s.internal_token == "tok"


def test_the_pause_after_45011_fits_the_retry_delays() -> None:
    assert settings().commands_queue().delay_steps() == (1, 2, 4, 8, 16, 32, 64)
    assert settings().rate_limited_pause() == 60
    # Short delays (tests, a dev stack): unset, the pause follows them instead of failing.
    short = settings(WXKF_RETRY_BASE_S="0.2")
    assert short.rate_limited_pause() == 12.8
    assert settings(WXKF_RATE_LIMITED_PAUSE_S="64").rate_limited_pause() == 64
    with pytest.raises(SettingsError, match=r"WXKF_RATE_LIMITED_PAUSE_S.*longest retry delay, 64"):
        settings(WXKF_RATE_LIMITED_PAUSE_S="65")


def test_the_internal_token_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    s = settings(WXKF_INTERNAL_TOKEN_FILE=str(secret))
    assert s.internal_token == "from-a-file"
    assert "from-a-file" not in repr(s)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"WXKF_AMBIGUOUS_RETRY": "text,fax"}, "WXKF_AMBIGUOUS_RETRY: invalid enum value 'fax'"),
        ({"WXKF_AMBIGUOUS_RETRY": "text;image"}, "WXKF_AMBIGUOUS_RETRY: invalid enum value"),
        ({"WXKF_TYPING_PATH": "/cgi-bin/message/typing"}, "WXKF_TYPING_PATH: invalid enum value"),
        ({"WXKF_MEDIA_URL": "media:8084"}, "WXKF_MEDIA_URL"),
        ({"WXKF_WINDOW_MESSAGE_COUNT": "-1"}, "WXKF_WINDOW_MESSAGE_COUNT"),
        ({"WXKF_WINDOW_ENTER_S": "0"}, "WXKF_WINDOW_ENTER_S"),
        ({"WXKF_SEND_RATE_BURST": "0"}, "WXKF_SEND_RATE_BURST"),
        ({"WXKF_RETRY_BASE_S": "301"}, "WXKF_RETRY_BASE_S: must not exceed the longest delay"),
        # The default delays are 1, 2, ... 64 s: a longer pause would be cut to 64 s.
        ({"WXKF_RATE_LIMITED_PAUSE_S": "65"}, "WXKF_RATE_LIMITED_PAUSE_S"),
        ({"WXKF_SENDER_PREFETCH": "many"}, "WXKF_SENDER_PREFETCH"),
        ({"WXKF_SENDER_PREFETCH": "0"}, "WXKF_SENDER_PREFETCH"),
        ({"WXKF_WECHAT_TIMEOUT_S": "0"}, "WXKF_WECHAT_TIMEOUT_S"),
        ({"WXKF_WECHAT_API_BASE": "api.weixin.qq.com"}, "WXKF_WECHAT_API_BASE"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        settings(**env)


def test_a_missing_secret_names_its_variable_and_the_file_form() -> None:
    with pytest.raises(SettingsError, match=r"WXKF_APP_SECRET is required.*WXKF_APP_SECRET_FILE"):
        load(SenderSettings, {"WXKF_APPID": "wx0123456789abcdef"})


def test_the_secret_is_never_in_an_error() -> None:
    with pytest.raises(SettingsError) as info:
        settings(WXKF_APP_SECRET="", WXKF_SENDER_PREFETCH="x")
    assert "s" * 32 not in str(info.value)


@pytest.mark.parametrize(
    ("variable", "says"),
    [
        ("WXKF_SENDER_PORT", "serves nothing but the internal port (WXKF_INTERNAL_PORT)"),
        ("WXKF_RETRY_CAP_S", "no retry delay reached it"),
        ("WXKF_PREFETCH", "it is WXKF_SENDER_PREFETCH now"),
    ],
)
def test_a_variable_no_longer_read_is_an_error_that_says_what_to_do(
    variable: str, says: str
) -> None:
    with pytest.raises(SettingsError, match=rf"^{variable} is no longer read: .*{re.escape(says)}"):
        settings(**{variable: "1"})
    with pytest.raises(SettingsError, match=rf"^{variable} is no longer read"):
        settings(**{f"{variable}_FILE": "/nowhere"})


def test_the_sender_started_on_its_own_refuses_memory() -> None:
    env = {**os.environ, **BASE, "WXKF_BUS_URL": "memory://"}
    env.pop("WXKF_STORE_URL", None)
    result = start_alone("sender", env)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "wxkf: configuration error: WXKF_BUS_URL: memory:// serves only the four services "
        "together in one process (wxkf run all); python -m services.sender runs without the others"
    )
    assert "runner" not in result.stdout + result.stderr
