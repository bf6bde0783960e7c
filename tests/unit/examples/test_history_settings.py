"""The history's settings: ``WXKF_*`` names, defaults, and an error that names the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.extension.settings import HistorySettings
from libs.common.settings import SettingsError, load

APP = {"WXKF_APPID": "wx00000000000000e1"}


def test_defaults_and_names(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    settings = load(HistorySettings, {**APP, "WXKF_HISTORY_DB": db})
    assert settings.history_db == db
    assert settings.history_port == 8086
    assert settings.bus_url == "memory://"
    assert settings.history_queue == "wxkf.ext.history"
    loaded = load(
        HistorySettings,
        {
            **APP,
            "WXKF_HISTORY_DB": db,
            "WXKF_HISTORY_PORT": "9186",
            "WXKF_BUS_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
            "WXKF_HISTORY_PREFETCH": "4",
            "WXKF_HISTORY_PAGE_MAX": "50",
            "WXKF_HISTORY_BUSY_TIMEOUT_S": "0.5",
            "WXKF_HISTORY_QUEUE": "shop-7.history_v2",
        },
    )
    assert loaded.history_queue == "shop-7.history_v2"
    assert (loaded.history_port, loaded.history_prefetch, loaded.history_page_max) == (9186, 4, 50)
    assert loaded.history_busy_timeout_s == 0.5
    assert loaded.bus_url.startswith("amqp://")


def test_in_memory_database_is_allowed() -> None:
    assert load(HistorySettings, {**APP, "WXKF_HISTORY_DB": ":memory:"}).history_db == ":memory:"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "WXKF_HISTORY_DB is required but not set"),
        ({"WXKF_HISTORY_DB": " "}, "WXKF_HISTORY_DB: must name a file"),
        ({"WXKF_HISTORY_DB": "/no/such/dir/h.db"}, "WXKF_HISTORY_DB: the directory of"),
        ({"WXKF_HISTORY_PORT": "65536"}, "WXKF_HISTORY_PORT: expected `int` <= 65535"),
        ({"WXKF_HISTORY_PORT": "http"}, "WXKF_HISTORY_PORT: expected `int`"),
        ({"WXKF_HISTORY_PREFETCH": "0"}, "WXKF_HISTORY_PREFETCH: expected `int` >= 1"),
        ({"WXKF_HISTORY_PAGE_MAX": "0"}, "WXKF_HISTORY_PAGE_MAX: expected `int` >= 1"),
        ({"WXKF_HISTORY_BUSY_TIMEOUT_S": "0"}, "WXKF_HISTORY_BUSY_TIMEOUT_S: expected `float` > 0"),
        ({"WXKF_HISTORY_QUEUE": "amq.history"}, "WXKF_HISTORY_QUEUE: expected `str` matching"),
        ({"WXKF_HISTORY_QUEUE": "my history"}, "WXKF_HISTORY_QUEUE: expected `str` matching"),
        ({"WXKF_HISTORY_QUEUE": ""}, "WXKF_HISTORY_QUEUE: expected `str` matching"),
        ({"WXKF_HISTORY_QUEUE": "q" * 201}, "WXKF_HISTORY_QUEUE: expected `str` matching"),
    ],
)
def test_bad_settings_name_their_variable(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    base = {**APP, "WXKF_HISTORY_DB": str(tmp_path / "h.db")} if env else dict(APP)
    with pytest.raises(SettingsError) as info:
        load(HistorySettings, {**base, **env})
    assert str(info.value).startswith(message)


def test_a_directory_is_not_a_database_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="is a directory"):
        load(HistorySettings, {**APP, "WXKF_HISTORY_DB": str(tmp_path)})


def test_the_appid_is_required(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="WXKF_APPID is required"):
        load(HistorySettings, {"WXKF_HISTORY_DB": str(tmp_path / "h.db")})
