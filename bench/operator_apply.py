"""The operator at scale: apply-to-children latency, memory, and API writes while idle.

Runs a real etcd + kube-apiserver + kube-controller-manager (``ControlPlane``) and the operator
as a subprocess (``tradingsystem-operator run``), so its RSS is its own. For N TradingSystems
created at once (sim mode):

- **apply → children**: from each CR's create call returning until all of its first-stage
  children exist (ConfigMap, 5 Deployments, 5 Services, 5 NetworkPolicies) and its status carries
  ``observedGeneration``. There is no kubelet, so pods never become ready and the ordered startup
  stops at its first gate (sim scaled up, the pipeline created at ``replicas: 0``); every child
  object exists at that point, which is what this measures. Gate opening is pod-readiness time,
  not operator time.
- **floor**: the same N TradingSystems created back to back in a fresh namespace, by the same
  loop as in the operator phase (``create_tradingsystems``), and for each, as soon as its create
  returned, the same rendered children (``render`` with the operator's inputs) server-side applied
  by a bare client (kubernetes_asyncio, no operator, no watch, no reads, no bound on requests in
  flight), then its status written. Same latency definition; the operator's p99 over the floor's
  p99 is what watch latency, reads and the framework cost. Until 12-02 the floor's client made
  the creates itself, on the same connection pool and event loop as its own 1,700 writes, so each
  create waited behind the writes already in flight and its clock started late (makespan 14 s,
  p99 3.7 s at 100); the operator phase's creates do not wait for the operator.
- **same starting state**: each phase (floor, operator) starts on a quiescent control plane, and
  ends by deleting its namespace and waiting for it to be gone. Measured (12-01, 100 systems):
  when the floor's last write returns, the controller-manager is still creating ReplicaSets and
  Pods and updating the floor's 500 Deployments (60-190 requests/s for 15 s and more), and once
  its namespace is gone the garbage collector still checks each of the 1,600 orphaned children
  (GETs, ~100 requests/s for another ~14 s). An operator phase started then ran on a busy API
  server its floor never saw (p99 33-42 s against 13-14 s without the floor before it). So
  ``quiesce`` waits until the API server serves fewer than ``QUIET_RATE`` requests/s (all
  clients; idle is about 1/s: leases, the kubernetes Endpoints) for ``QUIET_S`` seconds before
  each phase starts its clock, and again once the operator serves (its initial listings).
  ``floor_first=False`` swaps the phases, to check that the order does not change the result.
- **RSS**: ``VmRSS`` of the operator process after convergence.
- **idle writes**: the kube-apiserver's ``apiserver_request_total`` for write verbs on the
  operator's resources, diffed over an idle window in which the resync loop passes several times
  over every CR, scaled to one minute. Target 0. The controller-manager writes none of these
  resources while nothing changes, so the count is the operator's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from prometheus_client.parser import text_string_to_metric_families

from bench.table import render
from tradingsystem_operator import apply as k8s
from tradingsystem_operator.models import TradingSystemSpec
from tradingsystem_operator.render import Inputs, Owner
from tradingsystem_operator.render import render as render_children
from tradingsystem_testing import eventually
from tradingsystem_testing.controlplane import ControlPlane
from tradingsystem_testing.process import OperatorProcess, operator_process

ROOT = Path(__file__).resolve().parents[1]
CRD_FILE = ROOT / "crds" / "tradingsystems.yaml"
TS_PATH = "/apis/tradingsystem.dev/v1alpha1/namespaces/{ns}/tradingsystems"
# Children of one sim-mode TradingSystem before any pod is ready: kind -> collection path.
CHILDREN = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
}
EXPECTED = {"ConfigMap": 1, "Deployment": 5, "Service": 5, "NetworkPolicy": 5}
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
OPERATOR_RESOURCES = {
    "configmaps",
    "deployments",
    "services",
    "networkpolicies",
    "persistentvolumeclaims",
    "tradingsystems",
    "events",
}
# The control plane is quiet when it serves at most QUIET_RATE requests/s for QUIET_S seconds.
QUIET_RATE = 5.0
QUIET_S = 3.0


@dataclass
class Result:
    n: int
    latencies: list[float]  # seconds, one per TradingSystem
    rss_mb: float
    idle_s: float
    idle_writes: Counter[str]  # by "VERB resource[/subresource]"
    idle_passes: int  # reconcile passes in the idle window: the resync did run
    floor: list[float]  # seconds, one per TradingSystem, written by a bare client


def _ok(result: tuple[int, Any], what: str) -> Any:
    status, body = result
    if status >= 300:
        raise RuntimeError(f"{what}: {status} {body}")
    return body


def create_namespace(cp: ControlPlane) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    _ok(cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}}), "create namespace")
    return name


def tradingsystem(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "tradingsystem.dev/v1alpha1",
        "kind": "TradingSystem",
        "metadata": {"name": name},
        "spec": {"image": "ghcr.io/example/tradingsystem:0.1.0", "symbols": ["AAPL", "MSFT"]},
    }


def _children_complete(cp: ControlPlane, ns: str) -> set[str]:
    """Names of the TradingSystems all of whose first-stage children exist (5 full listings)."""
    counts: dict[str, dict[str, int]] = {}
    for kind, path in CHILDREN.items():
        listing = _ok(cp.request("GET", path.format(ns=ns)), f"list {kind}")
        for item in listing["items"]:
            instance = (item["metadata"].get("labels") or {}).get("app.kubernetes.io/instance")
            if instance:
                per = counts.setdefault(instance, {})
                per[kind] = per.get(kind, 0) + 1
    return {name for name, per in counts.items() if per == EXPECTED}


def _status_current(cp: ControlPlane, ns: str) -> set[str]:
    """Names of the TradingSystems whose status has the current ``observedGeneration``."""
    listing = _ok(cp.request("GET", TS_PATH.format(ns=ns)), "list TradingSystems")
    return {
        ts["metadata"]["name"]
        for ts in listing["items"]
        if (ts.get("status") or {}).get("observedGeneration") == ts["metadata"]["generation"]
    }


def create_tradingsystems(
    cp: ControlPlane, ns: str, n: int, created_hook: Callable[[dict[str, Any], float], None] | None = None
) -> dict[str, float]:
    """Create N TradingSystems back to back, as ``kubectl apply`` of N objects would: each one's
    ``time.monotonic()`` once its create call returned. Both phases create through this loop, so
    their clocks start alike; ``created_hook(body, created)`` is how the floor starts writing."""
    created: dict[str, float] = {}
    for i in range(n):
        name = f"ts-{i:03d}"
        body = _ok(cp.request("POST", TS_PATH.format(ns=ns), tradingsystem(name)), f"create {name}")
        created[name] = time.monotonic()
        if created_hook is not None:
            created_hook(body, created[name])
    return created


def apply_and_wait(cp: ControlPlane, ns: str, n: int, timeout: float) -> list[float]:
    """Create N TradingSystems back to back; each one's seconds until its status is current.

    Only the TradingSystems are polled: a pass writes status after its applies have returned, so
    a current status means the children exist; checked once at the end. Polling the 1,700
    children every 50 ms instead (5 full listings) cost the API server and this process more CPU
    than the operator's own work at 100, an observer load the floor phase does not have.
    """
    created = create_tradingsystems(cp, ns, n)
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n - len(done)} of {n} TradingSystems not converged in {timeout} s")
        seen = time.monotonic()
        for name in _status_current(cp, ns) - done.keys():
            done[name] = seen - created[name]
        time.sleep(0.05)
    missing = done.keys() - _children_complete(cp, ns)
    if missing:
        raise RuntimeError(f"status current but children missing for {sorted(missing)}")
    return sorted(done.values())


def requests_served(cp: ControlPlane) -> Counter[str]:
    """Requests the API server has served so far, every client, by "VERB resource[/subresource]"."""
    status, text = cp.request("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"apiserver /metrics: {status}")
    # Only this counter's lines: parsing all of /metrics takes seconds once it holds 1,700 objects' worth.
    wanted = "\n".join(line for line in text.splitlines() if line.startswith("apiserver_request_total{"))
    counts: Counter[str] = Counter()
    for fam in text_string_to_metric_families(wanted):
        for s in fam.samples:
            sub = s.labels.get("subresource")
            counts[f"{s.labels.get('verb')} {s.labels.get('resource') or '-'}{'/' + sub if sub else ''}"] += (
                int(s.value)
            )
    return counts


def write_requests(cp: ControlPlane) -> Counter[str]:
    """Write requests served so far on the operator's resources (all clients), by verb and resource."""
    return Counter(
        {
            key: n
            for key, n in requests_served(cp).items()
            if key.split()[0] in WRITE_VERBS and key.split()[1].split("/")[0] in OPERATOR_RESOURCES
        }
    )


