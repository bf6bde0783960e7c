"""IngressSettings: defaults, the effective push mode, and one clear error per bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.common.settings import SettingsError, load
from services.ingress.settings import IngressSettings

AES_KEY = "A" * 43
BASE = {"WXKF_APPID": "wxba5fad812f8e6fb9", "WXKF_TOKEN": "AAAAA"}


def test_defaults() -> None:
    settings = load(IngressSettings, BASE)
    assert settings.mode == "plain"
    assert settings.push_format == "auto"
    assert settings.push_path == "/wechat"
    assert settings.ingress_port == 8080
    assert 0 < settings.decision_budget_ms <= 3000
    assert settings.dedupe_ttl_s > settings.max_push_age_s > 20


def test_mode_defaults_to_safe_with_an_aes_key() -> None:
    settings = load(IngressSettings, {**BASE, "WXKF_AES_KEY": AES_KEY})
    assert settings.mode == "safe"


def test_explicit_mode_wins() -> None:
    settings = load(
        IngressSettings, {**BASE, "WXKF_AES_KEY": AES_KEY, "WXKF_PUSH_MODE": "compatible"}
    )
    assert settings.mode == "compatible"


def test_secrets_do_not_show() -> None:
    settings = load(IngressSettings, {**BASE, "WXKF_AES_KEY": AES_KEY})
    assert AES_KEY not in repr(settings)
    assert "AAAAA" not in repr(settings)


def test_token_from_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file\n")
    env = {"WXKF_APPID": "wx1", "WXKF_TOKEN_FILE": str(path)}
    assert load(IngressSettings, env).token == "from-file"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"WXKF_TOKEN": None}, "WXKF_TOKEN"),
        ({"WXKF_TOKEN": ""}, "WXKF_TOKEN"),
        ({"WXKF_APPID": None}, "WXKF_APPID"),
        ({"WXKF_PUSH_MODE": "safe"}, "WXKF_AES_KEY"),
        ({"WXKF_PUSH_MODE": "compatible"}, "WXKF_AES_KEY"),
        ({"WXKF_PUSH_MODE": "secret"}, "WXKF_PUSH_MODE"),
        ({"WXKF_PUSH_FORMAT": "yaml"}, "WXKF_PUSH_FORMAT"),
        ({"WXKF_PUSH_PATH": "wechat"}, "WXKF_PUSH_PATH"),
        ({"WXKF_INGRESS_PORT": "http"}, "WXKF_INGRESS_PORT"),
        ({"WXKF_INGRESS_PORT": "70000"}, "WXKF_INGRESS_PORT"),
        ({"WXKF_READ_TIMEOUT_S": "0"}, "WXKF_READ_TIMEOUT_S"),
        ({"WXKF_READ_TIMEOUT_S": "60"}, "WXKF_READ_TIMEOUT_S"),
        ({"WXKF_IDLE_TIMEOUT_S": "0"}, "WXKF_IDLE_TIMEOUT_S"),
        ({"WXKF_MAX_CONNECTIONS_PER_SOURCE": "-1"}, "WXKF_MAX_CONNECTIONS_PER_SOURCE"),
        ({"WXKF_MAX_BODY_BYTES": "10"}, "WXKF_MAX_BODY_BYTES"),
        ({"WXKF_MAX_PUSH_AGE_S": "-1"}, "WXKF_MAX_PUSH_AGE_S"),
        ({"WXKF_DECISION_BUDGET_MS": "5000"}, "WXKF_DECISION_BUDGET_MS"),
        ({"WXKF_DECISION_BUDGET_MS": "0"}, "WXKF_DECISION_BUDGET_MS"),
        ({"WXKF_DEDUPE_TTL_S": "60"}, "WXKF_DEDUPE_TTL_S"),
        ({"WXKF_DEDUPE_PENDING_TTL_S": "1"}, "WXKF_DEDUPE_PENDING_TTL_S"),
        ({"WXKF_AES_KEY": "too-short"}, "WXKF_AES_KEY"),
        ({"WXKF_MAX_IN_FLIGHT": "0"}, "WXKF_MAX_IN_FLIGHT"),
        ({"WXKF_PUBLISH_CONFIRM_MS": "0"}, "WXKF_PUBLISH_CONFIRM_MS"),
        ({"WXKF_PUBLISH_CONFIRM_MS": "3000"}, "WXKF_PUBLISH_CONFIRM_MS"),
        ({"WXKF_PUBLISH_CONFIRM_MS": "soon"}, "WXKF_PUBLISH_CONFIRM_MS"),
        ({"WXKF_SPOOL_LIMIT": "-1"}, "WXKF_SPOOL_LIMIT"),
        ({"WXKF_SPOOL_LIMIT": "lots"}, "WXKF_SPOOL_LIMIT"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str | None], names: str) -> None:
    merged = {k: v for k, v in {**BASE, **env}.items() if v is not None}
    with pytest.raises(SettingsError) as info:
        load(IngressSettings, merged)
    assert names in str(info.value)


def test_bad_aes_key_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as info:
        load(IngressSettings, {**BASE, "WXKF_AES_KEY": "x" * 42 + "!"})
    assert "x" * 42 not in str(info.value)


def test_replay_window_off_still_needs_a_dedupe_ttl() -> None:
    settings = load(IngressSettings, {**BASE, "WXKF_MAX_PUSH_AGE_S": "0"})
    assert settings.max_push_age_s == 0
    assert settings.dedupe_ttl_s > 0
