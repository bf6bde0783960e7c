from __future__ import annotations

import os
from pathlib import Path

import pytest

from libs.common.settings import SettingsError, load
from services.media.settings import MediaSettings
from services.media.sniff import GIF, JPEG, PNG
from tests.support.service_alone import start_alone

BASE = {"WXKF_APPID": "wx1", "WXKF_APP_SECRET": "s3cret", "WXKF_INTERNAL_TOKEN": "t0ken"}


def test_defaults_follow_wechat() -> None:
    settings = load(MediaSettings, BASE)
    assert settings.media_port == 8084
    assert settings.media_max_bytes == 2 * 1024 * 1024
    assert settings.allowed_kinds == {JPEG, PNG, GIF}
    assert not settings.media_open
    assert not settings.archive_enabled
    assert settings.assets_dir is None
    assert settings.media_cache_dir is None


def test_values_come_from_the_environment() -> None:
    env = {
        **BASE,
        "WXKF_MEDIA_PORT": "9000",
        "WXKF_INTERNAL_TOKEN": "bearer-value-42",
        "WXKF_MEDIA_MAX_BYTES": "1000",
        "WXKF_MEDIA_TYPES": "JPG, png",
        "WXKF_ARCHIVE_DIR": "/srv/archive",
        "WXKF_MEDIA_REUSE_MARGIN_H": "1.5",
    }
    settings = load(MediaSettings, env)
    assert settings.media_port == 9000
    assert settings.internal_token == "bearer-value-42"
    assert "bearer-value-42" not in repr(settings)
    assert settings.media_max_bytes == 1000
    assert settings.allowed_kinds == {JPEG, PNG}
    assert settings.archive_enabled
    assert settings.media_reuse_margin_h == 1.5


def test_the_internal_token_may_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file\n")
    settings = load(MediaSettings, {**BASE, "WXKF_INTERNAL_TOKEN_FILE": str(path)})
    assert settings.internal_token == "from-file"


@pytest.mark.parametrize(
    ("var", "value", "says"),
    [
        ("WXKF_MEDIA_TYPES", "jpeg,webp", "WXKF_MEDIA_TYPES: invalid enum value 'webp'; each item"),
        ("WXKF_MEDIA_TYPES", " , ", "WXKF_MEDIA_TYPES: expected `array` of length >= 1"),
        ("WXKF_MEDIA_TYPES", "png;gif", "WXKF_MEDIA_TYPES: invalid enum value 'png;gif'"),
        ("WXKF_MEDIA_MAX_BYTES", "0", "WXKF_MEDIA_MAX_BYTES: expected `int` >= 1"),
        ("WXKF_MEDIA_MAX_BYTES", "two", "WXKF_MEDIA_MAX_BYTES: expected `int`"),
        ("WXKF_MEDIA_CACHE_MAX_BYTES", "-1", "WXKF_MEDIA_CACHE_MAX_BYTES: expected `int` >= 1"),
        ("WXKF_MEDIA_REUSE_MARGIN_H", "72", "WXKF_MEDIA_REUSE_MARGIN_H: expected `float` < 72"),
        ("WXKF_MEDIA_UPSTREAM_DEADLINE_S", "0", "WXKF_MEDIA_UPSTREAM_DEADLINE_S: expected"),
        ("WXKF_ARCHIVE_MAX_BYTES", "0", "WXKF_ARCHIVE_MAX_BYTES: expected `int` >= 1"),
    ],
)
def test_bad_values_name_their_variable(var: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(MediaSettings, {**BASE, var: value})
    assert str(caught.value).startswith(says)
    assert repr(value) in str(caught.value)


def test_the_app_secret_is_required() -> None:
    with pytest.raises(SettingsError, match="WXKF_APP_SECRET is required"):
        load(MediaSettings, {"WXKF_APPID": "wx1"})


@pytest.mark.parametrize("open_", [None, "false", "0"])
def test_without_the_internal_token_media_does_not_start(open_: str | None) -> None:
    env = {k: v for k, v in BASE.items() if k != "WXKF_INTERNAL_TOKEN"}
    if open_ is not None:
        env["WXKF_MEDIA_OPEN"] = open_
    with pytest.raises(SettingsError) as caught:
        load(MediaSettings, env)
    message = str(caught.value)
    assert message.startswith("WXKF_INTERNAL_TOKEN: is required")
    assert "WXKF_MEDIA_OPEN=true" in message


def test_an_empty_internal_token_is_no_token() -> None:
    with pytest.raises(SettingsError, match="WXKF_INTERNAL_TOKEN: is required"):
        load(MediaSettings, {**BASE, "WXKF_INTERNAL_TOKEN": ""})


def test_media_runs_open_only_when_told() -> None:
    env = {k: v for k, v in BASE.items() if k != "WXKF_INTERNAL_TOKEN"}
    settings = load(MediaSettings, {**env, "WXKF_MEDIA_OPEN": "true"})
    assert settings.media_open
    assert settings.internal_token is None


def test_the_process_exits_before_it_binds_with_the_variable_named() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXKF_")}
    env |= {k: v for k, v in BASE.items() if k != "WXKF_INTERNAL_TOKEN"}
    result = start_alone("media", env)
    assert result.returncode == 2
    assert result.stderr.startswith("wxkf: configuration error: WXKF_INTERNAL_TOKEN: is required")
    assert "runner.listening" not in result.stdout + result.stderr