def quiesce(cp: ControlPlane, timeout: float = 300) -> float:
    """Wait until the control plane is idle (see the module docstring); returns the seconds waited."""
    started = time.monotonic()
    window: list[tuple[float, int, Counter[str]]] = []
    report_at = started + 10
    while True:
        now = time.monotonic()
        served = requests_served(cp)
        if now - started > timeout:
            busiest = (served - window[0][2]).most_common(5) if window else []
            raise TimeoutError(
                f"the control plane did not become quiet within {timeout} s; busiest requests in the "
                f"last {QUIET_S:g} s: {busiest}. Is another client writing to it?"
            )
        window.append((now, served.total(), served))
        while len(window) > 2 and now - window[1][0] >= QUIET_S:
            window.pop(0)  # keep the newest sample at least QUIET_S old as the window's start
        span = now - window[0][0]
        # Our own /metrics scrapes are requests too: one per sample, allowed for by the rate.
        rate = (window[-1][1] - window[0][1]) / span if span else float("inf")
        if span >= QUIET_S and rate <= QUIET_RATE:
            return now - started
        if now >= report_at:
            busiest = (served - window[0][2]).most_common(3)
            print(
                f"  waiting for a quiet control plane: {rate:.0f} requests/s, busiest {busiest}", flush=True
            )
            report_at = now + 10
        time.sleep(0.5)


