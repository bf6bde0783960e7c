from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import pytest
from structlog.testing import capture_logs

from services.media.cache import DiskCache

CHUNK = 256 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    directory: Path, clock: Clock, *, max_bytes: int = 400, max_age_s: float = 100
) -> DiskCache:
    cache = DiskCache(directory, max_bytes=max_bytes, max_age_s=max_age_s, clock=clock)
    cache.load()
    return cache


def put(cache: DiskCache, media_id: str, data: bytes, mime: str = "image/png") -> None:
    writer = cache.writer(media_id, mime, len(data))
    assert writer is not None
    writer.write(data[: len(data) // 2])
    writer.write(data[len(data) // 2 :])
    assert writer.commit() is not None


def test_a_committed_download_is_served_from_disk(tmp_path: Path) -> None:
    cache = make(tmp_path, Clock())
    put(cache, "id-1", b"x" * 50)
    entry = cache.get("id-1")
    assert entry is not None
    assert entry.path.read_bytes() == b"x" * 50
    assert (entry.content_type, entry.ext, entry.size) == ("image/png", "png", 50)
    assert cache.get("id-2") is None


def test_the_least_recently_used_entry_is_evicted_first(tmp_path: Path) -> None:
    cache = make(tmp_path, Clock(), max_bytes=200)
    for key in "abcd":
        put(cache, key, key.encode() * 50)
    assert cache.get("a") is not None  # a is now the most recent; b the least
    put(cache, "e", b"e" * 50)
    assert cache.get("b") is None
    assert all(cache.get(k) is not None for k in "acde")
    assert cache.total_bytes == 200
    assert len(list(tmp_path.iterdir())) == 4


def test_an_item_larger_than_a_quarter_of_the_cache_is_not_cached(tmp_path: Path) -> None:
    cache = make(tmp_path, Clock(), max_bytes=400)
    assert cache.writer("big", "image/png", 101) is None
    assert cache.writer("fits", "image/png", 100) is not None


def test_only_images_of_known_length_are_cached(tmp_path: Path) -> None:
    cache = make(tmp_path, Clock())
    assert cache.writer("j", "application/json", 10) is None
    assert cache.writer("n", "image/png", None) is None


def test_a_short_download_is_never_committed(tmp_path: Path) -> None:
    cache = make(tmp_path, Clock())
    writer = cache.writer("id", "image/jpeg", 100)
    assert writer is not None
    writer.write(b"x" * 60)
    assert writer.commit() is None
    assert cache.get("id") is None
    assert list(tmp_path.iterdir()) == []


def test_an_aborted_download_leaves_nothing(tmp_path: Path) -> None:
    cache = make(tmp_path, Clock())
    writer = cache.writer("id", "image/gif", 100)
    assert writer is not None
    writer.write(b"x" * 60)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def full_disk() -> BinaryIO:
    """A file every write to which fails with ENOSPC, as on a full disk."""
    return Path("/dev/full").open("wb")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_failing_disk_stops_the_caching_not_the_download(tmp_path: Path) -> None:
    cache = make(tmp_path, Clock(), max_bytes=8 * CHUNK)
    writer = cache.writer("id", "image/png", 2 * CHUNK)
    assert writer is not None
    writer._file.close()
    writer._file = full_disk()
    with capture_logs() as logs:
        writer.write(b"x" * CHUNK)  # ENOSPC: logged once, the download goes on
        writer.write(b"x" * CHUNK)
        assert writer.commit() is None
    assert [e["event"] for e in logs] == ["media.cache_write_failed"]
    assert cache.get("id") is None
    assert list(tmp_path.iterdir()) == []


def test_entries_expire_with_age(tmp_path: Path) -> None:
    clock = Clock()
    cache = make(tmp_path, clock, max_age_s=100)
    put(cache, "id", b"x" * 10)
    clock.now += 99
    assert cache.get("id") is not None
    clock.now += 1
    assert cache.get("id") is None
    assert list(tmp_path.iterdir()) == []


def test_a_restart_finds_the_entries_and_drops_partial_files(tmp_path: Path) -> None:
    clock = Clock()
    cache = make(tmp_path, clock, max_bytes=250)
    put(cache, "old", b"o" * 50)
    put(cache, "new", b"n" * 50)
    old = cache.get("old")
    assert old is not None
    os.utime(old.path, (1, 1))  # oldest by modification time
    (tmp_path / "deadbeef.partial").write_bytes(b"half")
    clock.now = 2.0e9  # as far as the real clock is from the file times

    again = DiskCache(tmp_path, max_bytes=60, max_age_s=1e12, clock=clock)
    again.load()
    assert again.get("old") is None  # evicted first to fit the smaller cap
    assert again.get("new") is not None
    assert not (tmp_path / "deadbeef.partial").exists()


def test_forget_removes_the_file(tmp_path: Path) -> None:
    cache = make(tmp_path, Clock())
    put(cache, "id", b"x" * 10)
    cache.forget("id")
    assert cache.get("id") is None
    assert list(tmp_path.iterdir()) == []
    assert cache.total_bytes == 0
