"""High availability: real ``tradingsystem-operator run --leader-elect`` processes against the real
control plane. Only the Lease holder reconciles; the standby writes nothing; SIGKILL of the leader
hands over after the lease duration, a graceful stop at once (the Lease is released), and a leader
whose Lease is taken exits non-zero. The measured failover times are printed (run with -s)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tradingsystem_testing import eventually
from tradingsystem_testing.controlplane import ControlPlane
from tradingsystem_testing.process import OperatorProcess, operator_process

G, V, P = "tradingsystem.dev", "v1alpha1", "tradingsystems"
LEASE = "tradingsystem-operator"
DEPLOYMENTS = ("sim", "market-data", "signal-bridge", "risk-manager", "execution-engine")
# Short timings so a SIGKILLed leader is replaced within seconds (defaults: 15/10/2).
FAST = ("--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "1")
# controller-runtime's (the chart's) 15 s / 10 s / 2 s.
DEFAULTS: tuple[str, ...] = ()
# A lease far longer than the test waits: a takeover within the wait can only be a released Lease.
LONG = ("--lease-duration", "90", "--renew-deadline", "60", "--retry-period", "1")


def elect(namespace: str, timings: tuple[str, ...]) -> list[str]:
    return ["--leader-elect", "--leader-election-namespace", namespace, *timings]


def lease(cp: ControlPlane, ns: str) -> dict[str, Any]:
    status, body = cp.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{LEASE}")
    assert status == 200, body
    return dict(body["spec"])


def create(cp: ControlPlane, ns: str, name: str) -> None:
    body = {
        "apiVersion": f"{G}/{V}",
        "kind": "TradingSystem",
        "metadata": {"name": name},
        "spec": {"image": "ghcr.io/example/tradingsystem:0.1.0", "symbols": ["AAPL"]},
    }
    status, created = cp.request("POST", f"/apis/{G}/{V}/namespaces/{ns}/{P}", body)
    assert status == 201, created


def reconciled(cp: ControlPlane, ns: str, name: str) -> list[str] | None:
    """The Deployments of ``name`` once its status is current, else None."""
    status, ts = cp.request("GET", f"/apis/{G}/{V}/namespaces/{ns}/{P}/{name}")
    st = ts.get("status") or {}
    if status != 200 or st.get("observedGeneration") != ts["metadata"]["generation"]:
        return None
    _, listing = cp.request(
        "GET", f"/apis/apps/v1/namespaces/{ns}/deployments?labelSelector=app.kubernetes.io/instance%3D{name}"
    )
    return sorted(d["metadata"]["name"] for d in listing["items"]) or None


def roles(*ops: OperatorProcess) -> tuple[OperatorProcess, OperatorProcess] | None:
    """(leader, standby) once both serve metrics and exactly one leads."""
    flags = [op.is_leader() for op in ops]
    if None in flags or flags.count(True) != 1:
        return None
    return ops[flags.index(True)], ops[flags.index(False)]


@pytest.fixture
def two(
    kubeconfig: Path, tradingsystem_crd: str, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[OperatorProcess, OperatorProcess]]:
    timings = request.param
    with ExitStack() as stack:
        ops = tuple(
            stack.enter_context(
                operator_process(
                    kubeconfig,
                    namespace,
                    tmp_path / f"operator-{i}.log",
                    extra_args=elect(namespace, timings),
                )
            )
            for i in range(2)
        )
        yield ops[0], ops[1]


@pytest.mark.parametrize("two", [FAST, DEFAULTS], indirect=True, ids=["fast", "defaults"])
def test_only_the_leader_reconciles_and_a_standby_takes_over_when_the_leader_is_killed(
    control_plane: ControlPlane,
    namespace: str,
    two: tuple[OperatorProcess, OperatorProcess],
    request: pytest.FixtureRequest,
) -> None:
    cp, ns = control_plane, namespace
    leader, standby = eventually(lambda: roles(*two), "one leader and one standby", timeout=60)
    create(cp, ns, "first")
    deployments = eventually(lambda: reconciled(cp, ns, "first"), "the first system reconciled", timeout=60)
    assert deployments == sorted(f"first-{d}" for d in DEPLOYMENTS)
    # The standby never ran a pass (kopf is not even started there) and stays live.
    assert standby.reconciles() == {"success": 0.0, "error": 0.0}
    assert leader.reconciles()["success"] >= 1
    assert json.loads(standby.get(standby.liveness_port, "/healthz")) == {"leader": False}
    held_by = lease(cp, ns)["holderIdentity"]

    leader.kill()
    killed = time.monotonic()
    create(cp, ns, "second")  # only the standby can reconcile it
    eventually(standby.is_leader, "the standby leads", timeout=60, every=0.1)
    leads = time.monotonic() - killed
    eventually(lambda: reconciled(cp, ns, "second"), "the second system reconciled", timeout=60, every=0.1)
    done = time.monotonic() - killed
    timings = {"fast": "lease 4 s, renew 3 s, retry 1 s", "defaults": "lease 15 s, renew 10 s, retry 2 s"}
    print(
        f"\nfailover after SIGKILL ({timings[request.node.callspec.id]}): leads {leads:.1f} s, reconciled {done:.1f} s"
    )
    assert lease(cp, ns)["holderIdentity"] not in (held_by, None)
    assert standby.reconciles()["success"] >= 1
    assert eventually(lambda: reconciled(cp, ns, "first"), "the first system still current") == deployments


@pytest.mark.parametrize("two", [LONG], indirect=True)
def test_a_gracefully_stopped_leader_releases_the_lease_and_the_standby_takes_over_at_once(
    control_plane: ControlPlane, namespace: str, two: tuple[OperatorProcess, OperatorProcess]
) -> None:
    cp, ns = control_plane, namespace
    leader, standby = eventually(lambda: roles(*two), "one leader and one standby", timeout=60)
    held_by = lease(cp, ns)["holderIdentity"]
    signalled = time.monotonic()
    leader.stop()  # SIGTERM, as a rolling update sends; returns once the process has exited
    exited = time.monotonic() - signalled
    assert leader.proc.returncode == 0
    assert lease(cp, ns).get("holderIdentity") != held_by  # released (or already taken over)
    # Well inside the 90 s lease: only the release lets the standby in this soon.
    eventually(standby.is_leader, "the standby leads", timeout=45, every=0.1)
    took = time.monotonic() - signalled
    print(
        f"\nfailover after SIGTERM (lease released, retry 1 s): leads {took:.1f} s, old one exited {exited:.1f} s"
    )
    create(cp, ns, "after")
    eventually(lambda: reconciled(cp, ns, "after"), "a system reconciled by the new leader", timeout=60)


def test_a_leader_whose_lease_is_taken_exits_non_zero(
    control_plane: ControlPlane, kubeconfig: Path, tradingsystem_crd: str, namespace: str, tmp_path: Path
) -> None:
    cp, ns = control_plane, namespace
    with operator_process(kubeconfig, ns, tmp_path / "operator.log", extra_args=elect(ns, FAST)) as op:
        eventually(op.is_leader, "the only replica leads", timeout=60)
        path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{LEASE}"
        # Another candidate's write, as a merge patch: no resourceVersion race with the renewals.
        patch = {"spec": {"holderIdentity": "intruder"}}
        status, body = cp.request("PATCH", path, patch, content_type="application/merge-patch+json")
        assert status == 200, body
        eventually(lambda: op.proc.poll() is not None, "the deposed leader exits", timeout=60)
        assert op.proc.returncode == 1
        assert lease(cp, ns)["holderIdentity"] == "intruder"  # it did not release what it no longer holds