def settle(cp: ControlPlane, quiet_s: float, timeout: float) -> None:
    """Wait until no write happened for ``quiet_s`` (deployment status updates, last status patches)."""
    deadline = time.monotonic() + timeout
    last, since = write_requests(cp).total(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        if time.monotonic() > deadline:
            raise TimeoutError(f"writes did not stop within {timeout} s")
        time.sleep(0.5)
        now = write_requests(cp).total()
        if now != last:
            last, since = now, time.monotonic()


def wait_until_serving(op: OperatorProcess, timeout: float) -> None:
    """Until kopf's liveness endpoint answers: the operator has started and runs its probes."""

    def serving() -> bool:
        if op.proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {op.proc.returncode} before serving /healthz")
        op.get(op.liveness_port, "/healthz")
        return True

    eventually(serving, "the operator to serve /healthz", timeout=timeout, every=0.2, ignore=(OSError,))


def delete_namespace(cp: ControlPlane, ns: str, timeout: float = 120) -> None:
    """Delete and wait, so the namespace controller's deletes do not land in a later window."""
    cp.request("DELETE", f"/api/v1/namespaces/{ns}")
    eventually(
        lambda: cp.request("GET", f"/api/v1/namespaces/{ns}")[0] == 404,
        f"namespace {ns} to be deleted",
        timeout=timeout,
        every=0.5,
    )


def _client_configuration(cp: ControlPlane) -> client.Configuration:
    assert cp.certs is not None
    cfg = client.Configuration(host=cp.server)
    cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file = (
        str(cp.certs.ca_cert),
        str(cp.certs.admin_cert),
        str(cp.certs.admin_key),
    )
    return cfg


async def _write_floor(
    cp: ControlPlane, ns: str, created: asyncio.Queue[tuple[dict[str, Any], float] | None]
) -> list[float]:
    """Write each TradingSystem's children as soon as its create returned (``created``, ``None``
    ends), all objects at once: no watch, no reads, no bound on requests in flight."""
    latencies: list[float] = []
    async with client.ApiClient(_client_configuration(cp)) as api:

        async def children(body: dict[str, Any], created_at: float) -> None:
            meta = body["metadata"]
            owner = Owner(name=meta["name"], namespace=ns, uid=meta["uid"])
            spec = TradingSystemSpec.model_validate(body["spec"])
            manifests = render_children(Inputs(owner=owner, spec=spec)).manifests
            await asyncio.gather(*(k8s.apply(api, k8s.stamped(m)) for m in manifests))
            await k8s.patch_status(api, ns, meta["name"], {"observedGeneration": meta["generation"]})
            latencies.append(time.monotonic() - created_at)

        writers = []
        while (item := await created.get()) is not None:
            writers.append(asyncio.create_task(children(*item)))
        await asyncio.gather(*writers)
    return sorted(latencies)


def floor(cp: ControlPlane, n: int) -> list[float]:
    """The same objects written by a bare client as fast as the API server takes them.

    The TradingSystems are created by the same loop as in the operator phase (this thread,
    ``create_tradingsystems``); a writer on its own event loop starts each one's children as
    soon as its create returned, like an operator with a zero-latency watch and no limits.
    """
    ns = create_namespace(cp)
    try:
        quiesce(cp)
        loop = asyncio.new_event_loop()
        queue: asyncio.Queue[tuple[dict[str, Any], float] | None] = asyncio.Queue()
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                writer = pool.submit(loop.run_until_complete, _write_floor(cp, ns, queue))
                try:
                    create_tradingsystems(
                        cp, ns, n, lambda body, at: loop.call_soon_threadsafe(queue.put_nowait, (body, at))
                    )
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, None)
                return writer.result()
        finally:
            loop.close()
    finally:
        delete_namespace(cp, ns)


