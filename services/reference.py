"""``wxkf config``: the reference of every ``WXKF_`` variable, from the settings classes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from libs.common.settings import CommonSettings, WeChatApiSettings, describe, retired
from services.composition import SETTINGS
from services.up.plan import UpSettings

CONFIG_PREAMBLE = """\
# Configuration

Every setting is an environment variable with the prefix `WXKF_`, read once at start into
a typed settings object per service. A missing or malformed value stops the service before
it binds a port, with one line that names the variable. A variable marked *secret* may
instead be read from a file: `WXKF_<NAME>_FILE=/path` (how Kubernetes mounts Secrets);
secrets never appear in logs or error messages.

This page is generated from the settings classes by `wxkf config`; a test keeps it current.
"""


UP_PREAMBLE = """\
`wxkf up` also sets, when they are not set: `WXKF_BUS_URL` and `WXKF_STORE_URL` to RabbitMQ and
Redis on loopback, the demo credentials, `WXKF_LISTEN_HOST=127.0.0.1`, `WXKF_WECHAT_API_BASE`
to its simulator, `WXKF_MEDIA_URL` to its media service and `WXKF_ASSETS_DIR` to
`<WXKF_UP_DIR>/assets`, `WXKF_INTERNAL_TOKEN` to a token made for the run; each port variable
may be 0 (a free port), and each service's internal port is the next one up from
`WXKF_INTERNAL_PORT` (ingress, router, sender, media). With the broker on this machine, each
service runs as a broker and Redis user of its own (`wxkf-<service>`, made with `rabbitmqctl`
and `ACL SETUSER`, new passwords at every start; `WXKF_BUS_DECLARE=own`), as in prod."""


RETIRED_PREAMBLE = """\
A service that finds one of these set stops before it binds a port, saying what to do instead."""


def _table(rows: Sequence[Any]) -> list[str]:
    lines = ["| variable | type | default | |", "|---|---|---|---|"]
    for row in rows:
        kind, doc = (text.replace("|", "\\|") for text in (row.type, row.doc))
        lines.append(f"| `{row.variable}` | {kind} | {row.default} | {doc} |")
    return lines


def configuration_reference() -> str:
    common = describe(CommonSettings)
    api = [f for f in describe(WeChatApiSettings) if f not in common]
    out = [CONFIG_PREAMBLE, "## Every service", "", *_table(common)]
    out += ["", "## WeChat's API (sender and media)", "", *_table(api)]
    shown = {f.variable for f in (*common, *api)}
    for name, cls in SETTINGS.items():
        rows = [f for f in describe(cls) if f.variable not in shown]
        out += ["", f"## {name}", "", *_table(rows)]
    out += ["", "## wxkf up (a local run)", "", UP_PREAMBLE, "", *_table(describe(UpSettings))]
    gone = {var: why for cls in SETTINGS.values() for var, why in retired(cls).items()}
    out += ["", "## No longer read", "", RETIRED_PREAMBLE, "", "| variable | instead |"]
    out += ["|---|---|", *(f"| `{var}` | {why} |" for var, why in sorted(gone.items()))]
    return "\n".join(out) + "\n"


def config_main(args: argparse.Namespace) -> int:
    sys.stdout.write(configuration_reference())
    return 0
