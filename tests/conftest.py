"""Root fixtures: one real control plane (etcd + kube-apiserver + controller-manager) per session.

A test that uses any of these fixtures is marked ``k8s`` automatically (``make unit`` skips them).
Area-specific fixtures belong in tests/<area>/conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from tradingsystem_testing.controlplane import ControlPlane

_K8S_FIXTURES = {"control_plane", "kubeconfig", "k8s_api", "prometheus_crds", "namespace"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _K8S_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane(controller_manager=True) as cp:
        yield cp


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Iterator[Path]:
    """Path of the admin kubeconfig; also exported as $KUBECONFIG for the session."""
    assert control_plane.kubeconfig is not None
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(control_plane.kubeconfig))
        yield control_plane.kubeconfig


@pytest.fixture(scope="session")
def k8s_configuration(control_plane: ControlPlane, kubeconfig: Path) -> client.Configuration:
    """kubernetes_asyncio settings for the admin (system:masters) client certificate."""
    certs = control_plane.certs
    assert certs is not None
    cfg = client.Configuration(host=control_plane.server)
    cfg.ssl_ca_cert = str(certs.ca_cert)
    cfg.cert_file = str(certs.admin_cert)
    cfg.key_file = str(certs.admin_key)
    return cfg


@pytest.fixture
async def k8s_api(k8s_configuration: client.Configuration) -> AsyncIterator[client.ApiClient]:
    # Per test: an aiohttp session belongs to the event loop it was created on.
    async with client.ApiClient(k8s_configuration) as api:
        yield api


@pytest.fixture(scope="session")
def prometheus_crds(control_plane: ControlPlane) -> list[str]:
    """ServiceMonitor, PodMonitor and PrometheusRule CRDs installed and Established."""
    return control_plane.install_prometheus_operator_crds()


@pytest.fixture
async def namespace(k8s_api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting for finalization)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(k8s_api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    await core.delete_namespace(name)
