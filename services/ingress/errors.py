"""Why ingress answered a verified push with something other than its answer.

Refusals of bad input are the WeChat protocol errors of ``libs.common.wechat.errors``; the
errors here are the ingress's own, each with a stable ``code`` and the HTTP status it maps to.
"""

from __future__ import annotations


class IngressError(Exception):
    """Base of the ingress's own errors."""

    code = "ingress_error"
    http_status = 500


class UnsupportedContentType(IngressError):
    """The request's Content-Type is not one a push can carry (XML, JSON or text)."""

    code = "unsupported_content_type"
    http_status = 415


class BodyTooLarge(IngressError):
    """The body is larger than ``WXKF_MAX_BODY_BYTES``; it was not read to its end."""

    code = "too_large"
    http_status = 413


class ReadTimeout(IngressError):
    """The body did not arrive within ``WXKF_READ_TIMEOUT_S``; the connection is closed."""

    code = "read_timeout"
    http_status = 408


class ReplayedSignature(IngressError):
    """A plain-mode signature seen before with another body, within the replay window."""

    code = "replayed_signature"
    http_status = 401


class Unavailable(IngressError):
    """The push was not settled; 503 makes WeChat retry it later."""

    code = "unavailable"
    http_status = 503


class Unconfirmed(Unavailable):
    """The broker did not confirm the event (down, blocked, nacked or timed out)."""

    code = "unconfirmed"


class StoreUnavailable(Unavailable):
    """The dedupe store could not be used, so the push cannot be published exactly once."""

    code = "store_unavailable"


class SpoolFull(Unavailable):
    """The broker did not take the event and the spool holds ``WXKF_SPOOL_LIMIT`` entries."""

    code = "spool_full"


class Overdue(Unavailable):
    """The broker and the store together took too long to keep the push: answered 503 before
    WeChat stops waiting, so that it sends the push again."""

    code = "overdue"


class StillPending(Unavailable):
    """Another attempt of the same push is still publishing it after the wait."""

    code = "pending"
