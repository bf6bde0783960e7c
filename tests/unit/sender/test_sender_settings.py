"""Sender settings: defaults from WeChat's documents, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.common.settings import SettingsError, load
from services.sender.settings import SenderSettings

BASE = {"WXKF_APPID": "wx0123456789abcdef", "WXKF_APP_SECRET": "s" * 32}


def settings(**env: str) -> SenderSettings:
    return load(SenderSettings, {**BASE, **env})


def test_defaults_follow_wechats_documents() -> None:
    s = settings()
    assert s.sender_port == 8082
    assert (s.window_message_count, s.window_message_s) == (5, 48 * 3600)
    assert (s.window_enter_count, s.window_enter_s) == (2, 60)
    assert s.typing_path == "/cgi-bin/message/custom/typing"
    assert (s.typing_exchange_s, s.typing_duration_s) == (30, 15)
    assert s.ambiguous_retried == frozenset()  # at most once unless told otherwise
    assert s.media_url == ""
    assert s.internal_token is None


def test_values_come_from_the_environment() -> None:
    s = settings(
        WXKF_SENDER_PORT="9000",
        WXKF_WINDOW_ENTER_COUNT="1",
        WXKF_TYPING_PATH="/cgi-bin/message/custom/business/typing",
        WXKF_AMBIGUOUS_RETRY=" Text, image ",
        WXKF_SEND_RATE_PER_S="20.5",
        WXKF_MEDIA_URL="http://media:8084",
        WXKF_INTERNAL_TOKEN="tok",
    )
    assert s.sender_port == 9000
    assert s.window_enter_count == 1
    assert s.typing_path.endswith("/business/typing")
    assert s.ambiguous_retried == {"text", "image"}
    assert s.send_rate_per_s == 20.5
    assert s.media_url == "http://media:8084"
    assert s.internal_token == "tok"


def test_the_pause_after_45011_fits_the_retry_delays() -> None:
    assert settings().commands_queue().delay_steps() == (1, 2, 4, 8, 16, 32, 64)
    assert settings().rate_limited_pause() == 60
    # Short delays (tests, a dev stack): unset, the pause follows them instead of failing.
    short = settings(WXKF_RETRY_BASE_S="0.2", WXKF_RETRY_CAP_S="0.4")
    assert short.rate_limited_pause() == 0.4
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
        ({"WXKF_AMBIGUOUS_RETRY": "text,fax"}, "WXKF_AMBIGUOUS_RETRY"),
        ({"WXKF_TYPING_PATH": "typing"}, "WXKF_TYPING_PATH"),
        ({"WXKF_MEDIA_URL": "media:8084"}, "WXKF_MEDIA_URL"),
        ({"WXKF_WINDOW_MESSAGE_COUNT": "-1"}, "WXKF_WINDOW_MESSAGE_COUNT"),
        ({"WXKF_WINDOW_ENTER_S": "0"}, "WXKF_WINDOW_ENTER_S"),
        ({"WXKF_SENDER_PORT": "70000"}, "WXKF_SENDER_PORT"),
        ({"WXKF_SEND_RATE_BURST": "0"}, "WXKF_SEND_RATE_BURST"),
        ({"WXKF_RETRY_BASE_S": "10", "WXKF_RETRY_CAP_S": "5"}, "WXKF_RETRY_CAP_S"),
        # The default delays are 1, 2, ... 64 s: a longer pause would be cut to 64 s.
        ({"WXKF_RATE_LIMITED_PAUSE_S": "65"}, "WXKF_RATE_LIMITED_PAUSE_S"),
        ({"WXKF_PREFETCH": "many"}, "WXKF_PREFETCH"),
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
        settings(WXKF_APP_SECRET="", WXKF_SENDER_PORT="x")
    assert "s" * 32 not in str(info.value)
