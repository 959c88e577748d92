"""Issue #11, "Must show" 1-7: the README's Kubernetes install path on a real (offline) kind cluster.

One module, run in file order on one cluster: install as the README says, a sim pipeline reaches
Running by its real readiness probes, trades, halts and resumes, logs hold no secret, deleting the
TradingSystem removes its children, a PVC-backed execution engine survives forced pod deletions,
and `helm uninstall` leaves only the CRD. Every wait is bounded; nothing asserts on timing.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections import Counter
from typing import Any

import pytest
import yaml
from kind_helpers import (
    NAMESPACE,
    REPO,
    Cluster,
    in_cluster,
    localize,
    positions_match,
    readme_install_commands,
    settled_and_equal,
)

from tradingsystem_testing.kind import KindEnvironment

# Cold runs build Kubernetes from source inside the first test's fixtures.
pytestmark = [pytest.mark.timeout(5400)]

TS = "demo-sim"  # examples/sim.yaml
PVC_TS = "pvc-sim"
ENGINE = "app.kubernetes.io/component=execution-engine"


@pytest.fixture(scope="module")
def install(kind_env: KindEnvironment) -> list[tuple[str, int, float, str]]:
    """Run the README's install block, command for command, from the repository root."""
    assert kind_env.images is not None
    results = []
    for cmd in readme_install_commands((REPO / "README.md").read_text()):
        t0 = time.monotonic()
        proc = subprocess.run(
            localize(cmd, kind_env.images.python_build),
            shell=True,
            cwd=REPO,
            env={**kind_env.cluster.env, "DOCKER_BUILDKIT": "0"},
            capture_output=True,
            text=True,
            timeout=1800,
        )
        seconds = time.monotonic() - t0
        print(f"[kind] {seconds:6.1f} s  rc={proc.returncode}  {cmd}")
        results.append((cmd, proc.returncode, seconds, proc.stdout[-2000:] + proc.stderr[-3000:]))
        if proc.returncode != 0:
            break
    return results


@pytest.fixture(scope="module")
def cluster(kind_env: KindEnvironment, install: list[tuple[str, int, float, str]]) -> Cluster:
    return Cluster(kind_env)


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _orders(cluster: Cluster, ts: str) -> list[dict[str, Any]]:
    return list(cluster.ledger(ts)["orders"])


def _filled_at_least(cluster: Cluster, ts: str, n: int) -> list[dict[str, Any]] | None:
    orders = _orders(cluster, ts)
    return orders if sum(o["status"] == "filled" for o in orders) >= n else None


def _running(cluster: Cluster, ts: str) -> dict[str, str] | None:
    row = cluster.ts_row(ts)
    return row if row.get("PHASE") == "Running" and row.get("READY") == "4/4" else None


def test_the_readme_install_commands_run_as_written(install: list[tuple[str, int, float, str]]) -> None:
    failed = [(cmd, out) for cmd, rc, _, out in install if rc != 0]
    assert not failed, f"README command failed: {failed[0][0]}\n{failed[0][1]}"
    firsts = [cmd.split()[:2] for cmd, *_ in install]
    assert firsts == [
        ["docker", "build"],
        ["kind", "load"],
        ["kubectl", "create"],
        ["helm", "install"],
        ["kubectl", "-n"],
    ]


