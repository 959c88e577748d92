"""The operator (kopf, in a thread) against the real control plane.

There is no kubelet: a test plays it by marking a Deployment's pods Ready through the pod status
subresource; the real ReplicaSet and Deployment controllers then report availability, which is
what the operator's startup gate waits for.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kopf.testing import KopfRunner
from kubernetes_asyncio import client
from prometheus_client import REGISTRY

from tradingsystem.common import services
from tradingsystem_operator.render import HASH_ANNOTATION
from tradingsystem_testing import eventually_async
from tradingsystem_testing.k8s import is_gone, not_found

G, V, P = "tradingsystem.dev", "v1alpha1", "tradingsystems"
MERGE = "application/merge-patch+json"
IMAGE = "ghcr.io/example/tradingsystem:0.1.0"
SECRET_VALUE = "PKTESTSECRETVALUE0123456789"
PIPELINE = tuple(s.name for s in services.PIPELINE)
START_ORDER = tuple(s.name for s in services.START_ORDER)  # consumers first, as the supervisor
T = TypeVar("T")


@pytest.fixture
def operator(kubeconfig: Path, tradingsystem_crd: str, namespace: str) -> Iterator[KopfRunner]:
    args = ["run", "--standalone", "--namespace", namespace, "-m", "tradingsystem_operator.handlers"]
    with KopfRunner(args, timeout=60) as runner:
        yield runner
    assert runner.exit_code == 0, runner.output
    assert SECRET_VALUE not in runner.output


# Probes read objects the operator may not have created yet: a 404 means "not yet".
eventually = functools.partial(eventually_async, timeout=45.0, every=0.25, ignore=not_found)


def ts_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "TradingSystem",
        "metadata": {"name": name},
        "spec": {"image": IMAGE, "symbols": ["AAPL", "MSFT"], **spec},
    }


class Cluster:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    async def create(self, body: dict[str, Any]) -> None:
        await self.custom.create_namespaced_custom_object(G, V, self.ns, P, body)

    async def get(self, name: str) -> dict[str, Any]:
        return dict(await self.custom.get_namespaced_custom_object(G, V, self.ns, P, name))

    async def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        await self.custom.patch_namespaced_custom_object(
            G, V, self.ns, P, name, {"spec": spec}, _content_type=MERGE
        )

    async def status(self, name: str) -> dict[str, Any]:
        return dict((await self.get(name)).get("status") or {})

    async def deployment(self, name: str) -> Any:
        return await self.apps.read_namespaced_deployment(name, self.ns)

    async def replicas(self, name: str) -> int:
        return int((await self.deployment(name)).spec.replicas)

    async def pod_hash(self, name: str) -> str:
        return str((await self.deployment(name)).spec.template.metadata.annotations[HASH_ANNOTATION])

    async def config(self, name: str) -> dict[str, Any]:
        cm = await self.core.read_namespaced_config_map(f"{name}-config", self.ns)
        return dict(yaml.safe_load(cm.data["config.yaml"]))

    async def play_kubelet(self, instance: str, component: str) -> int:
        """Mark every pod of one component Running and Ready; returns how many."""
        selector = f"app.kubernetes.io/instance={instance},app.kubernetes.io/component={component}"
        pods = (await self.core.list_namespaced_pod(self.ns, label_selector=selector)).items
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ready = {"status": "True", "lastTransitionTime": now}
        status = {
            "phase": "Running",
            "conditions": [
                {"type": t, **ready} for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
        }
        for pod in pods:
            await self.core.patch_namespaced_pod_status(pod.metadata.name, self.ns, {"status": status})
        return len(pods)

    async def make_available(self, instance: str, component: str) -> None:
        await eventually(lambda: self.play_kubelet(instance, component), f"pods of {component}")
        await eventually(
            lambda: self._available(f"{instance}-{component}"), f"{component} available per its Deployment"
        )

    async def _available(self, name: str) -> bool:
        return bool((await self.deployment(name)).status.available_replicas)


@pytest.fixture
def cluster(k8s_api: client.ApiClient, namespace: str) -> Cluster:
    return Cluster(k8s_api, namespace)


async def _async(value: T) -> T:
    return value


async def _template(cluster: Cluster, name: str) -> Any:
    return (await cluster.deployment(name)).spec.template


async def condition(cluster: Cluster, name: str, type_: str) -> dict[str, Any] | None:
    return next((c for c in (await cluster.status(name)).get("conditions", []) if c["type"] == type_), None)


async def test_create_owns_children_and_starts_in_order_then_halts_and_pauses(
    operator: KopfRunner, cluster: Cluster
) -> None:
    await cluster.create(ts_body("demo"))
    st = await eventually(
        lambda: _waiting(cluster, "demo", "execution-engine", "sim"), "status: execution-engine waits for sim"
    )
    assert st["phase"] == "Progressing"
    meta = (await cluster.get("demo"))["metadata"]
    owner_uid = meta["uid"]
    # No finalizer (deletion never waits for the operator); kopf's marks use our own prefix.
    assert not meta.get("finalizers")
    assert not [k for k in meta.get("annotations", {}) if "kopf.zalando.org" in k]
    deployments = (await cluster.apps.list_namespaced_deployment(cluster.ns)).items
    assert {d.metadata.name for d in deployments} == {f"demo-{s}" for s in ("sim", *PIPELINE)}
    for listing in (
        deployments,
        (await cluster.core.list_namespaced_service(cluster.ns)).items,
        (
            await cluster.core.list_namespaced_config_map(
                cluster.ns, label_selector="app.kubernetes.io/instance=demo"
            )
        ).items,
        (
            await client.NetworkingV1Api(cluster.core.api_client).list_namespaced_network_policy(cluster.ns)
        ).items,
    ):
        assert listing
        for obj in listing:
            assert [r.uid for r in obj.metadata.owner_references] == [owner_uid], obj.metadata.name
    assert await cluster.replicas("demo-sim") == 1
    assert [await cluster.replicas(f"demo-{s}") for s in PIPELINE] == [0, 0, 0, 0]

    # Ordered startup, consumers first: each service is scaled up once the one before it is
    # available, and not before.
    before = "sim"
    for i, svc in enumerate(START_ORDER):
        assert [await cluster.replicas(f"demo-{s}") for s in START_ORDER[i:]] == [0] * (len(START_ORDER) - i)
        await cluster.make_available("demo", before)
        await eventually(lambda s=svc: _scaled(cluster, f"demo-{s}"), f"{svc} scaled up")
        before = svc
    await cluster.make_available("demo", before)
    st = await eventually(lambda: _phase(cluster, "demo", "Running"), "phase Running")
    assert st["readyServices"] == "4/4"
    assert (await condition(cluster, "demo", "Ready"))["status"] == "True"  # type: ignore[index]

    # Kill switch: execution-engine to 0, risk-manager told to HALT, reported; nothing else rolls.
    templates = {s: await _template(cluster, f"demo-{s}") for s in ("sim", *PIPELINE)}
    await cluster.patch_spec("demo", {"halted": True})
    await eventually(lambda: _replicas_is(cluster, "demo-execution-engine", 0), "execution-engine at 0")
    risk = await cluster.deployment("demo-risk-manager")
    assert [(e.name, e.value) for e in risk.spec.template.spec.containers[0].env] == [
        ("TS_RISK__HALTED", "true")
    ]
    assert "halted" not in (await cluster.config("demo"))["risk"]
    for svc, template in templates.items():
        assert (await _template(cluster, f"demo-{svc}") == template) is (svc != "risk-manager"), svc
    halted = await eventually(lambda: _cond_status(cluster, "demo", "Halted", "True"), "Halted condition")
    assert halted["reason"] == "KillSwitchOn"

    # Paused: spec changes are not applied, what runs is untouched.
    await cluster.patch_spec("demo", {"paused": True})
    await eventually(lambda: _cond_status(cluster, "demo", "Paused", "True"), "Paused condition")
    await cluster.patch_spec("demo", {"symbols": ["AAPL"]})
    await asyncio.sleep(2)  # give a (wrong) reconcile the chance to happen
    assert (await cluster.config("demo"))["symbols"] == ["AAPL", "MSFT"]
    await cluster.patch_spec("demo", {"paused": False})
    await eventually(lambda: _config_symbols(cluster, "demo", ["AAPL"]), "config after resume")
    await eventually(lambda: _cond_status(cluster, "demo", "Paused", "False"), "Paused cleared")


async def test_a_running_system_whose_status_was_lost_keeps_every_service_running(
    operator: KopfRunner, cluster: Cluster
) -> None:
    """A restore from a backup brings objects back without their status. The next pass must
    read what runs (the startup gate keeps a running service running), not take the missing
    status for a first start and gate the pipeline down to 0 replicas."""
    await cluster.create(ts_body("restored"))
    before = "sim"
    for svc in START_ORDER:
        await cluster.make_available("restored", before)
        await eventually(lambda s=svc: _scaled(cluster, f"restored-{s}"), f"{svc} scaled up")
        before = svc
    await cluster.make_available("restored", before)
    await eventually(lambda: _phase(cluster, "restored", "Running"), "phase Running")

    await cluster.custom.patch_namespaced_custom_object_status(
        G, V, cluster.ns, P, "restored", {"status": None}, _content_type=MERGE
    )
    assert await cluster.status("restored") == {}
    await cluster.patch_spec("restored", {"symbols": ["AAPL"]})  # a pass now, not at the resync
    await eventually(lambda: _config_symbols(cluster, "restored", ["AAPL"]), "config after the change")
    await eventually(lambda: _observed_current(cluster, "restored"), "status written again")
    assert [await cluster.replicas(f"restored-{s}") for s in PIPELINE] == [1, 1, 1, 1]


async def test_spec_and_secret_changes_roll_pods_without_leaking_the_secret(
    operator: KopfRunner, cluster: Cluster
) -> None:
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="alpaca"),
        string_data={"ALPACA_API_KEY": "PKID", "ALPACA_SECRET_KEY": SECRET_VALUE},
    )
    await cluster.core.create_namespaced_secret(cluster.ns, secret)
    await cluster.create(ts_body("paper", mode="paper", credentials={"secretName": "alpaca"}))
    for svc in PIPELINE:  # applied concurrently: wait for each
        await eventually(lambda s=svc: cluster.deployment(f"paper-{s}"), f"deployment {svc}")
    first = await cluster.pod_hash("paper-market-data")
    env = (await cluster.deployment("paper-execution-engine")).spec.template.spec.containers[0].env
    assert {e.name: e.value_from.secret_key_ref.key for e in env} == {
        "ALPACA_API_KEY": "ALPACA_API_KEY",
        "ALPACA_SECRET_KEY": "ALPACA_SECRET_KEY",
    }

    await cluster.patch_spec("paper", {"symbols": ["AAPL", "SPY"]})
    second = await eventually(
        lambda: _hash_differs(cluster, "paper-market-data", first), "hash after spec change"
    )
    assert (await cluster.config("paper"))["symbols"] == ["AAPL", "SPY"]

    await cluster.core.patch_namespaced_secret(
        "alpaca", cluster.ns, {"data": {"ALPACA_SECRET_KEY": base64.b64encode(b"rotated").decode()}}
    )
    # The Secret watch picks the rotation up (test_operator_lifecycle_k8s.py: without the resync).
    third = await eventually(
        lambda: _hash_differs(cluster, "paper-market-data", second), "hash after secret change"
    )
    assert third != first

    everything = [
        yaml.safe_dump(await cluster.get("paper")),
        str((await cluster.core.list_namespaced_config_map(cluster.ns)).to_dict()),
        str((await cluster.core.list_namespaced_event(cluster.ns)).to_dict()),
        str((await cluster.apps.list_namespaced_deployment(cluster.ns)).to_dict()),
    ]
    assert not any(SECRET_VALUE in text or "rotated" in text for text in everything)


async def test_missing_secret_is_reported_and_nothing_is_applied_until_it_exists(
    operator: KopfRunner, cluster: Cluster
) -> None:
    await cluster.create(ts_body("nokeys", mode="paper", credentials={"secretName": "missing"}))
    degraded = await eventually(lambda: _cond_status(cluster, "nokeys", "Degraded", "True"), "Degraded")
    assert degraded["reason"] == "SecretNotFound" and "missing" in degraded["message"]
    assert (await cluster.status("nokeys"))["phase"] == "Degraded"
    assert not (await cluster.apps.list_namespaced_deployment(cluster.ns)).items
    events = await eventually(lambda: _warnings(cluster, "nokeys"), "Warning event")
    assert any(e.reason == "SecretNotFound" for e in events)

    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="missing"),
        string_data={"ALPACA_API_KEY": "PKID", "ALPACA_SECRET_KEY": SECRET_VALUE},
    )
    await cluster.core.create_namespaced_secret(cluster.ns, secret)
    await eventually(
        lambda: cluster.deployment("nokeys-market-data"), "children after the Secret appears", timeout=60
    )
    await eventually(lambda: _cond_status(cluster, "nokeys", "Degraded", "False"), "Degraded cleared")


def reconciles(result: str) -> float:
    return REGISTRY.get_sample_value("tradingsystem_operator_reconciles_total", {"result": result}) or 0.0


async def test_delete_removes_everything_without_a_stuck_finalizer(
    operator: KopfRunner, cluster: Cluster
) -> None:
    before = reconciles("success")
    await cluster.create(ts_body("gone"))
    await eventually(lambda: cluster.deployment("gone-sim"), "children")
    # The operator's /metrics counts passes (the counter moves once the pass has written status).
    await eventually(lambda: _async(reconciles("success") > before), "reconcile counted")
    await cluster.custom.delete_namespaced_custom_object(G, V, cluster.ns, P, "gone")
    await eventually(lambda: is_gone(cluster.get("gone")), "TradingSystem deleted")
    await eventually(lambda: _no_deployments(cluster), "children garbage-collected")


async def test_monitoring_objects_created_when_crds_exist(
    operator: KopfRunner, cluster: Cluster, prometheus_crds: list[str]
) -> None:
    await cluster.create(ts_body("mon", monitoring={"labels": {"release": "kps"}}))
    custom = cluster.custom
    sm = await eventually(
        lambda: custom.get_namespaced_custom_object(
            "monitoring.coreos.com", "v1", cluster.ns, "servicemonitors", "mon-metrics"
        ),
        "ServiceMonitor",
    )
    assert sm["metadata"]["labels"]["release"] == "kps"
    rule = await eventually(
        lambda: custom.get_namespaced_custom_object(
            "monitoring.coreos.com", "v1", cluster.ns, "prometheusrules", "mon-rules"
        ),
        "PrometheusRule",
    )
    assert rule["spec"]["groups"]
    await cluster.patch_spec("mon", {"monitoring": {"serviceMonitor": False}})
    await eventually(
        lambda: is_gone(
            custom.get_namespaced_custom_object(
                "monitoring.coreos.com", "v1", cluster.ns, "servicemonitors", "mon-metrics"
            )
        ),
        "ServiceMonitor pruned",
    )


# --- probes -----------------------------------------------------------------------------------


async def _waiting(cluster: Cluster, name: str, svc: str, upstream: str) -> dict[str, Any] | None:
    st = await cluster.status(name)
    return st if (st.get("services") or {}).get(svc, {}).get("waitingOn") == upstream else None


async def _phase(cluster: Cluster, name: str, phase: str) -> dict[str, Any] | None:
    st = await cluster.status(name)
    return st if st.get("phase") == phase else None


async def _observed_current(cluster: Cluster, name: str) -> bool:
    ts = await cluster.get(name)
    return bool((ts.get("status") or {}).get("observedGeneration") == ts["metadata"]["generation"])


async def _scaled(cluster: Cluster, name: str) -> bool:
    return await cluster.replicas(name) > 0


async def _replicas_is(cluster: Cluster, name: str, want: int) -> bool:
    return await cluster.replicas(name) == want


async def _cond_status(cluster: Cluster, name: str, type_: str, status: str) -> dict[str, Any] | None:
    cond = await condition(cluster, name, type_)
    return cond if cond and cond["status"] == status else None


async def _config_symbols(cluster: Cluster, name: str, symbols: list[str]) -> bool:
    return (await cluster.config(name))["symbols"] == symbols


async def _hash_differs(cluster: Cluster, deployment: str, old: str) -> str | None:
    new = await cluster.pod_hash(deployment)
    return new if new != old else None


async def _warnings(cluster: Cluster, name: str) -> list[Any]:
    events = (await cluster.core.list_namespaced_event(cluster.ns)).items
    return [e for e in events if e.type == "Warning" and e.involved_object.name == name]


async def _no_deployments(cluster: Cluster) -> bool:
    return not (await cluster.apps.list_namespaced_deployment(cluster.ns)).items
