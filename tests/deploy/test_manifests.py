"""The Kubernetes overlays render, validate offline, pass the policy check, and keep the
properties the services rely on (probes, graceful stop, hardening)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.crd_schemas import BY_KIND

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = ("ingress", "router", "sender", "media")
PUBLIC_PORTS = {"ingress": 8080, "media": 8084}
"""The services that serve a port of their own; router and sender serve only the internal one."""
INTERNAL_PORT = 9180
K8S_VERSION = "1.30.0"


def _tool(name: str) -> str:
    # Tools installed into the project's virtualenv sit beside its python, maybe not on PATH.
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert path, f"{name} is not installed: run `make tools` (scripts/ensure-tools.sh)"
    return path


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [_tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def objects(overlay: str, kind: str) -> Iterator[dict[str, Any]]:
    return (o for o in rendered(overlay) if o["kind"] == kind)


def by_name(overlay: str, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects(overlay, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} appears {len(found)} times in {overlay}"
    return found[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_its_schema(overlay: str) -> None:
    for obj in rendered(overlay):
        crd = BY_KIND.get((obj["apiVersion"], obj["kind"]))
        if crd is not None:
            jsonschema.validate(obj, crd)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_hardened_probed_and_stops_gracefully(overlay: str, service: str) -> None:
    deployment = by_name(overlay, "Deployment", f"wxkf-{service}")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", f"services.{service}"]
    hardening = container["securityContext"]
    assert hardening["readOnlyRootFilesystem"] is True
    assert hardening["allowPrivilegeEscalation"] is False
    assert hardening["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Probes on the internal port: the service's own port serves no health.
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "internal"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    public = {"http": PUBLIC_PORTS[service]} if service in PUBLIC_PORTS else {}
    assert ports == {**public, "internal": INTERNAL_PORT}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    # The pod must outlive the preStop pause plus the service's own drain after SIGTERM.
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + 20
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} >= {
        "kubernetes.io/hostname"
    }
    by_name(overlay, "PodDisruptionBudget", f"wxkf-{service}")
    services = list(objects(overlay, "Service"))
    named = [o for o in services if o["metadata"]["name"] == f"wxkf-{service}"]
    if service not in PUBLIC_PORTS:
        assert named == [], f"wxkf-{service} serves nothing a Service could expose"
        return
    (service_obj,) = named
    assert service_obj["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # No Service exposes the internal port; ingress's faces the internet with the push only.
    assert [p["targetPort"] for p in service_obj["spec"]["ports"]] == ["http"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_reads_the_same_internal_port(overlay: str) -> None:
    config = by_name(overlay, "ConfigMap", "wxkf-config")
    assert config["data"]["WXKF_INTERNAL_PORT"] == str(INTERNAL_PORT)


def test_prod_scales_ingress_on_cpu_and_workers_on_queue_depth() -> None:
    hpa = by_name("prod", "HorizontalPodAutoscaler", "wxkf-ingress")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    queues = {
        so["spec"]["scaleTargetRef"]["name"]: so["spec"]["triggers"][0]["metadata"]["queueName"]
        for so in objects("prod", "ScaledObject")
    }
    from libs.common.topology import ROUTER_EVENTS, SENDER_COMMANDS

    assert queues == {"wxkf-router": ROUTER_EVENTS.name, "wxkf-sender": SENDER_COMMANDS.name}


def test_only_ingress_is_open_and_media_only_to_its_clients() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in objects("prod", "NetworkPolicy")}
    assert policies["wxkf-default-deny"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/part-of": "wxkf"
    }
    public = [p for p in policies.values() if any("from" not in r for r in p.get("ingress", []))]
    assert [p["podSelector"]["matchLabels"] for p in public] == [
        {"app.kubernetes.io/name": "wxkf-ingress"}
    ]
    media_from = policies["wxkf-media-clients"]["ingress"][0]["from"]
    allowed = [peer["podSelector"]["matchLabels"] for peer in media_from]
    assert {"app.kubernetes.io/name": "wxkf-router"} in allowed
    assert {"app.kubernetes.io/name": "wxkf-sender"} in allowed


def test_the_rules_config_map_is_hashed_and_mounted_by_the_router() -> None:
    (rules,) = [
        c for c in objects("prod", "ConfigMap") if c["metadata"]["name"].startswith("wxkf-rules")
    ]
    assert rules["metadata"]["name"] != "wxkf-rules", "the name must carry the content hash"
    router = by_name("prod", "Deployment", "wxkf-router")["spec"]["template"]["spec"]
    assert {"name": "rules", "configMap": {"name": rules["metadata"]["name"]}} in router["volumes"]


def test_every_wxkf_pod_the_default_deny_covers_has_its_clients_allowed() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in objects("dev", "NetworkPolicy")}
    redis = policies["wxkf-redis-clients"]
    assert redis["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "wxkf-redis"}
    assert redis["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "wxkf"}}}
    ]
    store = by_name("dev", "StatefulSet", "wxkf-redis")["spec"]["template"]["metadata"]
    assert store["labels"]["app.kubernetes.io/part-of"] == "wxkf", "the default deny applies"


def test_prod_runs_redis_with_sentinel_failover_and_the_services_can_reach_it() -> None:
    assert not [s for s in objects("prod", "StatefulSet") if s["metadata"]["name"] == "wxkf-redis"]
    servers = by_name("prod", "RedisReplication", "wxkf-redis")["spec"]
    sentinels = by_name("prod", "RedisSentinel", "wxkf-redis")["spec"]
    assert servers["clusterSize"] == 3
    assert sentinels["clusterSize"] == 3
    watch = sentinels["redisSentinelConfig"]
    assert watch["redisReplicationName"] == "wxkf-redis"
    # A majority of the sentinels decides, so one lost sentinel neither blocks nor forces one.
    assert int(watch["quorum"]) == sentinels["clusterSize"] // 2 + 1
    password = {"name": "wxkf-redis", "key": "password"}
    assert servers["kubernetesConfig"]["redisSecret"] == password
    assert watch["redisReplicationPassword"]["secretKeyRef"] == password
    extra = by_name("prod", "ConfigMap", servers["redisConfig"]["additionalRedisConfig"])
    conf = extra["data"]["redis-additional.conf"].split("\n")
    assert "min-replicas-to-write 1" in conf
    assert "appendonly yes" in conf

    policy = by_name("prod", "NetworkPolicy", "wxkf-redis-ha")["spec"]
    selects = {e["key"]: set(e["values"]) for e in policy["podSelector"]["matchExpressions"]}
    assert selects == {
        "app": {"wxkf-redis", "wxkf-redis-sentinel"},
        "redis_setup_type": {"replication", "sentinel"},
    }
    (rule,) = policy["ingress"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "wxkf"}}} in rule["from"]
    # The operator itself connects to every server to set up replication.
    operator = {"kubernetes.io/metadata.name": "ot-operators"}
    assert {"namespaceSelector": {"matchLabels": operator}} in rule["from"]
    assert "--namespace ot-operators" in (ROOT / "docs" / "deploy.md").read_text()
    assert {p["port"] for p in rule["ports"]} == {6379, 26379}


def test_the_store_url_of_the_secret_template_names_each_deployment() -> None:
    template = yaml.safe_load((K8S / "base" / "secret.template.yaml").read_text())
    text = (K8S / "base" / "secret.template.yaml").read_text()
    assert template["stringData"]["ingress-store-url"].startswith("redis+sentinel://")
    sentinel_pods = ",".join(
        f"wxkf-redis-sentinel-{n}.wxkf-redis-sentinel-headless:26379" for n in range(3)
    )
    assert f"redis+sentinel://wxkf-ingress:<password>@{sentinel_pods}/wxkf/0" in text
    assert "redis://:<password>@wxkf-redis:6379/0" in text, "dev's, in a comment"
    sentinels = by_name("prod", "RedisSentinel", "wxkf-redis")["spec"]["redisSentinelConfig"]
    assert sentinels["masterGroupName"] == "wxkf"


def test_the_deployed_rules_are_the_shipped_example_and_valid() -> None:
    deployed = K8S / "base" / "rules.yaml"
    assert deployed.read_text() == (ROOT / "examples" / "rules.yaml").read_text(), (
        "deploy/k8s/base/rules.yaml is a copy of examples/rules.yaml (kustomize cannot read "
        "files outside its folder): copy it again"
    )
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [sys.executable, "-m", "services.cli", "rules", "check", str(deployed)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_secret_values_are_rendered() -> None:
    for overlay in OVERLAYS:
        assert not list(objects(overlay, "Secret")), "secrets are applied from the template"


def test_policy_check_passes(tmp_path: Path) -> None:
    checkov = ROOT / ".tools" / "bin" / "checkov"
    assert checkov.exists(), "checkov is not installed: run `make tools`"
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(rendered(overlay)))
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [str(checkov), "--config-file", str(K8S / ".checkov.yaml"), "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Failed checks: 0" in result.stdout


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [_tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- least privilege ---------------------------------------------------------------------------

MOUNTED = {
    "ingress": {"token", "aes-key"},
    "router": set(),
    "sender": {"app-secret", "internal-token"},
    "media": {"app-secret", "internal-token"},
}
"""The Secret keys each Deployment may hold besides its own broker and Redis URLs and log-key."""


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_mounts_only_the_secret_keys_it_uses(overlay: str, service: str) -> None:
    pod = by_name(overlay, "Deployment", f"wxkf-{service}")["spec"]["template"]["spec"]
    secrets = [v["secret"] for v in pod["volumes"] if "secret" in v]
    assert [s["secretName"] for s in secrets] == ["wxkf-secrets"]
    items = {i["key"]: i["path"] for i in secrets[0]["items"]}
    own = {
        f"{service}-bus-url": "bus-url",
        f"{service}-store-url": "store-url",
        "log-key": "log-key",
    }
    assert items == {**{k: k for k in MOUNTED[service]}, **own}
    (container,) = pod["containers"]
    assert "env" not in container or all("valueFrom" not in e for e in container["env"])
    # Every key a Deployment mounts is one the Secret template has.
    template = yaml.safe_load((K8S / "base" / "secret.template.yaml").read_text())
    assert set(items) <= set(template["stringData"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_file_the_config_names_is_a_setting_of_some_service(overlay: str) -> None:
    from libs.common.settings import env_name
    from services.composition import SETTINGS

    config = by_name(overlay, "ConfigMap", "wxkf-config")["data"]
    files = {k.removesuffix("_FILE"): v for k, v in config.items() if k.endswith("_FILE")}
    assert files["WXKF_LOG_KEY"] == "/var/run/secrets/wxkf/log-key", "WXKF_LOG_KEY from the Secret"
    for service in SERVICES:
        fields = {env_name(f) for f in SETTINGS[service].__struct_fields__}
        pod = by_name(overlay, "Deployment", f"wxkf-{service}")["spec"]["template"]["spec"]
        (volume,) = [v["secret"] for v in pod["volumes"] if "secret" in v]
        mounted = {i["path"] for i in volume["items"]}
        # A variable the service reads from a file has its file mounted; no other is mounted.
        wanted = {Path(path).name for var, path in files.items() if var in fields}
        assert wanted == mounted, service


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    matches = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        matches = matches and labels.get(expr["key"]) in expr["values"]
    return matches


def _egress_rules(policies: list[dict[str, Any]], labels: dict[str, str]) -> list[dict[str, Any]]:
    """Every egress rule that applies to the pods with ``labels``; asserts that some policy
    isolates their egress (without one, a pod's egress is open whatever the rules say)."""
    selecting = [p["spec"] for p in policies if _selects(p["spec"]["podSelector"], labels)]
    assert any("Egress" in p["policyTypes"] for p in selecting), f"egress open: {labels}"
    return [rule for p in selecting for rule in p.get("egress", [])]


def _egress_peers(policies: list[dict[str, Any]], app: str) -> list[dict[str, Any]]:
    """Every egress rule that applies to the pods of ``app``."""
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "wxkf"}
    return _egress_rules(policies, labels)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_is_denied_but_for_what_each_service_needs(overlay: str) -> None:
    policies = list(objects(overlay, "NetworkPolicy"))
    deny = by_name(overlay, "NetworkPolicy", "wxkf-default-deny")["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in deny
    for service in SERVICES:
        rules = _egress_peers(policies, f"wxkf-{service}")
        internet = [
            peer["ipBlock"] for rule in rules for peer in rule.get("to", []) if "ipBlock" in peer
        ]
        to_pods = [peer for rule in rules for peer in rule.get("to", []) if "ipBlock" not in peer]
        assert all("to" in rule for rule in rules), "no rule opens every destination"
        if service in ("sender", "media"):
            assert internet == [
                {
                    "cidr": "0.0.0.0/0",
                    "except": [
                        "10.0.0.0/8",
                        "172.16.0.0/12",
                        "192.168.0.0/16",
                        "169.254.0.0/16",
                        "100.64.0.0/10",
                    ],
                }
            ]
        else:
            assert internet == [], f"{service} reaches the internet"
        names = json.dumps(to_pods)
        assert "wxkf-rabbitmq" in names
        assert "wxkf-redis" in names
        assert ("wxkf-media" in names) == (service in ("router", "sender"))


DNS = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
}
BROKER_POD = {"app.kubernetes.io/name": "wxkf-rabbitmq", "app.kubernetes.io/component": "rabbitmq"}
REDIS_HA_PODS = (
    {"app": "wxkf-redis", "redis_setup_type": "replication"},
    {"app": "wxkf-redis-sentinel", "redis_setup_type": "sentinel"},
)


