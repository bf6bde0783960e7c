"""docs/deploy.md followed as written: the operator's overlay it shows renders, runs the image
its build step pushes with the AppID and rules it sets, and everything its steps name (the
Secrets and their keys, the objects its commands wait on, the images the rules send) exists,
in an order where each step has what it needs."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_manifests import ROOT, _tool

GUIDE = ROOT / "docs" / "deploy.md"
SERVICES = ("ingress", "router", "sender", "media")
MADE_BY_OPERATORS = {"wxkf-rabbitmq-default-user"} | {
    f"wxkf-{s}-user-credentials" for s in ("ingress", "router", "sender", "media")
}
"""The RabbitMQ operators make the broker's users; the guide reads them."""


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def overlay_block() -> str:
    found = re.search(r"```yaml\n   # my-wxkf/kustomization.yaml\n(.*?)   ```", guide(), re.S)
    assert found, "the guide shows no my-wxkf/kustomization.yaml"
    return "\n".join(line.removeprefix("   ") for line in found.group(1).splitlines()) + "\n"


def as_the_guide_leaves_it(overlay: str, tmp: Path) -> tuple[dict[str, Any], ...]:
    """The guide's steps done in ``tmp``: the clone beside ``my-wxkf``, the overlay, a copy
    of the shipped rules; then the render, as ``kubectl kustomize my-wxkf`` shows it."""
    (tmp / "wxkf").symlink_to(ROOT)
    mine = tmp / "my-wxkf"
    mine.mkdir()
    # "for dev, use wxkf-dev and overlays/dev instead"
    text = overlay_block().replace("overlays/prod", f"overlays/{overlay}")
    (mine / "kustomization.yaml").write_text(text, encoding="utf-8")
    (mine / "rules.yaml").write_text(
        (ROOT / "examples" / "rules.yaml").read_text(encoding="utf-8").replace("小店", "本店"),
        encoding="utf-8",
    )
    out = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [_tool("kubectl"), "kustomize", str(mine)], check=True, capture_output=True, text=True
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


@pytest.fixture(scope="module", params=["prod", "dev"])
def rendered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, tuple[dict[str, Any], ...]]:
    overlay = str(request.param)
    return overlay, as_the_guide_leaves_it(overlay, tmp_path_factory.mktemp(overlay))


def named(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} appears {len(found)} times"
    return found[0]


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def test_the_overlay_runs_the_pushed_image_with_your_appid_and_rules(
    rendered: tuple[str, tuple[dict[str, Any], ...]],
) -> None:
    _, objects = rendered
    spec = yaml.safe_load(overlay_block())
    (image,) = spec["images"]
    pushed = f"{image['newName']}:{image['newTag']}"
    assert f"docker build -t {pushed} ." in guide()
    assert f"docker push {pushed}" in guide()
    for service in SERVICES:
        pod = named(objects, "Deployment", f"wxkf-{service}")["spec"]["template"]["spec"]
        assert [c["image"] for c in pod["containers"]] == [pushed], service

    (patch,) = yaml.safe_load(spec["patches"][0]["patch"])
    config = named(objects, "ConfigMap", "wxkf-config")["data"]
    assert config["WXKF_APPID"] == patch["value"]
    assert patch["value"] != "wx0000000000000000"

    router = named(objects, "Deployment", "wxkf-router")["spec"]["template"]["spec"]
    (volume,) = [v for v in router["volumes"] if v["name"] == "rules"]
    rules = named(objects, "ConfigMap", volume["configMap"]["name"])
    assert "本店" in rules["data"]["rules.yaml"], "the router mounts your rules, not the example"


def test_every_secret_the_pods_read_is_made_by_a_step_of_the_guide(
    rendered: tuple[str, tuple[dict[str, Any], ...]],
) -> None:
    overlay, objects = rendered
    read: set[str] = set()
    for obj in objects:
        for key, value in walk(obj):
            if key == "secretName":
                read.add(value)
            elif key in ("secretKeyRef", "redisSecret") and isinstance(value, dict):
                read.add(value["name"])
            elif key == "secretTargetRef":
                read.update(ref["name"] for ref in value)
    made = set(re.findall(r"create secret generic (\S+)", guide())) | MADE_BY_OPERATORS
    template = yaml.safe_load((ROOT / "deploy/k8s/base/secret.template.yaml").read_text())
    if "kubectl -n wxkf apply -f my-wxkf/secret.yaml" in guide():
        made.add(template["metadata"]["name"])
    assert read <= made, f"{overlay}: no step of the guide makes {sorted(read - made)}"

    # Every key the services mount from wxkf-secrets is in the guide's table and the template.
    keys = {
        item["key"]
        for service in SERVICES
        for volume in named(objects, "Deployment", f"wxkf-{service}")["spec"]["template"]["spec"][
            "volumes"
        ]
        if volume.get("secret", {}).get("secretName") == "wxkf-secrets"
        for item in volume["secret"]["items"]
    }
    rows = re.findall(r"^   \| `([a-z<>-]+)` \| ", guide(), re.M)
    table = {row.replace("<service>", s) for row in rows for s in SERVICES}
    assert keys <= table
    assert keys <= set(template["stringData"])


def test_each_step_comes_after_what_it_needs() -> None:
    text = guide()

    def at(command: str) -> int:
        where = text.find(command)
        assert where >= 0, f"the guide never runs {command!r}"
        return where

    assert at("docker build -t") < at("docker push") < at("kubectl apply -k my-wxkf")
    assert at("create secret generic wxkf-redis") < at("kubectl apply -k my-wxkf")
    # The broker's user exists only once the overlay made the RabbitmqCluster.
    assert at("kubectl apply -k my-wxkf") < at("get secret wxkf-rabbitmq-default-user")
    assert at("get secret wxkf-rabbitmq-default-user") < at("apply -f my-wxkf/secret.yaml")
    assert at("get secret wxkf-rabbitmq-default-user") < at("create secret generic wxkf-keda")
    assert at("apply -f my-wxkf/secret.yaml") < at("rollout status deploy/wxkf-$s")
    assert at("rollout status deploy/wxkf-$s") < at("port-forward deploy/wxkf-media")


def test_what_the_commands_name_exists(rendered: tuple[str, tuple[dict[str, Any], ...]]) -> None:
    overlay, objects = rendered
    named(objects, "RabbitmqCluster", "wxkf-rabbitmq")
    for service in SERVICES:
        named(objects, "Deployment", f"wxkf-{service}")
    ports = named(objects, "Service", "wxkf-ingress")["spec"]["ports"]
    assert [p["port"] for p in ports] == [8080]
    media = named(objects, "Deployment", "wxkf-media")["spec"]["template"]["spec"]
    assert media["containers"][0]["ports"][0]["containerPort"] == 8084  # the port-forward
    namespace = "wxkf" if overlay == "prod" else "wxkf-dev"
    named(objects, "Namespace", namespace)
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        namespace
    }


def test_the_guide_uploads_every_image_the_shipped_rules_send() -> None:
    rules = yaml.safe_load((ROOT / "examples" / "rules.yaml").read_text(encoding="utf-8"))
    assets = set()
    for key, value in walk(rules):
        if key == "image":
            assets.add(value if isinstance(value, str) else value.get("asset"))
        elif key == "thumb_asset":
            assets.add(value)
    assets.discard(None)
    assert assets, "the shipped rules send no image?"
    (loop,) = re.findall(r"for name in ([a-z0-9 -]+); do\n.*?/v1/assets/\$name", guide(), re.S)
    assert set(loop.split()) == assets