def test_the_pipeline_reaches_running_4_of_4_by_its_readiness_probes(cluster: Cluster) -> None:
    row = in_cluster(lambda: _running(cluster, TS), "demo-sim Running 4/4", timeout=600)
    assert row["MODE"] == "sim"
    pods = cluster.pods(f"app.kubernetes.io/instance={TS}")
    pipeline = [p for p in pods if p["metadata"]["labels"]["app.kubernetes.io/component"] != "sim"]
    assert len(pipeline) == 4 and all(_ready(p) for p in pipeline)
    # Ready because the kubelet's probe of /readyz succeeded: every container declares one.
    assert all(p["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz" for p in pods)


def test_the_operator_pod_is_ready_under_the_charts_service_account(cluster: Cluster) -> None:
    [deploy] = cluster.json("-n", NAMESPACE, "get", "deployments", "-l", "app.kubernetes.io/instance=ts")[
        "items"
    ]
    selector = ",".join(f"{k}={v}" for k, v in deploy["spec"]["selector"]["matchLabels"].items())
    [pod] = in_cluster(lambda: [p for p in cluster.pods(selector) if _ready(p)] or None, "operator pod Ready")
    account = deploy["spec"]["template"]["spec"]["serviceAccountName"]
    assert pod["spec"]["serviceAccountName"] == account
    assert (
        cluster.json("-n", NAMESPACE, "get", "serviceaccount", account)["metadata"]["labels"][
            "app.kubernetes.io/managed-by"
        ]
        == "Helm"
    )


def test_orders_fill_at_the_in_cluster_simulator_and_risk_positions_equal_its_ledger(
    cluster: Cluster,
) -> None:
    in_cluster(lambda: _filled_at_least(cluster, TS, 4), "4 filled orders at the simulator", timeout=600)
    snap, state = in_cluster(
        lambda: settled_and_equal(cluster, TS), "books settled and equal", timeout=300, every=1
    )
    cids = [o["client_order_id"] for o in snap["orders"]]
    assert len(cids) == len(set(cids))
    # Trading goes on: compare the risk state read with this snapshot, not a later one.
    assert positions_match(snap, state) == []


def test_halting_scales_the_engine_to_zero_and_no_order_reaches_the_simulator_until_resumed(
    cluster: Cluster,
) -> None:
    patch = ["-n", NAMESPACE, "patch", "tradingsystem", TS, "--type=merge", "-p"]
    cluster.kubectl(*patch, json.dumps({"spec": {"halted": True}}))
    in_cluster(
        lambda: (
            cluster.json("-n", NAMESPACE, "get", "deployment", f"{TS}-execution-engine")["spec"]["replicas"]
            == 0
            and not cluster.pods(f"app.kubernetes.io/instance={TS},{ENGINE}")
        ),
        "execution-engine scaled to 0 with no pod left",
    )
    halted_orders = len(_orders(cluster, TS))
    # Watch for a while (ticks keep flowing, the strategy keeps signalling): nothing new arrives.
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        assert len(_orders(cluster, TS)) == halted_orders
        time.sleep(3)
    cluster.kubectl(*patch, json.dumps({"spec": {"halted": False}}))
    in_cluster(lambda: len(_orders(cluster, TS)) > halted_orders, "a new order after resuming", timeout=600)


def _all_logs(cluster: Cluster) -> str:
    out = []
    for pod in cluster.json("-n", NAMESPACE, "get", "pods")["items"]:
        name = pod["metadata"]["name"]
        for c in pod["spec"]["containers"]:
            out.append(cluster.kubectl("-n", NAMESPACE, "logs", name, "-c", c["name"], check=False))
            if any(s.get("restartCount", 0) for s in pod["status"].get("containerStatuses", [])):
                out.append(
                    cluster.kubectl("-n", NAMESPACE, "logs", name, "-c", c["name"], "--previous", check=False)
                )
    return "\n".join(out)


def test_no_pod_log_event_or_status_contains_a_secret_value(cluster: Cluster) -> None:
    key, secret = f"PK{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
    cluster.kubectl(
        "-n", NAMESPACE, "create", "secret", "generic", "alpaca-paper",
        f"--from-literal=ALPACA_API_KEY={key}", f"--from-literal=ALPACA_SECRET_KEY={secret}",
    )  # fmt: skip
    cluster.kubectl("-n", NAMESPACE, "apply", "-f", str(REPO / "examples" / "paper.yaml"))
    # Paper mode: market-data starts with the Secret injected (its env) and tries Alpaca; names do
    # not resolve in this cluster and the egress rules drop anything else, so it only logs.
    in_cluster(
        lambda: any(
            s.get("restartCount", 0) > 0 or "running" in s.get("state", {})
            for p in cluster.pods("app.kubernetes.io/instance=demo-paper")
            for s in p["status"].get("containerStatuses", [])
        ),
        "the paper market-data container to have started",
    )
    time.sleep(10)  # let it log its connection attempts
    text = _all_logs(cluster)
    text += cluster.kubectl("-n", NAMESPACE, "get", "events", "-o", "yaml")
    text += cluster.kubectl("-n", NAMESPACE, "get", "tradingsystems", "-o", "yaml")
    assert "market-data" in text
    assert key not in text and secret not in text
    cluster.kubectl("-n", NAMESPACE, "delete", "tradingsystem", "demo-paper", "--wait=true", "--timeout=120s")
    cluster.kubectl("-n", NAMESPACE, "delete", "secret", "alpaca-paper")


def _children(cluster: Cluster, ts: str) -> list[str]:
    kinds = "deployments,services,configmaps,persistentvolumeclaims,networkpolicies,pods"
    out = cluster.kubectl(
        "-n", NAMESPACE, "get", kinds, "-l", f"app.kubernetes.io/instance={ts}", "-o", "name"
    )
    return out.split()


def test_deleting_the_tradingsystem_removes_every_child(cluster: Cluster) -> None:
    assert _children(cluster, TS)
    cluster.kubectl("-n", NAMESPACE, "delete", "tradingsystem", TS, "--wait=true", "--timeout=180s")
    in_cluster(lambda: _children(cluster, TS) == [], "every child of demo-sim gone", timeout=300)


def _engine_pod(cluster: Cluster) -> dict[str, Any] | None:
    pods = [p for p in cluster.pods(f"app.kubernetes.io/instance={PVC_TS},{ENGINE}") if _ready(p)]
    return pods[0] if len(pods) == 1 and not pods[0]["metadata"].get("deletionTimestamp") else None


def _stored_orders(cluster: Cluster, pod: str) -> int:
    script = "import sqlite3;print(sqlite3.connect('/var/lib/tradingsystem/execution.sqlite').execute('select count(*) from orders').fetchone()[0])"
    return int(cluster.kubectl("-n", NAMESPACE, "exec", pod, "--", "python3", "-c", script).strip())


def test_a_force_deleted_engine_pod_reuses_its_volume_and_sends_no_order_twice(cluster: Cluster) -> None:
    doc = yaml.safe_load((REPO / "examples" / "sim.yaml").read_text())
    doc["metadata"]["name"] = PVC_TS
    doc["spec"]["executionEngine"] = {"storage": "persistentVolumeClaim"}
    cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump(doc))
    in_cluster(lambda: _running(cluster, PVC_TS), "pvc-sim Running 4/4", timeout=600)
    pvc = cluster.json("-n", NAMESPACE, "get", "pvc", f"{PVC_TS}-state")
    assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["storageClassName"] == "standard"
    for round_ in range(3):
        before = in_cluster(
            lambda n=3 * (round_ + 1): _filled_at_least(cluster, PVC_TS, n),
            f"round {round_}: more filled orders",
            timeout=600,
        )
        old = in_cluster(lambda: _engine_pod(cluster), "one Ready engine pod")
        stored = _stored_orders(cluster, old["metadata"]["name"])
        cluster.kubectl(
            "-n", NAMESPACE, "delete", "pod", old["metadata"]["name"], "--grace-period=0", "--force", "--wait=false"
        )  # fmt: skip
        new = in_cluster(
            lambda uid=old["metadata"]["uid"]: (
                (p := _engine_pod(cluster)) and p["metadata"]["uid"] != uid and p
            ),
            "a new Ready engine pod",
            timeout=600,
        )
        # The new pod opened the same database: everything the old one had stored is there.
        assert _stored_orders(cluster, new["metadata"]["name"]) >= stored >= len(before) - 1
    in_cluster(lambda: _filled_at_least(cluster, PVC_TS, 12), "trading after the last restart", timeout=600)
    cids = Counter(o["client_order_id"] for o in _orders(cluster, PVC_TS))
    assert [c for c, n in cids.items() if n > 1] == []
    in_cluster(lambda: settled_and_equal(cluster, PVC_TS), "books settled and equal", timeout=300, every=1)
    cluster.kubectl("-n", NAMESPACE, "delete", "tradingsystem", PVC_TS, "--wait=true", "--timeout=180s")
    in_cluster(lambda: _children(cluster, PVC_TS) == [], "every child of pvc-sim gone", timeout=300)


