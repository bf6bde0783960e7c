"""The dashboard, the alert rules and the monitoring component, checked without a cluster:
promtool checks and unit-tests the rules, every metric name is one the code declares, the
PrometheusRule is the rules file, and the prod overlay carries it all.

tests/deploy/test_monitoring_live.py checks the same files against a running system.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from itertools import combinations
from typing import Any

import prometheus_client
import pytest
import yaml
from prometheus_client.metrics_core import Metric

from tests.deploy import monitoring_files as files
from tests.deploy.test_manifests import ROOT, SERVICES, by_name, objects

METRIC_MODULES = (
    "libs.common.web",
    "libs.common.bus.metrics",
    "libs.common.wechat.apimetrics",
    "services.ingress.metrics",
    "services.router.metrics",
    "services.sender.metrics",
    "services.media.metrics",
)
ROWS = ("Overview", "Ingress", "Router", "Sender", "Media", "RabbitMQ", "Processes")
BROKER_METRICS = frozenset({"rabbitmq_queue_messages", "rabbitmq_queue_consumers"})
"""From RabbitMQ's Prometheus plugin with per-object metrics; the live test sees them."""

COVERED = {
    "request rate and errors": "wxkf_http_requests_total",
    "latency percentiles": "wxkf_http_request_duration_seconds_bucket",
    "push answer latency": "wxkf_ingress_answer_duration_seconds_bucket",
    "pushes by type and outcome": "wxkf_ingress_pushes_total",
    "dedupe hits": "wxkf_ingress_dedupe_hits_total",
    "decision waits and timeouts": "wxkf_ingress_decisions_total",
    "decision latency": "wxkf_router_decision_duration_seconds_bucket",
    "decisions by rule and action": "wxkf_router_decisions_total",
    "sends by errcode": "wxkf_wechat_api_calls_total",
    "quota rejections": "wxkf_sender_quota_decisions_total",
    "retries": "wxkf_sender_retries_total",
    "dead letters": "wxkf_sender_dead_letters_total",
    "bus retries and dead letters": "wxkf_bus_deliveries_total",
    "token refreshes": "wxkf_wechat_token_refreshes_total",
    "media throughput": "wxkf_media_bytes_total",
    "queue depth": "rabbitmq_queue_messages",
    "consumers per queue": "rabbitmq_queue_consumers",
    "process memory": "process_resident_memory_bytes",
    "process CPU": "process_cpu_seconds_total",
}
ALERTS = {
    "WxkfIngressErrorRatioHigh",
    "WxkfAnswerLatencyNearDeadline",
    "WxkfDecisionTimeouts",
    "WxkfDeadLettersPresent",
    "WxkfQuotaRejectionsSurging",
    "WxkfTokenRefreshFailing",
    "WxkfQueueWithoutConsumers",
    "WxkfServiceDown",
}


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is not installed: run `make tools` (scripts/ensure-tools.sh)"
    return path


def _sample_names(family: Metric) -> set[str]:
    """The sample names a family is exposed under (present also before its first child)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created", ""),
        "gauge": ("",),
        "info": ("_info",),
    }.get(family.type, ("",))
    return {family.name + s for s in suffixes} | {s.name for s in family.samples}


def declared_metric_names() -> set[str]:
    """Every metric name the services' code registers, plus prometheus-client's process_*."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    return {n for family in prometheus_client.REGISTRY.collect() for n in _sample_names(family)}


# --- the PromQL scanner ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (job) (rate(a_total{x="y(z)", le="1"}[5m]))', {"a_total"}),
        (
            "histogram_quantile(0.99, sum by (le) (rate(h_bucket[$__rate_interval])))",
            {"h_bucket"},
        ),
        ("a / on (namespace) group_left (pod) b > bool 3", {"a", "b"}),
        ('x unless on (a, b) y or absent(up{job="j"})', {"x", "y", "up"}),
        ("rate(a[5m] offset 1h) * 1e3 or vector(0)", {"a"}),
        ('sum(m{q=~"a\\\\.b"}) without (by, on)', {"m"}),
    ],
)
def test_the_scanner_finds_every_metric_name_and_nothing_else(expr: str, names: set[str]) -> None:
    assert files.metric_names(expr) == names


def test_the_scanner_reads_selectors_with_their_matchers() -> None:
    expr = 'sum by (le) (rate(a{x="}", y=~"$v"}[1m])) / b'
    assert files.selectors(expr) == [("a", 'x="}", y=~"$v"'), ("b", "")]


def test_variables_are_substituted_and_an_unknown_one_refuses() -> None:
    expr = 'rate(a{n=~"$namespace"}[$__rate_interval]) + ${namespace}'
    assert files.variables(expr) == {"namespace", "__rate_interval"}
    done = files.substitute(expr, {"namespace": "ns", "__rate_interval": "30s"})
    assert done == 'rate(a{n=~"ns"}[30s]) + ns'
    with pytest.raises(KeyError, match="__rate_interval"):
        files.substitute(expr, {"namespace": "ns"})


# --- the dashboard ----------------------------------------------------------------------------


