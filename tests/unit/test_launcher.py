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