def _reaches(rules: list[dict[str, Any]], labels: dict[str, str]) -> set[int]:
    """The ports on which rules let a pod reach the pods with ``labels`` (same namespace)."""
    ports: set[int] = set()
    for rule in rules:
        peers = [p for p in rule["to"] if set(p) == {"podSelector"}]
        if any(_selects(p["podSelector"], labels) for p in peers):
            ports |= {p["port"] for p in rule["ports"]}
    return ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_brokers_and_the_stores_egress_is_dns_and_their_peers_only(overlay: str) -> None:
    policies = list(objects(overlay, "NetworkPolicy"))
    pods = [BROKER_POD]
    if overlay == "prod":
        pods += REDIS_HA_PODS
    else:  # dev's one Redis: a wxkf pod, under the default deny and the DNS of every pod
        pods.append({"app.kubernetes.io/name": "wxkf-redis", "app.kubernetes.io/part-of": "wxkf"})
    for labels in pods:
        rules = _egress_rules(policies, labels)
        assert all("to" in rule and "ports" in rule for rule in rules), labels
        assert not [p for r in rules for p in r["to"] if "ipBlock" in p], f"{labels}: internet"
        assert DNS in rules, labels
        others = [r for r in rules if r != DNS]
        # Every other peer is a pod of the same namespace (no namespace, no address).
        assert all(set(p) == {"podSelector"} for r in others for p in r["to"]), labels
        if labels is BROKER_POD:
            assert _reaches(others, BROKER_POD) == {4369, 25672, 5672}
            assert all(_reaches([r], BROKER_POD) for r in others), "a peer outside the broker"
        elif labels in REDIS_HA_PODS:
            for peer in REDIS_HA_PODS:
                assert _reaches(others, peer) == {6379, 26379}, (labels, peer)
            assert not _reaches(others, BROKER_POD)
        else:
            assert others == [], labels


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_policy_selects_the_broker_and_one_the_store(overlay: str) -> None:
    broker = by_name(overlay, "NetworkPolicy", "wxkf-rabbitmq")["spec"]
    assert broker["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "wxkf-rabbitmq",
        "app.kubernetes.io/component": "rabbitmq",
    }
    amqp = [r for r in broker["ingress"] if r.get("ports") == [{"port": 5672}]]
    assert amqp == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "wxkf"}}}],
            "ports": [{"port": 5672}],
        }
    ]
    assert all("from" in rule for rule in broker["ingress"])
    stores = [
        p["spec"]
        for p in objects(overlay, "NetworkPolicy")
        if "wxkf-redis" in json.dumps(p["spec"]["podSelector"])
        and "Ingress" in p["spec"]["policyTypes"]
    ]
    assert stores, "no policy selects the Redis pods"


