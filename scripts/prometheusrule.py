"""Write the PrometheusRule of the monitoring component from the plain rules file.

The rules live once, in deploy/prometheus/wxkf-alerts.yaml, where promtool checks and tests
them; the Prometheus Operator needs the same groups inside a PrometheusRule object. Run after
changing the rules:

    .venv/bin/python scripts/prometheusrule.py            # rewrite the PrometheusRule
    .venv/bin/python scripts/prometheusrule.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "wxkf-alerts.yaml"
TARGET = ROOT / "deploy" / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"

HEADER = """\
# Generated from deploy/prometheus/wxkf-alerts.yaml by scripts/prometheusrule.py: edit that
# file, then run `.venv/bin/python scripts/prometheusrule.py`. A test fails when they differ.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the longer PromQL expressions) as literal blocks, as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def prometheus_rule(rules_text: str) -> str:
    """The PrometheusRule manifest whose spec is the rules file's content."""
    rules: dict[str, Any] = yaml.safe_load(rules_text)
    if not isinstance(rules, dict) or set(rules) != {"groups"}:
        raise ValueError(f"{RULES.name} must hold exactly one key, groups")
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "wxkf",
            "labels": {
                "app.kubernetes.io/name": "wxkf-alerts",
                "app.kubernetes.io/component": "monitoring",
                "app.kubernetes.io/part-of": "wxkf",
            },
        },
        "spec": {"groups": rules["groups"]},
    }
    body = yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is current")
    args = parser.parse_args(argv)
    wanted = prometheus_rule(RULES.read_text(encoding="utf-8"))
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
    if args.check:
        if current != wanted:
            print(
                f"{TARGET.relative_to(ROOT)} is out of date with {RULES.relative_to(ROOT)}: "
                "run .venv/bin/python scripts/prometheusrule.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if current != wanted:
        TARGET.write_text(wanted, encoding="utf-8")
        print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
