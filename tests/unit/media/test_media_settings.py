from __future__ import annotations

from pathlib import Path

import pytest

from libs.common.settings import SettingsError, load
from services.media.settings import MediaSettings
from services.media.sniff import GIF, JPEG, PNG

BASE = {"WXKF_APPID": "wx1", "WXKF_APP_SECRET": "s3cret"}


def test_defaults_follow_wechat() -> None:
    settings = load(MediaSettings, BASE)
    assert settings.media_port == 8084
    assert settings.media_max_bytes == 2 * 1024 * 1024
    assert settings.allowed_kinds == {JPEG, PNG, GIF}
    assert settings.internal_token is None
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
        ("WXKF_MEDIA_TYPES", "jpeg,webp", "WXKF_MEDIA_TYPES: expected `str` matching"),
        ("WXKF_MEDIA_TYPES", " , ", "WXKF_MEDIA_TYPES: expected `str` matching"),
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
