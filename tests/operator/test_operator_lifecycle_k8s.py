"""Production lifecycle on the real control plane: no stuck objects, fast Secret rotation.

- Deleting a TradingSystem (and its namespace) needs no operator: there is no finalizer, the
  controller-manager's garbage collector removes the children by their ownerReferences. A
  finalizer left by an older version is removed when the operator first sees the object.
- A rotated credentials Secret rolls the pods through the Secret watch, with the resync set to an
  hour so only the watch can have done it.
- Scheduling fields and pod pass-through reach the Deployments' pod templates as the API server
  stored them, and the pods the ReplicaSet controller creates (priority resolved from the class).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tradingsystem_testing.k8s import is_gone

from .test_operator_k8s import SECRET_VALUE, Cluster, G, P, V, _hash_differs, eventually, ts_body

# What every version with a kopf timer put on each TradingSystem.
OLDER_FINALIZER = "tradingsystem.dev/finalizer"
# Far beyond any bounded wait below: a change seen within them was not brought by the resync.
RESYNC_NEVER_S = "3600"
ROTATION_DEADLINE_S = 20.0


def kopf_runner(namespace: str) -> KopfRunner:
    args = ["run", "--standalone", "--namespace", namespace, "-m", "tradingsystem_operator.handlers"]
    return KopfRunner(args, timeout=60)


@pytest.fixture
async def own_namespace(k8s_api: client.ApiClient) -> AsyncIterator[str]:
    """A namespace the test deletes itself (the shared fixture's teardown would find it gone)."""
    name = f"life-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(k8s_api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        await core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def slow_resync(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TRADINGSYSTEM_OPERATOR_RESYNC_S", RESYNC_NEVER_S)
    yield


async def _finalizers(cluster: Cluster, name: str) -> list[str]:
    return list((await cluster.get(name))["metadata"].get("finalizers") or [])


async def _without_finalizers(cluster: Cluster, name: str) -> bool:
    return not await _finalizers(cluster, name)


async def _children(cluster: Cluster, name: str) -> list[str]:
    selector = f"app.kubernetes.io/instance={name}"
    found: list[Any] = [
        *(await cluster.apps.list_namespaced_deployment(cluster.ns, label_selector=selector)).items,
        *(await cluster.core.list_namespaced_service(cluster.ns, label_selector=selector)).items,
        *(await cluster.core.list_namespaced_config_map(cluster.ns, label_selector=selector)).items,
    ]
    return [o.metadata.name for o in found]


async def _no_children(cluster: Cluster, name: str) -> bool:
    return not await _children(cluster, name)


async def test_older_finalizer_is_removed_and_deletion_needs_no_running_operator(
    k8s_api: client.ApiClient, tradingsystem_crd: str, kubeconfig: Path, own_namespace: str
) -> None:
    cluster = Cluster(k8s_api, own_namespace)
    # As an older version (with a kopf timer) left it.
    legacy = ts_body("legacy")
    legacy["metadata"]["finalizers"] = [OLDER_FINALIZER]
    await cluster.create(legacy)
    with kopf_runner(own_namespace) as runner:
        await eventually(lambda: _without_finalizers(cluster, "legacy"), "the old finalizer removed")
        await cluster.create(ts_body("fresh"))
        await eventually(lambda: cluster.deployment("fresh-sim"), "children of a new object")
        await eventually(lambda: cluster.deployment("legacy-sim"), "children of the upgraded object")
        assert await _finalizers(cluster, "fresh") == []
    assert runner.exit_code == 0, runner.output

    # The operator is gone (uninstalled): deleting still completes.
    await cluster.custom.delete_namespaced_custom_object(G, V, own_namespace, P, "legacy")
    await eventually(lambda: is_gone(cluster.get("legacy")), "TradingSystem deleted without the operator")
    await eventually(lambda: _no_children(cluster, "legacy"), "children garbage-collected")
    assert await _children(cluster, "fresh")  # the other system is untouched

    core = client.CoreV1Api(k8s_api)
    await core.delete_namespace(own_namespace)
    await eventually(
        lambda: is_gone(core.read_namespace(own_namespace)),
        "namespace gone, not stuck Terminating",
        timeout=90,
    )


