"""The real ``tradingsystem-operator run`` process, SIGKILLed in the middle of its first pass and
started again: the new process converges to exactly the expected children, with no duplicates or
orphans and no pod roll, and serves its metrics and liveness endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tradingsystem_testing import eventually
from tradingsystem_testing.controlplane import ControlPlane
from tradingsystem_testing.process import operator_process

G, V, P = "tradingsystem.dev", "v1alpha1", "tradingsystems"
COMPONENTS = ("sim", "market-data", "signal-bridge", "risk-manager", "execution-engine")


def names(cp: ControlPlane, path: str) -> list[str]:
    status, listing = cp.request("GET", path)
    assert status == 200, listing
    return sorted(i["metadata"]["name"] for i in listing["items"])


def converged(cp: ControlPlane, path: str) -> dict[str, Any] | None:
    status, ts = cp.request("GET", path)
    st = ts.get("status") or {}
    done = status == 200 and st.get("observedGeneration") == ts["metadata"]["generation"]
    return (
        ts
        if done and (st.get("services") or {}).get("execution-engine", {}).get("waitingOn") == "sim"
        else None
    )


def test_killed_mid_reconcile_then_restarted_converges_without_duplicates(
    control_plane: ControlPlane, kubeconfig: Path, tradingsystem_crd: str, namespace: str, tmp_path: Path
) -> None:
    ns, log = namespace, tmp_path / "operator.log"
    ts_path = f"/apis/{G}/{V}/namespaces/{ns}/{P}/crash"
    body = {
        "apiVersion": f"{G}/{V}",
        "kind": "TradingSystem",
        "metadata": {"name": "crash"},
        "spec": {"image": "ghcr.io/example/tradingsystem:0.1.0", "symbols": ["AAPL"]},
    }
    with operator_process(kubeconfig, ns, log) as first:
        status, created = control_plane.request("POST", f"/apis/{G}/{V}/namespaces/{ns}/{P}", body)
        assert status == 201, created
        # The ConfigMap is applied first: kill as soon as it exists, before the pass completes.
        eventually(
            lambda: names(
                control_plane,
                f"/api/v1/namespaces/{ns}/configmaps?labelSelector=app.kubernetes.io/instance%3Dcrash",
            ),
            "the first child",
            timeout=45,
            every=0.02,  # kill as early in the pass as possible
        )
        first.kill()
    assert first.proc.returncode == -9

    with operator_process(kubeconfig, ns, log, resync_s=1.0) as second:
        ts = eventually(
            lambda: converged(control_plane, ts_path), "status after restart", timeout=45, every=0.2
        )
        uid = ts["metadata"]["uid"]
        expected = sorted(f"crash-{c}" for c in COMPONENTS)
        assert names(control_plane, f"/apis/apps/v1/namespaces/{ns}/deployments") == expected
        assert names(control_plane, f"/api/v1/namespaces/{ns}/services") == expected
        assert names(control_plane, f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies") == expected
        cms = names(control_plane, f"/api/v1/namespaces/{ns}/configmaps?labelSelector=app.kubernetes.io/name")
        assert cms == ["crash-config"]
        for kind_path in (
            f"/apis/apps/v1/namespaces/{ns}/deployments",
            f"/api/v1/namespaces/{ns}/services",
            f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
            f"/api/v1/namespaces/{ns}/configmaps/crash-config",
        ):
            _, got = control_plane.request("GET", kind_path)
            for item in got.get("items", [got]):
                refs = item["metadata"]["ownerReferences"]
                assert [(r["uid"], r["controller"]) for r in refs] == [(uid, True)], item["metadata"]["name"]
        # No second pod template (a roll) came out of the restart: one ReplicaSet per Deployment.
        replicasets = names(control_plane, f"/apis/apps/v1/namespaces/{ns}/replicasets")
        assert sorted(rs.rsplit("-", 1)[0] for rs in replicasets) == expected
        st = ts["status"]
        assert st["phase"] == "Progressing" and st["readyServices"] == "0/4"
        ready = next(c for c in st["conditions"] if c["type"] == "Ready")
        assert ready["observedGeneration"] == ts["metadata"]["generation"]

        # The run path's endpoints: Prometheus counters and kopf's liveness probe with ours in it.
        passes = eventually(
            lambda: second.reconciles().get("success"), "a counted reconcile pass", timeout=45
        )
        assert passes >= 1 and second.reconciles()["error"] == 0
        health = json.loads(second.get(second.liveness_port, "/healthz"))
        assert health["reconciles"] >= 1
        assert second.proc.poll() is None
