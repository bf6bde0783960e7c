"""A bounded on-disk LRU of downloaded media, keyed by media_id.

One directory per replica (an ``emptyDir`` is enough). Entries are written to a temporary
file while the download streams and committed by an atomic rename only when every byte
arrived, so a broken download never leaves a partial entry. The index lives in memory and
is rebuilt from the directory at start (oldest first by modification time).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO

import msgspec
import structlog

from services.media import metrics
from services.media.sniff import KINDS, kind_for_mime

log = structlog.get_logger(__name__)

_PARTIAL = ".partial"
_EXTS = {k.ext: k for k in KINDS}


class CacheEntry(msgspec.Struct, frozen=True, kw_only=True):
    path: Path
    size: int
    content_type: str
    ext: str
    stored_at: float


class DiskCache:
    """LRU over files in ``directory``, holding at most ``max_bytes`` in total."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        max_age_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_entry_bytes = max(1, max_bytes // 4)
        """Bigger items are streamed through uncached, so one item cannot flush the rest."""
        self.max_age_s = max_age_s
        self._clock = clock
        self._index: OrderedDict[str, CacheEntry] = OrderedDict()
        self._bytes = 0

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._index)

    # Blocking file-system work, done once at start (callers run it in a thread).
    def load(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        found: list[tuple[float, str, CacheEntry]] = []
        for path in self.directory.iterdir():
            if path.name.endswith(_PARTIAL):
                path.unlink(missing_ok=True)  # left by a process that died mid-download
                continue
            stem, _, ext = path.name.partition(".")
            kind = _EXTS.get(ext)
            if kind is None or not path.is_file():
                continue
            stat = path.stat()
            entry = CacheEntry(
                path=path,
                size=stat.st_size,
                content_type=kind.mime,
                ext=ext,
                stored_at=stat.st_mtime,
            )
            found.append((stat.st_mtime, stem, entry))
        for _, stem, entry in sorted(found, key=lambda item: item[0]):
            self._index[stem] = entry
            self._bytes += entry.size
        self._evict()
        self._report()
        log.info("media.cache.loaded", entries=len(self._index), bytes=self._bytes)

    def get(self, media_id: str) -> CacheEntry | None:
        """The entry if present and young enough; marks it most recently used."""
        key = _key(media_id)
        entry = self._index.get(key)
        if entry is None:
            return None
        if self._clock() - entry.stored_at >= self.max_age_s or not entry.path.exists():
            self._drop(key)
            return None
        self._index.move_to_end(key)
        return entry

    def forget(self, media_id: str) -> None:
        self._drop(_key(media_id))

    def writer(self, media_id: str, content_type: str, size: int | None) -> CacheWriter | None:
        """A writer for a download about to stream, or None when it will not be cached."""
        kind = kind_for_mime(content_type)
        if kind is None or size is None or size > self.max_entry_bytes:
            return None
        return CacheWriter(self, _key(media_id), kind.mime, kind.ext, size)

    def now(self) -> float:
        return self._clock()

    def add(self, key: str, entry: CacheEntry) -> None:
        """Index a committed file (from :class:`CacheWriter`), evicting to stay in bounds."""
        old = self._index.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._index[key] = entry
        self._bytes += entry.size
        self._evict()
        self._report()

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._index:
            _, entry = self._index.popitem(last=False)
            self._bytes -= entry.size
            entry.path.unlink(missing_ok=True)
            metrics.CACHE_EVICTIONS.inc()

    def _drop(self, key: str) -> None:
        entry = self._index.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size
            entry.path.unlink(missing_ok=True)
            self._report()

    def _report(self) -> None:
        metrics.CACHE_BYTES.set(self._bytes)
        metrics.CACHE_ENTRIES.set(len(self._index))


class CacheWriter:
    """Collects one download; :meth:`commit` keeps it only if every expected byte arrived.

    A failing disk (full, read-only) stops the caching, never the download.
    """

    def __init__(self, cache: DiskCache, key: str, mime: str, ext: str, size: int) -> None:
        self._cache = cache
        self._key = key
        self._mime = mime
        self._ext = ext
        self._expected = size
        self._written = 0
        self._failed = False
        fd, name = tempfile.mkstemp(dir=cache.directory, prefix=key, suffix=_PARTIAL)
        self._path = Path(name)
        self._file: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        # On the loop: a worker thread per chunk would cost more than the write (the hops and
        # the GIL passed back and forth) and stream no faster.
        if self._failed:
            return
        try:
            self._file.write(chunk)
        except OSError as exc:
            self._fail(exc)
            return
        self._written += len(chunk)

    def commit(self) -> CacheEntry | None:
        if self._failed or self._written != self._expected:
            self.abort()
            return None
        final = self._cache.directory / f"{self._key}.{self._ext}"
        try:
            self._file.close()
            os.replace(self._path, final)
        except OSError as exc:
            self._fail(exc)
            return None
        entry = CacheEntry(
            path=final,
            size=self._written,
            content_type=self._mime,
            ext=self._ext,
            stored_at=self._cache.now(),
        )
        self._cache.add(self._key, entry)
        return entry

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self._path.unlink(missing_ok=True)

    def _fail(self, exc: OSError) -> None:
        self._failed = True
        log.warning("media.cache_write_failed", error=str(exc))
        self.abort()


def _key(media_id: str) -> str:
    # media_ids are WeChat's strings; a hash makes any of them a safe, fixed-length file name.
    return hashlib.sha256(media_id.encode()).hexdigest()[:40]
