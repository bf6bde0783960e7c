"""Every error the history service raises; mapped to HTTP once, in ``api.errors``."""

from __future__ import annotations


class HistoryError(Exception):
    """Base: a typed refusal with a stable ``code`` and the HTTP status that answers it."""

    code = "history_error"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadQuery(HistoryError):
    """A request parameter is malformed or unknown; the message names it."""

    code = "bad_query"
    http_status = 400


class NoConversation(HistoryError):
    """Nothing is stored for this user (yet)."""

    code = "no_conversation"
    http_status = 404


class DatabaseError(HistoryError):
    """The SQLite database cannot be opened or used right now."""

    code = "database_unavailable"
    http_status = 503
