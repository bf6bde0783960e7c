"""Settings: ``WXKF_*`` environment variables (and ``*_FILE`` for secrets) into frozen Structs.

Each service declares one frozen Struct that extends :class:`CommonSettings`. Field ``foo_bar``
is read from ``WXKF_FOO_BAR``; a field typed :class:`Secret` may instead be read from the file
named by ``WXKF_FOO_BAR_FILE`` (how Kubernetes mounts Secrets). A missing or malformed value
raises :class:`SettingsError` with one line naming the variable, never its secret value.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

PREFIX = "WXKF_"


class Secret(str):
    """A string that never shows itself in ``repr`` (and so never in logs or tracebacks)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


LogFormat = Literal["json", "console"]


class CommonSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every service reads."""

    appid: str
    """The mini program's AppID (``wx…``)."""
    # URLs carry credentials, so they are Secrets too (and may come from *_FILE).
    bus_url: Secret = Secret("memory://")
    """``amqp://user:pass@host:5672/vhost`` or ``memory://`` (one process only)."""
    store_url: Secret = Secret("memory://")
    """``redis://:pass@host:6379/0`` or ``memory://`` (one process only)."""
    log_format: LogFormat | None = None
    """``json`` or ``console``; unset means console on a terminal, JSON otherwise."""
    log_level: str = "info"
    shutdown_grace_s: float = 20.0
    """How long a stopping service waits for in-flight work after SIGTERM."""


class WeChatApiSettings(CommonSettings, frozen=True, kw_only=True):
    """What the services that call WeChat's API read (sender, media)."""

    app_secret: Secret
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_timeout_s: float = 5.0


def env_name(field: str) -> str:
    return PREFIX + field.upper()


S = TypeVar("S", bound=msgspec.Struct)


def _dec_hook(tp: type, value: Any) -> Any:
    if tp is Secret and isinstance(value, str):
        return Secret(value)
    # msgspec turns a TypeError into a ValidationError at the field (NotImplementedError escapes).
    raise TypeError("expected a string")


def _secret_fields(cls: type[msgspec.Struct]) -> set[str]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    names: set[str] = set()
    for field in info.fields:
        tp = field.type
        options = tp.types if isinstance(tp, msgspec.inspect.UnionType) else (tp,)
        if any(isinstance(t, msgspec.inspect.CustomType) and t.cls is Secret for t in options):
            names.add(field.name)
    return names


def load(cls: type[S], environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """Build ``cls`` from ``WXKF_*`` variables; ``overrides`` win (tests, ``wxkf demo``)."""
    env = os.environ if environ is None else environ
    secrets = _secret_fields(cls)
    raw: dict[str, Any] = {}
    for name in cls.__struct_fields__:
        var = env_name(name)
        if name in secrets and var + "_FILE" in env:
            path = Path(env[var + "_FILE"])
            try:
                raw[name] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingsError(f"{var}_FILE: cannot read {path}: {exc.strerror}") from None
        elif var in env:
            raw[name] = env[var]
    raw.update(overrides)
    try:
        return msgspec.convert(raw, cls, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise SettingsError(_describe(exc, secrets, raw)) from None


def _describe(exc: msgspec.ValidationError, secrets: set[str], raw: dict[str, Any]) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.ingress_port`" or
    # "Object missing required field `appid`"; turn either into the variable's name.
    text = str(exc)
    if text.startswith("Object missing required field `"):
        field = text.split("`")[1]
        hint = f" (or {env_name(field)}_FILE)" if field in secrets else ""
        return f"{env_name(field)} is required but not set{hint}"
    problem, _, where = text.rpartition(" - at `$.")
    if where:
        field = where.rstrip("`").split(".")[0].split("[")[0]
        got = "" if field in secrets or field not in raw else f" (value {raw[field]!r})"
        return f"{env_name(field)}: {problem[0].lower()}{problem[1:]}{got}"
    return text


def load_or_exit(cls: type[S], **overrides: Any) -> S:
    """Entry-point helper: one clear line on stderr and exit code 2 instead of a traceback."""
    try:
        return load(cls, **overrides)
    except SettingsError as exc:
        print(f"wxkf: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
