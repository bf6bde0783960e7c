"""Logging, configured once per process: structlog for our lines and the libraries' alike.

Every line carries the log level, an ISO timestamp, the service name and whatever the request
or delivery bound with ``structlog.contextvars`` (correlation id, hashed openid). Lines are
JSON unless the output is a terminal. Secrets are redacted at the very end, after exceptions
are rendered, so a traceback that quotes a URL with ``access_token=`` is cleaned too.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from libs.common.settings import CommonSettings, Secret

LogFormat = Literal["json", "console"]

LEVELS = ("debug", "info", "warning", "error", "critical")
REDACTED = "***"

# Named like a secret: the word on its own or as a part of a snake/kebab/dotted name
# (app_secret, access_token, encoding_aes_key, db-password), whatever the case.
_SECRET_NAME = re.compile(
    r"(?:^|[_.\-])(?:secret|token|password|passwd|aes_?key|api_?key|authorization)(?:$|[_.\-])",
    re.IGNORECASE,
)
_TOKEN_IN_URL = re.compile(r"(access_token=)[^&\s'\"]+", re.IGNORECASE)
# The password in a URL's user info: amqp://wxkf:PASSWORD@rabbit, redis://:PASSWORD@cache.
_PASSWORD_IN_URL = re.compile(r"([a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@\s/]+@", re.IGNORECASE)

_DEFAULT_OPENID_KEY = b"wxkf openid hash: set a key per deployment"
_openid_key = _DEFAULT_OPENID_KEY

_HANDLER_NAME = "wxkf"


class ConfigError(ValueError):
    """The logging configuration asked for is not one we can make (unknown level or format)."""


def configure_service(
    service: str, settings: CommonSettings, *, stream: TextIO | None = None
) -> None:
    """:func:`configure` from a service's settings (format, level, openid hash key)."""
    configure(
        service,
        fmt=settings.log_format,
        level=settings.log_level,
        openid_key=settings.log_key,
        stream=stream,
        cache=True,
    )


WIRE_LOGGERS = ("aiormq", "aio_pika", "pamqp", "aiohttp.access", "redis")
"""Libraries whose debug lines carry what goes over the wire (bodies, keys, commands)."""


def configure(
    service: str,
    *,
    fmt: LogFormat | None = None,
    level: str = "info",
    openid_key: str | bytes | None = None,
    stream: TextIO | None = None,
    cache: bool = False,
) -> None:
    """Route structlog and stdlib logging through one formatter, once per process.

    ``fmt`` None means console on a terminal, JSON otherwise. ``openid_key`` keys
    :func:`hash_openid`; give every service of a deployment the same one so the hashes match
    across services. With ``cache``, a logger keeps the configuration of its first use
    (structlog's ``cache_logger_on_first_use``): what a long-running service wants
    (:func:`configure_service`), not a command that may run inside another process (a test's).
    """
    name = level.lower()
    if name not in LEVELS:
        raise ConfigError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    out = sys.stderr if stream is None else stream
    if fmt is None:
        fmt = "console" if out.isatty() else "json"
    if fmt not in ("json", "console"):
        raise ConfigError(f"log format {fmt!r} is not json or console")
    if openid_key is not None:
        set_openid_key(openid_key)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        bind_service(service),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # A plain-text traceback for both formats: the rich one would print locals,
            # and secrets live in locals.
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(name.upper())
    # The AMQP client logs every frame it sends at debug, message bodies (openids, what users
    # said) included: never below info, whatever the service's level.
    for library in WIRE_LOGGERS:
        logging.getLogger(library).setLevel(max(logging.INFO, root.level))

    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # A call below the level is a no-op: nothing is bound and no processor runs.
        wrapper_class=structlog.make_filtering_bound_logger(root.level),
        cache_logger_on_first_use=cache,
    )


def bind_service(service: str) -> Processor:
    """A processor that puts ``service`` on every line (unless the line names its own)."""

    def add(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Hide values under secret-like names, Secret values anywhere, tokens and passwords in
    URLs."""
    return _clean_mapping(event_dict)


def _clean_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: REDACTED if _SECRET_NAME.search(str(k)) and v is not None else _clean(v)
        for k, v in data.items()
    }


def _clean(value: Any) -> Any:
    if isinstance(value, Secret):
        return REDACTED if value else value
    if isinstance(value, str):
        if "=" in value:
            value = _TOKEN_IN_URL.sub(r"\1" + REDACTED, value)
        if "://" in value:
            value = _PASSWORD_IN_URL.sub(r"\1" + REDACTED + "@", value)
        return value
    if isinstance(value, Mapping):
        return _clean_mapping(value)
    if isinstance(value, list | tuple):
        return type(value)(_clean(v) for v in value)
    return value


def set_openid_key(key: str | bytes) -> None:
    """Key :func:`hash_openid` (shared by every service of a deployment)."""
    global _openid_key  # one key per process, set at start (before any line is hashed)
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if not raw:
        raise ConfigError("the openid hash key must not be empty")
    _openid_key = raw
    _hash.cache_clear()


def hash_openid(openid: str) -> str:
    """A short, stable, keyed stand-in for an openid in logs and metrics labels.

    HMAC-SHA256 under the deployment's key, 12 hex digits: the same user gets the same hash
    in every service and line, and nobody without the key can test a guessed openid.
    """
    return _hash(openid)


@functools.lru_cache(maxsize=4096)
def _hash(openid: str) -> str:
    return hmac.new(_openid_key, openid.encode(), hashlib.sha256).hexdigest()[:12]
