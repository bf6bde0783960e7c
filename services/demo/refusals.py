"""Pushes that ingress refused, shown on the demo's console with the reason.

A refused push never reaches the bus, which is all the console watches otherwise; without
this, a push sent with another Token (a ``WXKF_TOKEN`` left in the shell: ``wxkf sim push``
reads it, the demo does not) shows nothing but ``HTTP 401`` where it was sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from services.demo import render

INGRESS_LOGGER = "services.ingress.push"
REFUSED = "push.refused"

HINTS = {
    "bad_signature": "signed with another Token than the demo's (wxkfdemotoken): "
    "is WXKF_TOKEN set in your shell?",
    "bad_appid": "encrypted for another AppID than the demo's: is WXKF_APPID set in your shell?",
    "decrypt_error": "encrypted with another EncodingAESKey: is WXKF_AES_KEY set in your shell?",
    "bad_padding": "encrypted with another EncodingAESKey: is WXKF_AES_KEY set in your shell?",
    "expired_timestamp": "its timestamp is too old: a replay, or a clock far off",
    "plaintext_refused": "the demo takes safe mode only: drop --mode plain",
}


class RefusedPushes(logging.Handler):
    """Prints a console line for each ``push.refused`` ingress logs."""

    def __init__(self, print_line: Callable[[str], None]) -> None:
        super().__init__(level=logging.WARNING)
        self.print_line = print_line

    def emit(self, record: logging.LogRecord) -> None:
        # structlog hands the stdlib logger its event as a dict (wrap_for_formatter).
        event = record.msg
        if not isinstance(event, dict) or event.get("event") != REFUSED:
            return
        reason = str(event.get("reason", "?"))
        text = f"refuses a push: {reason} (HTTP {event.get('status', '?')})"
        hint = HINTS.get(reason)
        self.print_line(render.line(time.time(), "ingress", text + (f"; {hint}" if hint else "")))


def attach(print_line: Callable[[str], None]) -> RefusedPushes:
    handler = RefusedPushes(print_line)
    logging.getLogger(INGRESS_LOGGER).addHandler(handler)
    return handler


def detach(handler: RefusedPushes) -> None:
    logging.getLogger(INGRESS_LOGGER).removeHandler(handler)
