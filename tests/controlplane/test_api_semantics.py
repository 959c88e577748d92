"""The apiserver behaves like a real one: CEL validation rules and server-side apply."""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tradingsystem_testing import eventually_async

CEL_MESSAGE = "minReplicas must not exceed maxReplicas"
APPLY = "application/apply-patch+yaml"


def widget_crd(group: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "minReplicas": {"type": "integer"},
                                        "maxReplicas": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.minReplicas <= self.maxReplicas",
                                            "message": CEL_MESSAGE,
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def widget(group: str, name: str, lo: int, hi: int) -> dict:
    return {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"minReplicas": lo, "maxReplicas": hi},
    }


async def test_cel_rule_refuses_invalid_object_with_its_message(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    group = f"cel{uuid.uuid4().hex[:8]}.test.tradingsystem.io"
    ext = client.ApiextensionsV1Api(k8s_api)
    custom = client.CustomObjectsApi(k8s_api)
    crd = widget_crd(group)
    await ext.create_custom_resource_definition(crd)
    try:

        async def established() -> bool:
            got = await ext.read_custom_resource_definition(crd["metadata"]["name"])
            return any(c.type == "Established" and c.status == "True" for c in got.status.conditions or [])

        await eventually_async(established, "CRD Established", timeout=30)

        async def valid_accepted() -> bool:
            try:
                await custom.create_namespaced_custom_object(
                    group, "v1", namespace, "widgets", widget(group, "ok", 1, 3)
                )
            except ApiException as exc:
                if exc.status == 404:  # the new resource is not served yet
                    return False
                raise
            return True

        await eventually_async(valid_accepted, "a valid Widget accepted", timeout=30)

        with pytest.raises(ApiException) as refused:
            await custom.create_namespaced_custom_object(
                group, "v1", namespace, "widgets", widget(group, "bad", 5, 2)
            )
        assert refused.value.status == 422
        assert CEL_MESSAGE in json.loads(refused.value.body)["message"]
    finally:
        await ext.delete_custom_resource_definition(crd["metadata"]["name"])


def config_map(namespace: str, level: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa", "namespace": namespace},
        "data": {"level": level},
    }


async def test_server_side_apply_tracks_field_managers_and_conflicts(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_api)
    await core.patch_namespaced_config_map(
        "ssa", namespace, config_map(namespace, "1"), field_manager="alice", _content_type=APPLY
    )
    cm = await core.read_namespaced_config_map("ssa", namespace)
    assert cm.data == {"level": "1"}
    assert [(m.manager, m.operation) for m in cm.metadata.managed_fields] == [("alice", "Apply")]

    with pytest.raises(ApiException) as conflict:
        await core.patch_namespaced_config_map(
            "ssa", namespace, config_map(namespace, "2"), field_manager="bob", _content_type=APPLY
        )
    assert conflict.value.status == 409
    assert "alice" in json.loads(conflict.value.body)["message"]

    await core.patch_namespaced_config_map(
        "ssa", namespace, config_map(namespace, "2"), field_manager="bob", force=True, _content_type=APPLY
    )
    cm = await core.read_namespaced_config_map("ssa", namespace)
    assert cm.data == {"level": "2"}
    owners = {m.manager for m in cm.metadata.managed_fields if "f:data" in json.dumps(m.fields_v1)}
    assert owners == {"bob"}
