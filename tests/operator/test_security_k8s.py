"""The operator's secrets on the real control plane: the control-token and CurveZMQ Secrets it
generates and owns, their rotation on request, and that no token or key reaches the
TradingSystem object (what `kubectl get tradingsystem -o yaml` shows), its status, the events
or the operator's log. A Secret of the same name that is not ours is never overwritten."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes_asyncio import client

from tradingsystem.common import services
from tradingsystem_operator.render import (
    CONTROL_HASH_ANNOTATION,
    CURVE_HASH_ANNOTATION,
    HASH_ANNOTATION,
    ROTATE_CONTROL_TOKEN,
)
from tradingsystem_testing import eventually_async
from tradingsystem_testing.k8s import not_found

G, V, P = "tradingsystem.dev", "v1alpha1", "tradingsystems"
MERGE = "application/merge-patch+json"
PIPELINE = tuple(s.name for s in services.PIPELINE)
eventually = functools.partial(eventually_async, timeout=45.0, every=0.25, ignore=not_found)


@pytest.fixture
def never_logged() -> list[str]:
    """Values a test wants kept out of the operator's log (checked once the operator stopped:
    KopfRunner's output is readable only then)."""
    return []


@pytest.fixture
def operator(
    kubeconfig: Path, tradingsystem_crd: str, namespace: str, never_logged: list[str]
) -> Iterator[KopfRunner]:
    args = ["run", "--standalone", "--namespace", namespace, "-m", "tradingsystem_operator.handlers"]
    with KopfRunner(args, timeout=60) as runner:
        yield runner
    assert runner.exit_code == 0, runner.output
    assert not [s for s in never_logged if s in runner.output]


def ts_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "TradingSystem",
        "metadata": {"name": name},
        "spec": {"image": "ghcr.io/example/tradingsystem:0.1.0", "symbols": ["AAPL"], **spec},
    }


def secret_values(secret: Any) -> list[str]:
    """Every value in the Secret, decoded, and each key line of a certificate on its own."""
    out: list[str] = []
    for value in (secret.data or {}).values():
        text = base64.b64decode(value).decode()
        out.append(text.strip())
        out += [line.split("=", 1)[1].strip().strip('"') for line in text.splitlines() if "-key" in line]
    return out


async def test_owned_secrets_are_generated_mounted_rotated_and_never_shown(
    operator: KopfRunner, k8s_api: client.ApiClient, namespace: str, never_logged: list[str]
) -> None:
    core, apps = client.CoreV1Api(k8s_api), client.AppsV1Api(k8s_api)
    custom = client.CustomObjectsApi(k8s_api)
    await custom.create_namespaced_custom_object(
        G, V, namespace, P, ts_body("sec", security={"curve": {"enabled": True}})
    )
    control = await eventually(
        lambda: core.read_namespaced_secret("sec-control", namespace), "control Secret"
    )
    curve = await eventually(lambda: core.read_namespaced_secret("sec-curve", namespace), "curve Secret")
    uid = (await custom.get_namespaced_custom_object(G, V, namespace, P, "sec"))["metadata"]["uid"]
    for secret in (control, curve):
        assert [(r.uid, r.controller) for r in secret.metadata.owner_references] == [(uid, True)]
    assert len(curve.data) == 8

    async def template(service: str) -> Any:
        return (await apps.read_namespaced_deployment(f"sec-{service}", namespace)).spec.template

    risk = await eventually(lambda: template("risk-manager"), "risk-manager Deployment")
    assert "sec-control" in [v.secret.secret_name for v in risk.spec.volumes if v.secret]
    for svc in PIPELINE:
        annotations = (await eventually(lambda s=svc: template(s), svc)).metadata.annotations
        assert CURVE_HASH_ANNOTATION in annotations, svc
    before = {svc: (await template(svc)).metadata.annotations for svc in PIPELINE}

    # Rotation on request: a new annotation value, a new token, and only the risk-manager rolls.
    await custom.patch_namespaced_custom_object(
        G,
        V,
        namespace,
        P,
        "sec",
        {"metadata": {"annotations": {ROTATE_CONTROL_TOKEN: "1"}}},
        _content_type=MERGE,
    )

    async def rotated() -> Any:
        fresh = await core.read_namespaced_secret("sec-control", namespace)
        return fresh if fresh.data != control.data else None

    new_control = await eventually(rotated, "a new control token")
    await eventually(
        lambda: _differs(template("risk-manager"), CONTROL_HASH_ANNOTATION, before["risk-manager"]),
        "the risk-manager's pod template to carry the new token's hash",
    )
    for svc in ("market-data", "signal-bridge", "execution-engine"):
        assert (await template(svc)).metadata.annotations == before[svc], svc
    assert (await template("risk-manager")).metadata.annotations[HASH_ANNOTATION] == before["risk-manager"][
        HASH_ANNOTATION
    ]

    # No token or key in the object (kubectl get -o yaml), its status, the events or the log.
    secrets = secret_values(control) + secret_values(new_control) + secret_values(curve)
    assert all(len(s) >= 40 for s in secrets)
    shown = json.dumps(await custom.get_namespaced_custom_object(G, V, namespace, P, "sec"))
    events = json.dumps(
        [e.to_dict() for e in (await core.list_namespaced_event(namespace)).items], default=str
    )
    configs = json.dumps([c.data for c in (await core.list_namespaced_config_map(namespace)).items])
    for where, text in (("object", shown), ("events", events), ("config", configs)):
        assert not [s for s in secrets if s in text], where
    never_logged.extend(secrets)


async def test_a_secret_of_that_name_that_is_not_ours_is_left_alone(
    operator: KopfRunner, k8s_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_api)
    custom = client.CustomObjectsApi(k8s_api)
    mine = {"token": base64.b64encode(b"the-users-own-value").decode()}
    await core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="clash-control"), data=mine)
    )
    await custom.create_namespaced_custom_object(G, V, namespace, P, ts_body("clash"))

    async def not_owned() -> Any:
        status = (await custom.get_namespaced_custom_object(G, V, namespace, P, "clash")).get("status") or {}
        return next((c for c in status.get("conditions", []) if c.get("reason") == "SecretNotOwned"), None)

    cond = await eventually(not_owned, "condition reason SecretNotOwned")
    assert "clash-control" in cond["message"]
    assert (await core.read_namespaced_secret("clash-control", namespace)).data == mine


async def _differs(template: Awaitable[Any], key: str, before: dict[str, str]) -> bool:
    return bool((await template).metadata.annotations.get(key) != before.get(key))