@pytest.mark.parametrize("service", SERVICES)
def test_prod_gives_each_service_a_broker_user_with_only_its_permissions(service: str) -> None:
    from libs.common.access import PUBLISHES, broker_permissions, topic_permissions, user_name

    name = user_name(service)  # type: ignore[arg-type]
    user = by_name("prod", "User", name)["spec"]
    assert user["tags"] == [], "no management, monitoring or administrator tag"
    permission = by_name("prod", "Permission", name)["spec"]
    assert permission["userReference"] == {"name": name}
    assert permission["vhost"] == "/"
    wanted = broker_permissions(service)  # type: ignore[arg-type]
    assert permission["permissions"] == {
        "configure": wanted.configure,
        "write": wanted.write,
        "read": wanted.read,
    }
    cluster = by_name("prod", "RabbitmqCluster", "wxkf-rabbitmq")["metadata"]["name"]
    assert (
        user["rabbitmqClusterReference"]
        == permission["rabbitmqClusterReference"]
        == {"name": cluster}
    )
    # The routing keys it may publish, on each topic exchange it may write to.
    topics = [
        t["spec"]
        for t in objects("prod", "TopicPermission")
        if t["spec"]["userReference"] == {"name": name}
    ]
    assert all(t["vhost"] == "/" for t in topics)
    assert all(t["rabbitmqClusterReference"] == {"name": cluster} for t in topics)
    assert sorted((t["permissions"] for t in topics), key=lambda p: p["exchange"]) == sorted(
        (
            {"exchange": t.exchange, "write": t.write, "read": t.read}
            for t in topic_permissions(service)  # type: ignore[arg-type]
        ),
        key=lambda p: p["exchange"],
    )
    written = {t["permissions"]["exchange"] for t in topics}
    assert written == {"kf.events", "kf.commands"} & set(PUBLISHES[service])  # type: ignore[index]


