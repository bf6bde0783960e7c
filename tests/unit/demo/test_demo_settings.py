"""The demo's settings: defaults beside the services' own, a bad variable named."""

from __future__ import annotations

import pytest

from libs.common.settings import SettingsError
from services.composition import load_settings, public_port
from services.demo.settings import PORT_VARIABLES, DemoSettings, load_demo
from services.up.plan import UpSettings


def test_default_ports_do_not_clash_with_the_services_nor_wxkf_up() -> None:
    services = load_settings(
        ["ingress", "router", "sender", "media"],
        {"WXKF_APPID": "wx1", "WXKF_APP_SECRET": "s", "WXKF_TOKEN": "t", "WXKF_MEDIA_OPEN": "1"},
    )
    theirs = {public_port(s) for s in services.values()} - {None} | {UpSettings().sim_port}
    theirs |= {s.internal_port + i for i, s in enumerate(services.values())}
    ours = DemoSettings().ports()
    assert len(set(ours.values())) == len(ours)
    assert not theirs & set(ours.values())


def test_every_port_has_its_variable() -> None:
    assert set(DemoSettings().ports()) == set(PORT_VARIABLES)
    settings = load_demo(dict.fromkeys(PORT_VARIABLES.values(), "0"))
    assert set(settings.ports().values()) == {0}


def test_only_the_demos_variables_are_read() -> None:
    settings = load_demo({"WXKF_INGRESS_PORT": "19080", "WXKF_BUS_URL": "amqp://elsewhere/"})
    assert settings.ingress_port == 19080


@pytest.mark.parametrize(
    ("variable", "value"),
    [("WXKF_SIM_PORT", "eighty"), ("WXKF_INGRESS_PORT", "70000"), ("WXKF_MEDIA_PORT", "-1")],
)
def test_a_bad_port_is_named(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_demo({variable: value})