def test_helm_uninstall_leaves_only_the_crd_and_the_namespace_deletes_cleanly(cluster: Cluster) -> None:
    cluster.kubectl("-n", NAMESPACE, "delete", "tradingsystems", "--all", "--wait=true", "--timeout=180s")
    # The garbage collector removes the children (ownerReferences) after their owner is gone.
    in_cluster(lambda: not cluster.kubectl(
            "-n", NAMESPACE, "get", "all,configmaps,persistentvolumeclaims,networkpolicies",
            "-l", "app.kubernetes.io/managed-by=tradingsystem-operator", "-o", "name",
        ).split(), "every TradingSystem child gone")  # fmt: skip
    subprocess.run(
        ["helm", "uninstall", "ts", "-n", NAMESPACE, "--wait"],
        env=cluster.env.cluster.env,
        check=True,
        timeout=300,
    )
    kinds = "all,configmaps,secrets,serviceaccounts,roles,rolebindings,persistentvolumeclaims,networkpolicies"
    # What Kubernetes itself puts in every namespace; the operator's pod may take a moment to go.
    baseline = ["configmap/kube-root-ca.crt", "serviceaccount/default"]
    in_cluster(
        lambda: sorted(cluster.kubectl("-n", NAMESPACE, "get", kinds, "-o", "name").split()) == baseline,
        "only the namespace's own objects left",
    )
    cluster_scoped = cluster.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", "app.kubernetes.io/instance=ts", "-o", "name"
    )
    assert cluster_scoped.split() == []
    assert cluster.kubectl("get", "crd", "tradingsystems.tradingsystem.dev", "-o", "name").strip()
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s")
    assert "NotFound" in subprocess.run(
        [cluster.env.cluster.kubectl_bin, "get", "namespace", NAMESPACE],
        env=cluster.env.cluster.env, capture_output=True, text=True,
    ).stderr  # fmt: skip
