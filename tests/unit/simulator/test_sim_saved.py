"""The simulator's memory between runs: what a restarted WeChat still knows."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
from sim_helpers import OPENID, PNG

from services.simulator.clock import SimClock
from services.simulator.config import SimConfig
from services.simulator.errors import ApiError
from services.simulator.saved import SavedStateError, dump, load, restore, save
from services.simulator.state import SimState


def send_text(state: SimState, content: str) -> None:
    body = {"touser": OPENID, "msgtype": "text", "text": {"content": content}}
    state.send(msgspec.json.encode(body))


def test_a_restored_state_knows_tokens_windows_inboxes_and_media(tmp_path: Path) -> None:
    config = SimConfig()
    before = SimState(config, clock=SimClock())
    token, _ = before.get_stable_token(
        grant_type="client_credential", appid=config.appid, secret=config.secret
    )
    before.user_message(OPENID)
    send_text(before, "第一条")
    media = before.upload_media(PNG, filename="a.png")
    path = tmp_path / "simulator.json"
    save(before, path)

    after = load(config, path)
    assert after is not None
    after.check_token(token)  # the sender's stored token still works
    stable, _, outcome = after.tokens.stable(after.now(), force=False)
    assert (stable, outcome) == (token, "same")
    assert [d.body for d in after.inbox(OPENID)] == [{"content": "第一条"}]
    send_text(after, "第二条")  # the window opened before the restart is still open
    assert after.users[OPENID].grants["message"].count == 3
    assert after.get_media(media.media_id).data == PNG
    assert abs(after.now() - time.time()) < 60  # runs on from the real time


def test_a_moved_clock_stays_moved() -> None:
    config = SimConfig()
    before = SimState(config, clock=SimClock())
    before.clock.advance(3 * 86400)
    after = restore(config, dump(before), source="saved")
    assert after is not None
    assert after.now() - time.time() > 3 * 86400 - 60


def test_another_appids_state_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "simulator.json"
    save(SimState(SimConfig()), path)
    assert load(SimConfig(appid="wx0000000000000001"), path) is None


def test_no_file_is_an_empty_start_and_garbage_a_clear_error(tmp_path: Path) -> None:
    assert load(SimConfig(), tmp_path / "missing.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SavedStateError, match=f"{bad} is not a saved simulator state"):
        load(SimConfig(), bad)


def test_what_was_refused_before_stays_refused(tmp_path: Path) -> None:
    config = SimConfig()
    before = SimState(config, clock=SimClock())
    path = tmp_path / "simulator.json"
    save(before, path)
    after = load(config, path)
    assert after is not None
    with pytest.raises(ApiError) as refused:
        send_text(after, "nobody wrote")
    assert refused.value.errcode == 45015
