"""Settings: ``WXKF_*`` environment variables (and ``*_FILE`` for secrets) into frozen Structs.

Each service declares one frozen Struct that extends :class:`CommonSettings`. Field ``foo_bar``
is read from ``WXKF_FOO_BAR``; a field typed :class:`Secret` may instead be read from the file
named by ``WXKF_FOO_BAR_FILE`` (how Kubernetes mounts Secrets). A field typed as a collection
(``frozenset[Kind]``, ``tuple[str, ...]``) is read as a comma-separated list, each item checked
against the item type (names from a ``Literal`` in any case). A missing or malformed value
raises :class:`SettingsError` with one line naming the variable, never its secret value; so
does a variable that is no longer read (:func:`retired`), with what to do instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

PREFIX = "WXKF_"

LOCAL_BUS_URL = "amqp://guest:guest@127.0.0.1:5672/"
"""RabbitMQ as its OS package installs it: what ``wxkf up`` and the admin commands use on one
machine when ``WXKF_BUS_URL`` is not set (a service itself defaults to ``memory://``)."""
LOCAL_STORE_URL = "redis://127.0.0.1:6379/0"
"""Redis as its OS package installs it, for ``wxkf up`` when ``WXKF_STORE_URL`` is not set."""


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
    """``amqp://user:pass@host:5672/vhost`` (a cluster: ``amqp://user:pass@n1:5672,n2:5672/vhost``,
    see bus.md) or ``memory://`` (one process only)."""
    store_url: Secret = Secret("memory://")
    """``redis://:pass@host:6379/0``, ``redis+sentinel://:pass@s1:26379,s2:26379/MASTER/0``
    (Redis with Sentinel failover) or ``memory://`` (one process only)."""
    bus_declare: Literal["all", "own"] = "all"
    """``all``: the service declares wxkf's whole topology at start, so that no event is
    unroutable because its consumer has not started yet. ``own``: only the exchanges and the
    queues it consumes, all that a broker user limited to them may declare
    (libs/common/access.py); the other queues are their consumers' to declare. Ingress, which
    consumes nothing, then declares nothing: until a consumer has declared the exchanges its
    publishes fail and the pushes go to its spool."""
    log_format: LogFormat | None = None
    """``json`` or ``console``; unset means console on a terminal, JSON otherwise."""
    log_level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error``. ``info``: starts, stops and what went
    wrong (refusals, retries, failures), never a line per message; ``debug`` adds a line for
    every push, decision, reply window and send."""
    log_key: Secret | None = None
    """Key of the openid hash in log lines: give every service the same one, so one user's
    lines match across services, and keep it secret, so hashes cannot be checked against a
    list of openids. Unset: a built-in key."""
    shutdown_grace_s: float = 20.0
    """How long a stopping service waits for in-flight work after SIGTERM."""
    internal_port: int = 9180
    """The internal port: ``/healthz``, ``/readyz`` and ``/metrics`` of the process (never
    served on the service's own port). The same variable for every service; it is for the
    kubelet and Prometheus, never for the internet. 0 picks a free port."""
    listen_host: str = "0.0.0.0"  # noqa: S104 - every interface of a pod, see below
    """The address the service listens on. Every interface by default: in a pod, the probes
    and the Service reach the pod's own address. ``wxkf up`` sets ``127.0.0.1``, so that a
    local run with the demo credentials cannot be reached from the network."""

    def shared_urls(self) -> tuple[str, ...]:
        """The fields naming what this service shares with the others (its bus and store):
        ``memory://`` there works only with the others in the same process."""
        return ("bus_url", "store_url")


class WeChatApiSettings(CommonSettings, frozen=True, kw_only=True):
    """What the services that call WeChat's API read (sender, media)."""

    app_secret: Secret
    """The mini program's AppSecret, for the access token (stable_token endpoint)."""
    wechat_api_base: str = "https://api.weixin.qq.com"
    """WeChat's API origin; one of its alternates, or the simulator's URL (``wxkf sim api``)."""
    wechat_timeout_s: float = 5.0
    """The bound on one call to WeChat's API, connection included."""


def env_name(field: str) -> str:
    return PREFIX + field.upper()


S = TypeVar("S", bound=msgspec.Struct)


def _dec_hook(tp: type, value: Any) -> Any:
    if tp is Secret and isinstance(value, str):
        return Secret(value)
    # msgspec turns a TypeError into a ValidationError at the field (NotImplementedError escapes).
    raise TypeError("expected a string")


_COLLECTIONS = (
    msgspec.inspect.ListType,
    msgspec.inspect.SetType,
    msgspec.inspect.FrozenSetType,
    msgspec.inspect.VarTupleType,
)


def _fields(cls: type[msgspec.Struct]) -> dict[str, msgspec.inspect.Field]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return {field.name: field for field in info.fields}


def _item_type(tp: msgspec.inspect.Type) -> msgspec.inspect.Type | None:
    """The item type of a collection (``X | None`` of one too), else None."""
    options = tp.types if isinstance(tp, msgspec.inspect.UnionType) else (tp,)
    for t in options:
        if isinstance(t, msgspec.inspect.Metadata):
            t = t.type
        if isinstance(t, _COLLECTIONS):
            return t.item_type
    return None


def split_list(value: str) -> list[str]:
    """A comma-separated list: items stripped, empty ones dropped (so ``""`` is no items)."""
    return [item.strip() for item in value.split(",") if item.strip()]


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


def retired(cls: type[msgspec.Struct]) -> dict[str, str]:
    """The variables ``cls`` (and its bases) no longer read, each with what to do instead:
    a ``RETIRED`` class variable of each settings class."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        found.update(vars(klass).get("RETIRED", {}))
    return found


def load(cls: type[S], environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """Build ``cls`` from ``WXKF_*`` variables; ``overrides`` win (tests, ``wxkf demo``).

    A variable that ``cls`` no longer reads (:func:`retired`) is an error when it is set, so
    that a setting someone relies on never goes quietly unheard."""
    env = os.environ if environ is None else environ
    for var, instead in retired(cls).items():
        if var in env or var + "_FILE" in env:
            raise SettingsError(f"{var} is no longer read: {instead}")
    secrets = _secret_fields(cls)
    fields = _fields(cls)
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
    given = dict(raw)  # as set, for the error message
    for name, value in raw.items():
        item = _item_type(fields[name].type)
        if isinstance(value, str) and item is not None:
            items = split_list(value)
            # Names from a fixed set (message types, image kinds) are matched in any case.
            literal = isinstance(item, msgspec.inspect.LiteralType)
            raw[name] = [i.lower() for i in items] if literal else items
    try:
        return msgspec.convert(raw, cls, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise SettingsError(_describe(exc, secrets, given, fields)) from None


def _describe(
    exc: msgspec.ValidationError,
    secrets: set[str],
    raw: dict[str, Any],
    fields: Mapping[str, msgspec.inspect.Field],
) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.ingress_port`" or
    # "Object missing required field `appid`"; turn either into the variable's name.
    text = str(exc)
    if text.startswith("Object missing required field `"):
        field = text.split("`")[1]
        hint = f" (or {env_name(field)}_FILE)" if field in secrets else ""
        return f"{env_name(field)} is required but not set{hint}"
    problem, found, where = text.rpartition(" - at `$.")
    if found and problem:
        field = where.rstrip("`").split(".")[0].split("[")[0]
        got = "" if field in secrets or field not in raw else f" (value {raw[field]!r})"
        allowed = _allowed(fields[field].type) if field in fields else ""
        return f"{env_name(field)}: {problem[0].lower()}{problem[1:]}{allowed}{got}"
    return text


def _allowed(tp: msgspec.inspect.Type) -> str:
    """``; one of: a, b`` for a field (or a list) of literals, else nothing."""
    item = _item_type(tp) or tp
    options = item.types if isinstance(item, msgspec.inspect.UnionType) else (item,)
    values = [v for t in options if isinstance(t, msgspec.inspect.LiteralType) for v in t.values]
    if not values:
        return ""
    kind = "each item one of" if _item_type(tp) is not None else "one of"
    return f"; {kind}: {', '.join(str(v) for v in values)}"


def refuse_memory(settings: CommonSettings, *, alone: str) -> None:
    """Raise :class:`SettingsError` when a URL the service shares (:meth:`~CommonSettings.
    shared_urls`) is ``memory://``: that bus and store live inside one process, so they serve
    the four services only when all run in it (``wxkf run all``, the demo). ``alone`` is how
    this process runs without the others, for the message."""
    for field in settings.shared_urls():
        if str(getattr(settings, field)).startswith("memory://"):
            var = env_name(field)
            wanted = "RabbitMQ (amqp://…)" if field == "bus_url" else "Redis (redis://…)"
            raise SettingsError(
                f"{var}: memory:// serves only the four services together in one process "
                f"(wxkf run all); {alone} runs without the others: set {var} to {wanted}"
            )


def load_or_exit(cls: type[S], *, alone: str | None = None, **overrides: Any) -> S:
    """Entry-point helper: one clear line on stderr and exit code 2 instead of a traceback.
    With ``alone`` (how the process runs one service only), ``memory://`` is refused too
    (:func:`refuse_memory`)."""
    try:
        settings = load(cls, **overrides)
        if alone is not None and isinstance(settings, CommonSettings):
            refuse_memory(settings, alone=alone)
    except SettingsError as exc:
        print(f"wxkf: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


class FieldDoc(msgspec.Struct, frozen=True, kw_only=True):
    """One variable of a settings Struct, for the configuration reference."""

    variable: str
    type: str
    default: str
    """``required`` for a field without a default."""
    secret: bool
    doc: str


def describe(cls: type[msgspec.Struct]) -> list[FieldDoc]:
    """The variables of ``cls`` (and its bases) with their attribute docstrings, in order."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if issubclass(klass, msgspec.Struct) and klass is not msgspec.Struct:
            docs.update(_attribute_docs(klass))
    secrets = _secret_fields(cls)
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    hints = {f.name: f for f in info.fields}
    result = []
    for name in cls.__struct_fields__:
        field = hints[name]
        if field.required:
            default = "required"
        else:
            value = field.default if field.default is not msgspec.NODEFAULT else None
            if value is None:
                default = "unset"
            elif _item_type(field.type) is not None:
                items = ",".join(sorted(map(str, value)))
                default = repr(items) if items else "empty"
            else:
                default = repr(str(value) if name in secrets else value)
        result.append(
            FieldDoc(
                variable=env_name(name),
                type=_type_name(field.type),
                default=default,
                secret=name in secrets,
                doc=" ".join(docs.get(name, "").split()).replace("``", "`"),
            )
        )
    return result


def _attribute_docs(klass: type) -> dict[str, str]:
    # Attribute docstrings are not kept at run time; the class's source has them.
    import ast
    import inspect
    import textwrap

    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    found: dict[str, str] = {}
    for stmt, following in zip(body.body, [*body.body[1:], None], strict=True):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[stmt.target.id] = following.value.value
    return found


def _type_name(tp: msgspec.inspect.Type) -> str:
    if isinstance(tp, msgspec.inspect.UnionType):
        # "X | None" is X that may stay unset; the default column says so.
        kinds = [t for t in tp.types if not isinstance(t, msgspec.inspect.NoneType)]
        return " | ".join(_type_name(t) for t in kinds)
    if isinstance(tp, msgspec.inspect.LiteralType):
        return " | ".join(str(v) for v in tp.values)
    if isinstance(tp, msgspec.inspect.CustomType):
        return "secret" if tp.cls is Secret else tp.cls.__name__
    if isinstance(tp, msgspec.inspect.NoneType):
        return "unset"
    if isinstance(tp, msgspec.inspect.Metadata):
        return _type_name(tp.type)
    if isinstance(tp, _COLLECTIONS):
        return f"comma-separated {_type_name(tp.item_type)}"
    names = {
        "StrType": "string",
        "IntType": "integer",
        "FloatType": "number",
        "BoolType": "boolean",
    }
    kind = type(tp).__name__
    return names.get(kind, kind.removesuffix("Type").lower())
