"""Settings: WXKF_* into frozen Structs, *_FILE for secrets, errors that name the variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

import msgspec
import pytest

from libs.common.settings import (
    CommonSettings,
    Secret,
    SettingsError,
    WeChatApiSettings,
    describe,
    env_name,
    load,
    load_or_exit,
    refuse_memory,
)


class PortSettings(CommonSettings, frozen=True, kw_only=True):
    port: int = 8080
    ratio: float = 0.5
    enabled: bool = False


BASE = {"WXKF_APPID": "wx0123456789abcdef"}


def test_defaults_and_values_from_the_environment() -> None:
    settings = load(PortSettings, {**BASE, "WXKF_PORT": "9000", "WXKF_ENABLED": "true"})
    assert settings.appid == "wx0123456789abcdef"
    assert settings.port == 9000
    assert settings.enabled is True
    assert settings.ratio == 0.5
    assert settings.bus_url == "memory://"
    assert settings.store_url == "memory://"
    assert settings.log_format is None
    assert settings.shutdown_grace_s == 20.0


def test_overrides_win_over_the_environment() -> None:
    settings = load(PortSettings, {**BASE, "WXKF_PORT": "9000"}, port=9100)
    assert settings.port == 9100


def test_settings_are_frozen() -> None:
    settings = load(PortSettings, BASE)
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_variables_without_the_prefix_are_ignored() -> None:
    settings = load(PortSettings, {**BASE, "PORT": "1", "wxkf_port": "2"})
    assert settings.port == 8080


def test_env_name() -> None:
    assert env_name("store_url") == "WXKF_STORE_URL"


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(SettingsError, match=r"^WXKF_APPID is required but not set$"):
        load(PortSettings, {})


def test_a_missing_secret_mentions_its_file_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        load(WeChatApiSettings, BASE)
    assert str(caught.value) == (
        "WXKF_APP_SECRET is required but not set (or WXKF_APP_SECRET_FILE)"
    )


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("WXKF_PORT", "eighty", "WXKF_PORT: expected `int`, got `str` (value 'eighty')"),
        ("WXKF_RATIO", "half", "WXKF_RATIO: expected `float`, got `str` (value 'half')"),
        ("WXKF_ENABLED", "perhaps", "WXKF_ENABLED: expected `bool`, got `str` (value 'perhaps')"),
    ],
)
def test_a_malformed_value_is_named_with_the_value(var: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(PortSettings, {**BASE, var: value})
    assert str(caught.value) == expected


def test_a_value_outside_the_allowed_set_is_named() -> None:
    with pytest.raises(SettingsError, match=r"^WXKF_LOG_FORMAT: .*'xml'"):
        load(PortSettings, {**BASE, "WXKF_LOG_FORMAT": "xml"})


def test_a_secret_comes_from_the_environment_and_hides_in_repr() -> None:
    settings = load(WeChatApiSettings, {**BASE, "WXKF_APP_SECRET": "s3cr3t-value"})
    assert settings.app_secret == "s3cr3t-value"
    assert isinstance(settings.app_secret, Secret)
    assert "s3cr3t-value" not in repr(settings)
    assert "Secret('***')" in repr(settings)


def test_a_secret_comes_from_its_file(tmp_path: Path) -> None:
    path = tmp_path / "app_secret"
    path.write_text("from-a-file\n", encoding="utf-8")
    env = {**BASE, "WXKF_APP_SECRET_FILE": str(path), "WXKF_APP_SECRET": "from-env"}
    settings = load(WeChatApiSettings, env)
    assert settings.app_secret == "from-a-file"  # the file wins: that is how Secrets mount
    assert isinstance(settings.app_secret, Secret)


def test_an_unreadable_secret_file_is_named_without_content(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SettingsError) as caught:
        load(WeChatApiSettings, {**BASE, "WXKF_APP_SECRET_FILE": str(missing)})
    message = str(caught.value)
    assert message.startswith("WXKF_APP_SECRET_FILE: cannot read ")
    assert str(missing) in message


def test_file_variables_are_only_for_secrets(tmp_path: Path) -> None:
    path = tmp_path / "port"
    path.write_text("9999", encoding="utf-8")
    settings = load(PortSettings, {**BASE, "WXKF_PORT_FILE": str(path)})
    assert settings.port == 8080


def test_urls_with_credentials_are_secrets(tmp_path: Path) -> None:
    url = "amqp://wxkf:brokerpass@rabbit:5672/wxkf"
    path = tmp_path / "store_url"
    path.write_text("redis://:redispass@cache:6379/0", encoding="utf-8")
    settings = load(CommonSettings, {**BASE, "WXKF_BUS_URL": url, "WXKF_STORE_URL_FILE": str(path)})
    assert settings.bus_url == url
    assert settings.store_url == "redis://:redispass@cache:6379/0"
    assert "brokerpass" not in repr(settings)
    assert "redispass" not in repr(settings)


def test_a_malformed_secret_is_named_without_its_value() -> None:
    with pytest.raises(SettingsError) as caught:
        load(WeChatApiSettings, BASE, app_secret=987654321)
    message = str(caught.value)
    assert message.startswith("WXKF_APP_SECRET: ")
    assert "987654321" not in message


def test_secret_repr() -> None:
    assert repr(Secret("x")) == "Secret('***')"
    assert repr(Secret("")) == "Secret('')"
    assert f"{Secret('usable')}" == "usable"  # the value itself is still there to use


def test_the_real_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WXKF_APPID", "wxfromenv")
    monkeypatch.setenv("WXKF_PORT", "7000")
    settings = load(PortSettings)
    assert (settings.appid, settings.port) == ("wxfromenv", 7000)
    assert os.environ["WXKF_PORT"] == "7000"


def test_load_or_exit_prints_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WXKF_APPID", raising=False)
    monkeypatch.setenv("WXKF_APP_SECRET", "never-printed")
    monkeypatch.setenv("WXKF_WECHAT_TIMEOUT_S", "soon")
    with pytest.raises(SystemExit) as caught:
        load_or_exit(WeChatApiSettings)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("wxkf: configuration error: WXKF_")
    assert "never-printed" not in err


def test_settings_are_plain_structs_for_msgspec() -> None:
    settings = load(PortSettings, BASE)
    assert msgspec.structs.asdict(settings)["port"] == 8080


class CheckedSettings(CommonSettings, frozen=True, kw_only=True):
    low: int = 1
    high: int = 2

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("WXKF_LOW must not exceed WXKF_HIGH")
        if self.high > 100:
            raise ValueError("must be at most 100 - at `$.high`")


def test_a_cross_field_check_without_a_field_path_keeps_its_own_message() -> None:
    with pytest.raises(SettingsError, match=r"^WXKF_LOW must not exceed WXKF_HIGH$"):
        load(CheckedSettings, {**BASE, "WXKF_LOW": "5", "WXKF_HIGH": "3"})


def test_a_check_that_names_its_field_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^WXKF_HIGH: must be at most 100"):
        load(CheckedSettings, {**BASE, "WXKF_HIGH": "101"})


def test_settings_reference_lists_every_variable_with_its_docstring() -> None:
    from libs.common.settings import describe

    rows = {row.variable: row for row in describe(CommonSettings)}
    assert rows["WXKF_APPID"].default == "required"
    assert rows["WXKF_BUS_URL"].secret is True
    assert "amqp://" in rows["WXKF_BUS_URL"].doc
    assert rows["WXKF_LOG_FORMAT"].type == "console | json"


Colour = Literal["red", "green", "blue"]


class ListSettings(CommonSettings, frozen=True, kw_only=True):
    RETIRED: ClassVar[dict[str, str]] = {"WXKF_COLOR": "it is WXKF_COLOURS now; rename it"}

    colours: frozenset[Colour] = frozenset({"red"})
    paths: tuple[str, ...] = ()


def test_a_collection_is_read_as_a_comma_separated_list() -> None:
    settings = load(ListSettings, {**BASE, "WXKF_COLOURS": " Red, blue ,", "WXKF_PATHS": "/a,/B"})
    assert settings.colours == {"red", "blue"}  # names from a fixed set, in any case
    assert settings.paths == ("/a", "/B")  # other items as written
    assert load(ListSettings, {**BASE, "WXKF_COLOURS": ""}).colours == frozenset()
    assert load(ListSettings, BASE, colours="green").colours == {"green"}  # an override too


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "red,pink",
            "WXKF_COLOURS: invalid enum value 'pink'; each item one of: blue, green, red "
            "(value 'red,pink')",
        ),
        (
            "red;blue",
            "WXKF_COLOURS: invalid enum value 'red;blue'; each item one of: blue, green, red "
            "(value 'red;blue')",
        ),
    ],
)
def test_a_bad_item_names_the_variable_the_item_and_what_is_allowed(
    value: str, expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(ListSettings, {**BASE, "WXKF_COLOURS": value})
    assert str(caught.value) == expected


def test_a_list_is_documented_as_one() -> None:
    (colours,) = [f for f in describe(ListSettings) if f.variable == "WXKF_COLOURS"]
    assert colours.type == "comma-separated blue | green | red"
    assert colours.default == "'red'"


@pytest.mark.parametrize("variable", ["WXKF_COLOR", "WXKF_COLOR_FILE"])
def test_a_variable_no_longer_read_stops_the_load_saying_what_to_do(variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(ListSettings, {**BASE, variable: "red"})
    assert str(caught.value) == "WXKF_COLOR is no longer read: it is WXKF_COLOURS now; rename it"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "WXKF_BUS_URL"),  # the default
        ({"WXKF_BUS_URL": "amqp://h/"}, "WXKF_STORE_URL"),
        ({"WXKF_STORE_URL": "redis://h/0"}, "WXKF_BUS_URL"),
    ],
)
def test_memory_is_refused_to_a_service_without_the_others(
    env: dict[str, str], variable: str
) -> None:
    settings = load(PortSettings, {**BASE, **env})
    with pytest.raises(SettingsError) as caught:
        refuse_memory(settings, alone="python -m x")
    message = str(caught.value)
    assert message.startswith(f"{variable}: memory:// serves only the four services together")
    assert "python -m x runs without the others" in message
    shared = load(PortSettings, {**BASE, "WXKF_BUS_URL": "amqp://h/", "WXKF_STORE_URL": "redis://"})
    refuse_memory(shared, alone="python -m x")  # nothing to refuse


def test_a_service_started_on_its_own_refuses_memory_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WXKF_APPID", "wx1")
    monkeypatch.delenv("WXKF_BUS_URL", raising=False)
    with pytest.raises(SystemExit) as caught:
        load_or_exit(PortSettings, alone="python -m services.x")
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("wxkf: configuration error: WXKF_BUS_URL: memory:// serves only")
    assert err.count("\n") == 1
    assert load_or_exit(PortSettings).bus_url == "memory://"  # without ``alone``: a library's