def test_the_topic_permissions_let_each_service_publish_only_its_own_keys() -> None:
    import re

    keys = {
        "ingress": ["msg.text", "event.user_enter_tempsession"],
        "router": ["decision.reply", "ext.history", "send.text"],
        "sender": ["outbound.sent.text", "outbound.failed.image", "outbound.rejected.quota"],
        "media": ["media.archived"],
    }
    everything = [k for ks in keys.values() for k in ks]
    for topic in objects("prod", "TopicPermission"):
        owner = topic["spec"]["userReference"]["name"].removeprefix("wxkf-")
        allowed = topic["spec"]["permissions"]
        own = [
            k
            for k in keys[owner]
            if (k.startswith("send.")) == (allowed["exchange"] == "kf.commands")
        ]
        for key in everything:
            assert bool(re.match(allowed["write"], key)) == (key in own), (owner, key)
    ingress = by_name("prod", "Permission", "wxkf-ingress")["spec"]["permissions"]
    assert ingress["configure"] == "^$", "ingress may declare or delete no exchange"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_declare_only_what_their_users_may(overlay: str) -> None:
    config = by_name(overlay, "ConfigMap", "wxkf-config")["data"]
    assert config["WXKF_BUS_DECLARE"] == "own"


def test_prod_redis_reads_its_users_from_a_secret_the_guide_makes() -> None:
    servers = by_name("prod", "RedisReplication", "wxkf-redis")["spec"]
    assert servers["acl"] == {"secret": {"secretName": "wxkf-redis-acl"}}
    guide = (ROOT / "docs" / "deploy.md").read_text()
    assert "create secret generic wxkf-redis-acl --from-file=user.acl=" in guide
    assert guide.index("wxkf-redis-acl --from-file") < guide.index("kubectl apply -k my-wxkf")
