"""The four services as one table: each one's settings and its composition root, imported here.

``wxkf run`` (:mod:`services.launcher`), ``wxkf up`` (:mod:`services.up`), ``wxkf config``
and the demo build the services through this module, so that every edge between a command
and a service is a plain import that import-linter sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from libs.common.bus import Bus
from libs.common.settings import CommonSettings, SettingsError, load
from libs.common.store import Store
from libs.common.topology import SERVICES, Service
from services.ingress.app import create_app as create_ingress
from services.ingress.settings import IngressSettings
from services.media.app import create_app as create_media
from services.media.settings import MediaSettings
from services.router.app import create_app as create_router
from services.router.settings import RouterSettings
from services.sender.app import create_app as create_sender
from services.sender.settings import SenderSettings

SETTINGS: dict[Service, type[CommonSettings]] = {
    "ingress": IngressSettings,
    "router": RouterSettings,
    "sender": SenderSettings,
    "media": MediaSettings,
}
"""Each service's settings class, in :data:`~libs.common.topology.SERVICES` order."""
assert tuple(SETTINGS) == SERVICES


def load_settings(
    names: Sequence[Service], environ: Mapping[str, str] | None = None, **overrides: Any
) -> dict[Service, CommonSettings]:
    """Every named service's settings; all problems reported together, one per line, each
    starting with the service's name. An override applies to the services that have it."""
    loaded: dict[Service, CommonSettings] = {}
    problems: list[str] = []
    for name in names:
        cls = SETTINGS[name]
        fields = {k: v for k, v in overrides.items() if k in cls.__struct_fields__}
        try:
            loaded[name] = load(cls, environ, **fields)
        except SettingsError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise SettingsError("\n".join(dict.fromkeys(problems)))
    return loaded


def create_app(
    settings: CommonSettings, *, bus: Bus | None = None, store: Store | None = None
) -> web.Application:
    """The service ``settings`` belong to, built by its own composition root."""
    if isinstance(settings, IngressSettings):
        return create_ingress(settings, bus=bus, store=store)
    if isinstance(settings, RouterSettings):
        return create_router(settings, bus=bus, store=store)
    if isinstance(settings, SenderSettings):
        return create_sender(settings, bus=bus, store=store)
    if isinstance(settings, MediaSettings):
        return create_media(settings, bus=bus, store=store)
    raise TypeError(f"not the settings of a wxkf service: {type(settings).__name__}")


def public_port(settings: CommonSettings) -> int | None:
    """The port a service serves its own routes on: the push URL (ingress), the API (media);
    None for the services that serve nothing but the internal port's (router, sender)."""
    if isinstance(settings, IngressSettings):
        return settings.ingress_port
    if isinstance(settings, MediaSettings):
        return settings.media_port
    return None