def test_the_dashboard_is_provisionable_json_with_a_datasource_variable() -> None:
    dash = files.dashboard()
    assert "__inputs" not in dash, "provisioning needs no import inputs: use ${datasource}"
    assert dash["uid"] == "wxkf-overview"
    assert dash.get("id") is None
    (datasource,) = [v for v in dash["templating"]["list"] if v["name"] == "datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    # The ConfigMap goes through `kubectl apply`, whose last-applied annotation holds 256 KiB.
    assert files.DASHBOARD.stat().st_size < 128 * 1024


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    for panel in files.panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    for var in files.dashboard()["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}"


def test_every_panel_has_a_unit_and_a_description() -> None:
    for panel in files.panels():
        if panel["type"] == "row":
            continue
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']!r} has no unit"
        assert panel.get("description"), f"{panel['title']!r} says nothing about itself"


def test_rows_per_service_and_a_layout_without_overlaps() -> None:
    dash = files.dashboard()
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert rows == list(ROWS)
    ids = [p["id"] for p in files.panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    boxes = []
    for panel in files.panels():
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert 0 < pos["w"] <= 24 - pos["x"], panel["title"]
        boxes.append((panel["title"], pos))
    for (a, p), (b, q) in combinations(boxes, 2):
        apart = (
            p["x"] + p["w"] <= q["x"]
            or q["x"] + q["w"] <= p["x"]
            or p["y"] + p["h"] <= q["y"]
            or q["y"] + q["h"] <= p["y"]
        )
        assert apart, f"panels {a!r} and {b!r} overlap"


def test_every_selector_is_scoped_to_the_namespace_variable() -> None:
    for query in files.panel_queries():
        for name, matchers in files.selectors(query.expr):
            assert 'namespace=~"$namespace"' in matchers, f"{query.where}: {name}{{{matchers}}}"


def test_the_dashboard_covers_what_operators_look_at() -> None:
    used = files.dashboard_metric_names()
    missing = {topic: name for topic, name in COVERED.items() if name not in used}
    assert not missing


def test_every_dashboard_metric_is_declared_by_the_code() -> None:
    declared = declared_metric_names() | files.SYNTHETIC | BROKER_METRICS
    unknown = files.dashboard_metric_names() - declared
    assert not unknown, f"the dashboard reads metrics nothing exposes: {sorted(unknown)}"


def test_the_dashboard_config_map_carries_the_sidecar_label_and_the_file() -> None:
    (config_map,) = [
        c for c in objects("prod", "ConfigMap") if c["metadata"]["name"] == "wxkf-grafana-dashboard"
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["wxkf-overview.json"]) == files.dashboard()


# --- the alert rules --------------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [_promtool(), "check", "rules", str(files.RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [_promtool(), "test", "rules", files.RULE_TESTS.name],
        cwd=files.RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_alert_is_unit_tested_firing_and_quiet() -> None:
    tests: dict[str, Any] = yaml.safe_load(files.RULE_TESTS.read_text(encoding="utf-8"))
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in files.alert_rules()}
    assert names - firing == set(), "never shown firing"
    assert names - quiet == set(), "never shown quiet"


def test_the_alerts_the_issue_asks_for_exist() -> None:
    assert {rule["alert"] for rule in files.alert_rules()} >= ALERTS


def test_every_alert_waits_has_a_severity_and_points_at_its_runbook() -> None:
    anchors = files.doc_anchors()
    for rule in files.alert_rules():
        name = rule["alert"]
        assert rule.get("for"), f"{name} fires on a single evaluation"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        notes = rule["annotations"]
        assert notes["summary"], name
        assert notes["description"], name
        doc, _, anchor = notes["runbook"].partition("#")
        assert doc == "docs/deploy.md", name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"{name}: docs/deploy.md has no section {anchor}"


def test_links_inside_the_deploy_guide_resolve() -> None:
    text = files.DEPLOY_DOC.read_text(encoding="utf-8")
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links
    assert links - files.doc_anchors() == set()


def test_every_alert_metric_is_declared_by_the_code() -> None:
    declared = declared_metric_names() | files.SYNTHETIC | BROKER_METRICS
    unknown = files.alert_metric_names() - declared
    assert not unknown, f"alerts read metrics nothing exposes: {sorted(unknown)}"


# --- the monitoring component -----------------------------------------------------------------


def test_the_prometheus_rule_is_generated_from_the_rules_file() -> None:
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [sys.executable, str(ROOT / "scripts" / "prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = by_name("prod", "PrometheusRule", "wxkf")
    assert rendered["spec"] == files.rules()


def test_pod_monitors_scrape_every_service_on_its_internal_port() -> None:
    monitor = by_name("prod", "PodMonitor", "wxkf")
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] == "internal"
    (expression,) = monitor["spec"]["selector"]["matchExpressions"]
    assert expression["key"] == "app.kubernetes.io/name"
    assert expression["operator"] == "In"
    assert sorted(expression["values"]) == sorted(f"wxkf-{s}" for s in SERVICES)
    for service in SERVICES:
        pod = by_name("prod", "Deployment", f"wxkf-{service}")["spec"]["template"]
        assert pod["metadata"]["labels"]["app.kubernetes.io/name"] in expression["values"]
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
        assert endpoint["port"] in ports, f"wxkf-{service} has no port {endpoint['port']}"


def test_the_broker_is_scraped_with_per_object_metrics() -> None:
    monitor = by_name("prod", "PodMonitor", "wxkf-rabbitmq")
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "wxkf-rabbitmq"
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "prometheus"
    cluster = by_name("prod", "RabbitmqCluster", "wxkf-rabbitmq")["spec"]["rabbitmq"]
    assert "rabbitmq_prometheus" in cluster["additionalPlugins"]
    assert "prometheus.return_per_object_metrics = true" in cluster["additionalConfig"]


def test_job_names_in_the_rules_are_the_pods_names() -> None:
    jobs = {f"wxkf-{s}" for s in SERVICES} | {"wxkf-rabbitmq"}
    down = next(r for r in files.alert_rules() if r["alert"] == "WxkfServiceDown")
    for job in jobs:
        assert f'absent(up{{job="{job}"}})' in down["expr"]