async def test_rotated_secret_rolls_the_pods_through_the_watch_not_the_resync(
    slow_resync: None, k8s_api: client.ApiClient, tradingsystem_crd: str, kubeconfig: Path, namespace: str
) -> None:
    cluster = Cluster(k8s_api, namespace)
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="alpaca"),
        string_data={"ALPACA_API_KEY": "PKID", "ALPACA_SECRET_KEY": SECRET_VALUE},
    )
    await cluster.core.create_namespaced_secret(namespace, secret)
    with kopf_runner(namespace) as runner:
        await cluster.create(ts_body("rot", mode="paper", credentials={"secretName": "alpaca"}))
        # Applies run concurrently and in start order: wait for the Deployment this test reads.
        await eventually(lambda: cluster.deployment("rot-market-data"), "the market-data deployment")
        before = await cluster.pod_hash("rot-market-data")
        rotated = base64.b64encode(b"rotated-secret-value").decode()
        await cluster.core.patch_namespaced_secret(
            "alpaca", namespace, {"data": {"ALPACA_SECRET_KEY": rotated}}
        )
        after = await eventually(
            lambda: _hash_differs(cluster, "rot-market-data", before),
            "pod-template hash after the rotation",
            timeout=ROTATION_DEADLINE_S,
        )
        engine = await cluster.pod_hash("rot-execution-engine")
    assert runner.exit_code == 0, runner.output
    assert engine == after
    assert SECRET_VALUE not in runner.output and "rotated-secret-value" not in runner.output


async def test_scheduling_and_pass_through_reach_the_pod_templates_and_pods(
    k8s_api: client.ApiClient, tradingsystem_crd: str, kubeconfig: Path, namespace: str
) -> None:
    cluster = Cluster(k8s_api, namespace)
    scheduling_api = client.SchedulingV1Api(k8s_api)
    priority = f"trading-{namespace}"
    await scheduling_api.create_priority_class(
        client.V1PriorityClass(metadata=client.V1ObjectMeta(name=priority), value=100_000)
    )
    spread = {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
    }
    spec = {
        "scheduling": {
            "nodeSelector": {"node-role.example.com/trading": "true"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "trading", "effect": "NoSchedule"}
            ],
            "priorityClassName": priority,
            "topologySpreadConstraints": [spread],
        },
        "sim": {"scheduling": {"nodeSelector": {}, "tolerations": []}},
        "podLabels": {"team": "quant"},
        "podAnnotations": {"example.com/desk": "7"},
        "imagePullSecrets": [{"name": "regcred"}],
    }
    try:
        with kopf_runner(namespace) as runner:
            await cluster.create(ts_body("sched", **spec))
            # Applies run concurrently: wait for each Deployment this test reads.
            md = (
                await eventually(lambda: cluster.deployment("sched-market-data"), "market-data")
            ).spec.template
            sim = (await eventually(lambda: cluster.deployment("sched-sim"), "the simulator")).spec.template
            pod = await eventually(lambda: _pods(cluster, "sched", "sim"), "a simulator pod")
        assert runner.exit_code == 0, runner.output
    finally:
        await scheduling_api.delete_priority_class(priority)
    assert md.spec.node_selector == {"node-role.example.com/trading": "true"}
    assert [(t.key, t.value, t.effect) for t in md.spec.tolerations] == [
        ("dedicated", "trading", "NoSchedule")
    ]
    assert md.spec.priority_class_name == priority
    (constraint,) = md.spec.topology_spread_constraints
    assert constraint.label_selector.match_labels == {
        "app.kubernetes.io/instance": "sched",
        "app.kubernetes.io/component": "market-data",
    }
    assert (md.metadata.labels["team"], md.metadata.annotations["example.com/desk"]) == ("quant", "7")
    assert [s.name for s in md.spec.image_pull_secrets] == ["regcred"]
    # The simulator cleared the default node selector and tolerations, and kept the rest.
    assert (sim.spec.node_selector, sim.spec.tolerations, sim.spec.priority_class_name) == (
        None,
        None,
        priority,
    )
    assert (pod.spec.priority, pod.metadata.labels["team"]) == (100_000, "quant")


async def _pods(cluster: Cluster, instance: str, component: str) -> Any:
    selector = f"app.kubernetes.io/instance={instance},app.kubernetes.io/component={component}"
    pods = (await cluster.core.list_namespaced_pod(cluster.ns, label_selector=selector)).items
    return pods[0] if pods else None
