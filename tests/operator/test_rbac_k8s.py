"""The operator works with nothing but rbac.yaml: it runs as a ServiceAccount token, namespace-scoped
(the ClusterRole bound by a RoleBinding), and reconciles a TradingSystem end to end."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner
from kubernetes_asyncio import client

from tradingsystem_operator import apply as k8s
from tradingsystem_testing import eventually_async
from tradingsystem_testing.controlplane import ControlPlane

RBAC = Path(k8s.__file__).with_name("rbac.yaml")


async def service_account_kubeconfig(
    api: client.ApiClient, cp: ControlPlane, namespace: str, directory: Path
) -> Path:
    docs = list(yaml.safe_load_all(RBAC.read_text()))
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    cp.apply(role)
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    await core.create_namespaced_service_account(namespace, {"metadata": {"name": "tradingsystem-operator"}})
    await rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "tradingsystem-operator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role["metadata"]["name"],
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "tradingsystem-operator", "namespace": namespace}
            ],
        },
    )
    token = await core.create_namespaced_service_account_token(
        "tradingsystem-operator", namespace, {"spec": {"expirationSeconds": 3600}}
    )
    assert cp.certs is not None
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "t", "cluster": {"server": cp.server, "certificate-authority": str(cp.certs.ca_cert)}}
        ],
        "users": [{"name": "sa", "user": {"token": token.status.token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "t", "user": "sa", "namespace": namespace}}],
        "current-context": "sa",
    }
    path = directory / "sa.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


async def test_operator_runs_with_only_its_rbac(
    k8s_api: client.ApiClient,
    control_plane: ControlPlane,
    tradingsystem_crd: str,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kubeconfig = await service_account_kubeconfig(k8s_api, control_plane, namespace, tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    custom = client.CustomObjectsApi(k8s_api)
    body: dict[str, Any] = {
        "apiVersion": "tradingsystem.dev/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": "rbac"},
        "spec": {
            "image": "ghcr.io/example/tradingsystem:0.1.0",
            "symbols": ["AAPL"],
            "mode": "paper",
            "credentials": {"secretName": "absent"},
        },
    }
    args = ["run", "--standalone", "--namespace", namespace, "-m", "tradingsystem_operator.handlers"]
    with KopfRunner(args, timeout=60) as runner:
        await custom.create_namespaced_custom_object(
            "tradingsystem.dev", "v1alpha1", namespace, "tradingsystems", body
        )
        # A missing Secret exercises secrets/get, status patch and event creation.
        status = await _wait_status(custom, namespace, "SecretNotFound")
        core = client.CoreV1Api(k8s_api)
        await core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": "absent"}, "stringData": {"ALPACA_API_KEY": "a", "ALPACA_SECRET_KEY": "b"}},
        )
        # Then apply (SSA) and prune of every child kind, and the Deployment watch.
        status = await _wait_status(custom, namespace, "WaitingForUpstream")
    assert runner.exit_code == 0
    assert not _refused(runner.output), runner.output[-3000:]
    assert status["services"]["risk-manager"]["waitingOn"] == "execution-engine"
    events = (await client.CoreV1Api(k8s_api).list_namespaced_event(namespace)).items
    assert any(e.reason == "SecretNotFound" for e in events)


async def _wait_status(custom: client.CustomObjectsApi, namespace: str, reason: str) -> dict[str, Any]:
    status: dict[str, Any] = {}

    async def with_reason() -> dict[str, Any] | None:
        nonlocal status
        obj = await custom.get_namespaced_custom_object(
            "tradingsystem.dev", "v1alpha1", namespace, "tradingsystems", "rbac"
        )
        status = obj.get("status") or {}
        return status if any(c.get("reason") == reason for c in status.get("conditions", [])) else None

    return await eventually_async(
        with_reason,
        f"a condition with reason {reason}",
        timeout=45,
        every=0.25,
        detail=lambda: f"; status: {status}",
    )


def _refused(log: str) -> bool:
    """A refusal in the operator's log: "forbidden" in any case (the API server's message, kopf's
    error) or a 403 status — not the digits of a log timestamp's milliseconds (",403]")."""
    return "forbidden" in log.lower() or re.search(r"(?<![\d,])403(?!\d)", log) is not None


def test_a_refusal_is_recognised_and_a_timestamp_is_not() -> None:
    assert (_refused("23:13:32,403] Handler 'registry' succeeded."), _refused("answered 403: no")) == (
        False,
        True,
    )
