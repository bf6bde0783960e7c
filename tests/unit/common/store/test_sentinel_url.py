"""``redis+sentinel://`` URLs: what they name, and a clear error for each mistake."""

from __future__ import annotations

import pytest

from libs.common.store import connect
from libs.common.store.sentinel import SentinelTarget, parse


def test_every_part_of_the_url_is_read() -> None:
    target = parse(
        "redis+sentinel://app:p%40ss%3Aword@s1:26380,s2,[::1]:26381/shop-cache/4"
        "?sentinel_password=guard"
    )
    assert target == SentinelTarget(
        sentinels=(("s1", 26380), ("s2", 26379), ("::1", 26381)),
        master="shop-cache",
        db=4,
        username="app",
        password="p@ss:word",
        sentinel_password="guard",
    )


def test_a_plus_in_a_password_stays_a_plus() -> None:
    target = parse("redis+sentinel://:a+b%2Bc@s1/m?sentinel_password=x+y%20z")
    assert target.password == "a+b+c"
    assert target.sentinel_password == "x+y z"


def test_the_defaults_are_db_0_and_no_credentials() -> None:
    assert parse("redis+sentinel://s1/m") == SentinelTarget(sentinels=(("s1", 26379),), master="m")
    assert parse("redis+sentinel://:pw@s1/m").password == "pw"
    assert parse("redis+sentinel://:pw@s1/m").username is None


def test_the_description_names_master_sentinels_and_db_but_no_secret() -> None:
    text = parse("redis+sentinel://u:hunter2@s1,s2:1/m/2?sentinel_password=guard").describe()
    assert text == "sentinel m via s1:26379,s2:1/2"
    assert "hunter2" not in text
    assert "guard" not in text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://s1", "names no master"),
        ("redis+sentinel://s1/", "names no master"),
        ("redis+sentinel://s1:port/m", "sentinel address 1 has a port that is not a number"),
        ("redis+sentinel://s1,/m", "sentinel address 2 has no host"),
        ("redis+sentinel://s1/m/zero", "/MASTER/DB with DB a number"),
        ("redis+sentinel://s1/m/0/extra", "/MASTER/DB with DB a number"),
        ("redis+sentinel://s1/m?db=2", "unknown option 'db'"),
    ],
)
def test_each_mistake_is_named(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://:hunter2@s1:x/m",
        # An unquoted '/' and '@' in the password push parts of it into the host and path.
        "redis+sentinel://:hun:ter@2/x@s1/m",
        "redis+sentinel://:hun/ter2@s1/m",
        "redis+sentinel://:hun?ter2@s1/m",
    ],
)
async def test_connect_reports_a_malformed_sentinel_url_without_its_password(url: str) -> None:
    with pytest.raises(ValueError, match="store URL for sentinel is malformed") as caught:
        await connect(url)
    assert "hun" not in str(caught.value)
    assert "ter" not in str(caught.value)


async def test_each_sentinel_is_asked_once_per_lookup() -> None:
    """Without its own retry setting a sentinel client takes redis-py's default (several
    retries): an unreachable sentinel would cost that many timeouts before the next one."""
    store = await connect("redis+sentinel://s1,s2/m")
    try:
        sentinels = store._sentinels  # type: ignore[attr-defined]  # the store's own detail
        for client in sentinels.sentinels:
            assert client.connection_pool.connection_kwargs["retry"].get_retries() == 0
    finally:
        await store.close()
