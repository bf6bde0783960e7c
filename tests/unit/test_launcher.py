"""``wxkf run``'s settings: the media API never runs open; every service in one process
without a token gets one made for the run, shared by media and the sender."""

from __future__ import annotations

import pytest

from libs.common.settings import SettingsError
from services.launcher import SERVICES, run_settings

ENV = {"WXKF_APPID": "wx1", "WXKF_APP_SECRET": "s", "WXKF_TOKEN": "t"}


def test_run_all_without_a_token_makes_one_for_media_and_the_sender() -> None:
    settings = run_settings(list(SERVICES), ENV)
    media, sender = settings["media"], settings["sender"]
    assert not media.media_open  # type: ignore[attr-defined]
    token = media.internal_token  # type: ignore[attr-defined]
    assert len(token or "") >= 32
    assert sender.internal_token == token  # type: ignore[attr-defined]
    # Another run, another token.
    assert run_settings(list(SERVICES), ENV)["media"].internal_token != token  # type: ignore[attr-defined]


def test_run_all_with_a_token_keeps_it() -> None:
    settings = run_settings(list(SERVICES), {**ENV, "WXKF_INTERNAL_TOKEN": "secret-token"})
    assert settings["media"].internal_token == "secret-token"  # type: ignore[attr-defined]


@pytest.mark.parametrize("names", [["media"], ["media", "sender"]])
def test_media_without_the_others_needs_its_token(names: list[str]) -> None:
    with pytest.raises(SettingsError, match="media: WXKF_INTERNAL_TOKEN: is required"):
        run_settings(names, ENV)


@pytest.mark.parametrize("names", [["sender"], ["ingress", "router"]])
def test_fewer_than_the_four_refuse_memory(names: list[str]) -> None:
    with pytest.raises(SettingsError) as caught:
        run_settings(names, ENV)  # type: ignore[arg-type]
    lines = str(caught.value).splitlines()
    assert len(lines) == len(names)
    for name, line in zip(names, lines, strict=True):
        assert line.startswith(f"{name}: WXKF_BUS_URL: memory:// serves only the four services")
        assert f"wxkf run {' '.join(names)} runs without the others" in line


def test_fewer_than_the_four_run_on_a_broker_and_redis() -> None:
    env = {**ENV, "WXKF_BUS_URL": "amqp://guest:guest@127.0.0.1/", "WXKF_STORE_URL": "redis://"}
    assert set(run_settings(["sender"], env)) == {"sender"}


def test_all_four_share_memory() -> None:
    assert run_settings(list(SERVICES), ENV)["router"].bus_url == "memory://"
