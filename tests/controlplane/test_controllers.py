"""kube-controller-manager runs: garbage collection and the Deployment controller."""

from __future__ import annotations

from kubernetes_asyncio import client, watch

from tradingsystem_testing import eventually_async
from tradingsystem_testing.k8s import is_gone


async def test_deleting_owner_garbage_collects_child(k8s_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s_api)
    owner = await core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    await core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[ref]))
    )

    await core.delete_namespaced_config_map("owner", namespace)

    await eventually_async(
        lambda: is_gone(core.read_namespaced_config_map("child", namespace)),
        "the child to be garbage-collected",
        timeout=90,
    )


async def test_deployment_gets_a_replicaset(k8s_api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(k8s_api)
    labels = {"app": "web"}
    deployment = await apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]),
                ),
            ),
        ),
    )

    owned_by_deployment = None
    async with watch.Watch() as w:
        async for event in w.stream(apps.list_namespaced_replica_set, namespace, timeout_seconds=60):
            refs = event["object"].metadata.owner_references or []
            if any(r.uid == deployment.metadata.uid and r.controller for r in refs):
                owned_by_deployment = event["object"]
                break
    assert owned_by_deployment is not None, "no ReplicaSet owned by the Deployment within 60s"
    assert owned_by_deployment.spec.template.spec.containers[0].image == "nginx:1.27"
