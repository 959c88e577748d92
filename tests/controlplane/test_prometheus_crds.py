"""install_prometheus_operator_crds(): the monitoring CRDs are served with their schemas."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

GROUP, VERSION = "monitoring.coreos.com", "v1"


def service_monitor(name: str, endpoints: object) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceMonitor",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "risk-manager"}}, "endpoints": endpoints},
    }


async def test_monitoring_crds_installed_and_validating(
    prometheus_crds: list[str], k8s_api: client.ApiClient, namespace: str
) -> None:
    assert sorted(prometheus_crds) == [
        "podmonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
        "servicemonitors.monitoring.coreos.com",
    ]
    custom = client.CustomObjectsApi(k8s_api)
    await custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "servicemonitors", service_monitor("ok", [{"port": "metrics"}])
    )
    with pytest.raises(ApiException) as refused:
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "servicemonitors", service_monitor("bad", "not-a-list")
        )
    assert refused.value.status == 422
