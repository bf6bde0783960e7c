"""The rules in use, and their hot reload: a changed file (or SIGHUP) is checked, then swapped.

The compiled :class:`Ruleset` is replaced whole by one assignment, so a decision always sees
one version of the rules from start to end. A file that does not compile keeps the rules in
use, logs every problem with its line and column, and sets ``wxkf_router_rules_file_valid``
to 0 until a good file arrives. Compiling runs in a worker thread so that the decisions of
the event loop never wait on a large file.

The file is polled by its stat (time, size, inode): a Kubernetes ConfigMap is updated by
swapping a symlink, which an inotify watch on the file itself would miss.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import structlog

from services.router import metrics
from services.router.compiler import compile_file
from services.router.engine import Ruleset
from services.router.errors import RulesError

log = structlog.get_logger(__name__)

Stamp = tuple[int, int, int] | None


def stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Rules:
    """Holds the :class:`Ruleset` in use for one rules file."""

    def __init__(self, path: Path, ruleset: Ruleset, seen: Stamp) -> None:
        self.path = path
        self.current = ruleset
        self._seen = seen
        self._lock = asyncio.Lock()
        _loaded(ruleset)

    @classmethod
    async def open(cls, path: Path) -> Rules:
        """Load the file at start; a :class:`RulesError` here stops the service."""
        seen = stamp(path)
        ruleset = await asyncio.to_thread(compile_file, path)
        log.info("rules.loaded", path=str(path), rules=len(ruleset), digest=ruleset.digest[:12])
        return cls(path, ruleset, seen)

    def changed(self) -> bool:
        """The file's stat differs from the last one loaded or tried."""
        return stamp(self.path) != self._seen

    async def reload(self, *, reason: str) -> bool:
        """Check and swap in the file; False (and the old rules kept) when it is invalid."""
        async with self._lock:
            self._seen = stamp(self.path)
            try:
                ruleset = await asyncio.to_thread(compile_file, self.path)
            except RulesError as exc:
                metrics.RELOADS.labels("invalid").inc()
                metrics.RULES_VALID.set(0)
                log.error(
                    "rules.reload_failed",
                    reason=reason,
                    path=str(self.path),
                    problems=[p.render(exc.source) for p in exc.problems],
                    kept_digest=self.current.digest[:12],
                )
                return False
            metrics.RELOADS.labels("ok").inc()
            if ruleset.digest == self.current.digest:
                metrics.RULES_VALID.set(1)
                log.info("rules.unchanged", reason=reason, digest=ruleset.digest[:12])
                return True
            previous, self.current = self.current, ruleset
            _loaded(ruleset)
            log.info(
                "rules.reloaded",
                reason=reason,
                rules=len(ruleset),
                digest=ruleset.digest[:12],
                previous_digest=previous.digest[:12],
            )
            return True

    async def watch(self, interval_s: float) -> None:
        """Reload whenever the file's stat changes; runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            if self.changed():
                await self.reload(reason="file_changed")


def _loaded(ruleset: Ruleset) -> None:
    metrics.RULES_VALID.set(1)
    metrics.RULES_COUNT.set(len(ruleset))
    metrics.RULES_LOADED_AT.set(time.time())