def measure(
    cp: ControlPlane, n: int, *, resync_s: float, idle_s: float, log: Path, floor_first: bool = True
) -> Result:
    """The floor and one operator process in one fresh namespace, N TradingSystems, each phase
    from a quiet control plane (``floor_first=False``: the operator phase first)."""
    floor_latencies = floor(cp, n) if floor_first else []
    ns = create_namespace(cp)
    assert cp.kubeconfig is not None
    with operator_process(cp.kubeconfig, ns, log, resync_s) as op:
        wait_until_serving(op, timeout=120)  # importing kopf on a loaded machine is not a pass
        quiesce(cp)  # the previous phase's tail and the operator's initial listings
        latencies = apply_and_wait(cp, ns, n, timeout=60 + n)
        settle(cp, quiet_s=2 * resync_s, timeout=120)
        writes, passes = write_requests(cp), sum(op.reconciles().values())
        time.sleep(idle_s)
        idle_writes = write_requests(cp) - writes
        idle_passes = int(sum(op.reconciles().values()) - passes)
        rss = op.rss_mb()
        if op.proc.poll() is not None:
            raise RuntimeError(f"operator exited with {op.proc.returncode}; log: {log}")
    delete_namespace(cp, ns)  # no finalizer: it goes without the operator
    if not floor_first:
        floor_latencies = floor(cp, n)
    return Result(n, latencies, rss, idle_s, idle_writes, idle_passes, floor_latencies)


def _pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main(quick: bool = False) -> None:
    sizes = (1, 10) if quick else (1, 10, 100)
    resync_s, idle_s = (3.0, 12.0) if quick else (10.0, 60.0)
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        log = Path(tmp) / "operator.log"
        # 100 TradingSystems have 500 Services: more than the default /24 service range holds.
        with ControlPlane(controller_manager=True, service_cidr="10.0.0.0/16") as cp:
            cp.install_crds([CRD_FILE])
            results = [measure(cp, n, resync_s=resync_s, idle_s=idle_s, log=log) for n in sizes]
    rows = [
        (
            r.n,
            _pct(r.floor, 50) * 1000,
            _pct(r.floor, 99) * 1000,
            _pct(r.latencies, 50) * 1000,
            _pct(r.latencies, 99) * 1000,
            _pct(r.latencies, 99) / _pct(r.floor, 99),
            r.rss_mb,
            r.idle_passes,
            r.idle_writes.total() * 60 / r.idle_s,
            ", ".join(f"{k}: {v}" for k, v in sorted(r.idle_writes.items())) or "-",
        )
        for r in results
    ]
    headers = (
        "TradingSystems",
        "floor p50 ms",
        "floor p99 ms",
        "p50 ms",
        "p99 ms",
        "p99 x floor",
        "RSS MB",
        "idle passes",
        "idle writes/min",
        "idle writes by kind",
    )
    title = (
        f"apply -> all first-stage children + status (sim mode); floor: the same writes by a bare client; "
        f"resync every {resync_s:g} s, "
        f"idle window {idle_s:g} s; targets: p99 <= 2000 ms at 100, RSS <= 150 MB, 0 writes/min"
    )
    print(render(headers, rows, title))
