"""What SIGTERM and SIGINT mean to a wxkf process: stop gracefully, or stop now.

The first stop signal starts a graceful stop. One Ctrl-C in a terminal often arrives twice,
as two different signals: the terminal sends SIGINT to every process of its foreground group,
and a supervisor in that group (``wxkf up``) passes the stop on to its children as SIGTERM.
So the first signal of the *other* kind is taken as the same stop. Any signal after that, or
the *same* signal again (a user pressing Ctrl-C twice, ``kill`` run twice), stops the process
at once: one log line, then the process ends by that signal, as if it had no handler (no
traceback, the shell sees 130 or 143).

:class:`StopSignals` keeps the decision (:meth:`StopSignals.decide`, pure) apart from the
handlers that act on it. A process entry point installs it for the whole life of the process
(:meth:`StopSignals.install`), so a signal that comes while the process finishes its stop is
judged the same way; in-process runs (tests, the demo) install it for the time they run
(:meth:`StopSignals.installed`), which puts the previous handlers back afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any, Literal, TypeAlias

import structlog

log = structlog.get_logger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Decision: TypeAlias = Literal["stop", "same_stop", "stop_now"]


class StopSignals:
    """The stop signals one process has received, and what the next one means."""

    def __init__(self) -> None:
        self.received: list[signal.Signals] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def decide(self, signum: signal.Signals) -> Decision:
        """Record ``signum`` and say what it means (see the module docstring)."""
        before = list(self.received)
        self.received.append(signum)
        if not before:
            return "stop"
        if len(before) == 1 and signum != before[0]:
            return "same_stop"
        return "stop_now"

    def bind(self, stop: asyncio.Event) -> None:
        """Set ``stop`` (on the running loop) when a graceful stop is asked for; at once when
        one was asked for already."""
        self._loop = asyncio.get_running_loop()
        self._stop = stop
        if self.received:
            _log_and_set(self.received[0], "stop", stop)

    def install(self) -> None:
        """Handle SIGTERM and SIGINT from now on, for the life of the process."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGTERM and SIGINT inside the block, then put the previous handlers back.

        Off the main thread signals cannot be handled; there the caller's stop event rules.
        """
        previous: dict[signal.Signals, Any] = {}
        try:
            for signum in STOP_SIGNALS:
                previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread
            pass
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes: hand the work to the loop, except
        # a stop now, which must not wait for a loop that may be what is stuck.
        sig = signal.Signals(signum)
        decision = self.decide(sig)
        if decision == "stop_now":
            stop_now(sig)
        loop, stop = self._loop, self._stop
        if loop is None or stop is None or loop.is_closed():
            return  # not serving yet (the stop is remembered) or done already
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            loop.call_soon_threadsafe(_log_and_set, sig, decision, stop)


def _log_and_set(sig: signal.Signals, decision: Decision, stop: asyncio.Event) -> None:
    if decision == "stop":
        log.info("runner.signal", signal=sig.name, hint="the same signal again stops at once")
        stop.set()
    else:
        log.debug("runner.signal_same_stop", signal=sig.name)


def stop_now(sig: signal.Signals) -> None:
    """End the process at once, by ``sig`` with its default action, after one log line."""
    # The handler runs in whatever context the main thread was in (a delivery's, say): the
    # line is the process's, not that delivery's.
    structlog.contextvars.clear_contextvars()
    log.warning("runner.stopped_at_once", signal=sig.name)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
