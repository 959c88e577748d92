"""Issue #18 (links survive pod replacement) and #19 (``spec.halted`` within 1 s) on a real kind cluster.

One sim TradingSystem in a namespace of its own (``operator_release``), execution-engine and
risk-manager state on PVCs. While it trades, each service's pod is deleted, forced and
graceful, and the peers' /metrics (read through the API server's pod proxy: nothing is bound on
the host) tell when the replacement was noticed and when every link carried traffic again; the
figures are printed. Then the books must agree with the simulator's ledger, with no phantom open
order and no client_order_id twice. Last, ``spec.halted: true``: the risk-manager's own record of
when it engaged the kill switch gives the halt latency, and no order may reach the simulator
later than one second after the patch. Every wait is bounded; no figure is asserted on.
"""

from __future__ import annotations

import enum
import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import yaml
from kind_helpers import REPO, Cluster, in_cluster, operator_release, settled_and_equal
from prometheus_client.parser import text_string_to_metric_families

from tradingsystem.common import wire
from tradingsystem.common.bus import LINK
from tradingsystem.common.services import (
    BY_NAME,
    EXECUTION_ENGINE,
    MARKET_DATA,
    PIPELINE,
    RISK_MANAGER,
    SIGNAL_BRIDGE,
    Service,
)
from tradingsystem_operator.render import CONTROL_DIR, CONTROL_TOKEN_KEY
from tradingsystem_testing.kind import KindEnvironment

# A cold run builds the cluster inside the first test's fixtures.
pytestmark = [pytest.mark.timeout(5400)]

NAMESPACE = "podrepl"
RELEASE = "repl"
TS = "repl-sim"
OPEN = ("new", "accepted", "pending_new", "partially_filled")


class Mode(enum.StrEnum):
    FORCED = "forced"  # --grace-period=0 --force: no goodbye, the old pod IP black-holed at once
    GRACEFUL = "graceful"  # SIGTERM, the service closes its sockets


# Every service forced and graceful once; the two ends of the money path (their state on PVCs,
# the order and report links between them) a second time, forced: the case issue #18 measured
# at ~130 s blind. Ten replacements take ~2 min (the module ~3.5 min with the cluster, warm). The
# simulator is left alone: it is the broker, and its ledger (held in memory) is what the books
# are checked against.
SCHEDULE: tuple[tuple[Service, Mode], ...] = (
    *((svc, Mode.FORCED) for svc in (EXECUTION_ENGINE, RISK_MANAGER, MARKET_DATA, SIGNAL_BRIDGE)),
    *((svc, Mode.GRACEFUL) for svc in (EXECUTION_ENGINE, RISK_MANAGER, MARKET_DATA, SIGNAL_BRIDGE)),
    (EXECUTION_ENGINE, Mode.FORCED),
    (RISK_MANAGER, Mode.FORCED),
)

# Documented worst case (docs/architecture.md, bus.LINK): a peer's silence is detected and a new
# connection attempted within heartbeat timeout + reconnect interval, each attempt into a black
# hole costing at most the connect timeout. Once the new pod is Ready its Service endpoint still
# has to propagate (kube-proxy), and sporadic topics (signals) need a message: the bound allows
# for that and for a loaded machine, and stays well under the ~127 s SYN-retry stall of #18.
LINK_WORST_S = LINK.worst_case_detection_s + LINK.connect_timeout_ms / 1000
LINK_BOUND_S = 60.0
POD_BOUND_S = 300.0  # a new pod Ready (image present, Python start, broker reconcile)


@dataclass(frozen=True)
class Replacement:
    """Seconds after the delete command: new pod Ready; a subscriber saw the new publisher
    epoch first (detection); the last subscriber saw it and the new pod heard every upstream
    (recovery: every link of the service carrying traffic again)."""

    service: str
    mode: Mode
    ready_s: float
    detect_s: float
    recover_s: float

    def line(self) -> str:
        return (
            f"[repl] {self.service:16} {self.mode.value:8}  pod Ready {self.ready_s:5.1f} s  "
            f"new epoch seen {self.detect_s:5.1f} s  every link carrying traffic {self.recover_s:5.1f} s"
        )


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def ready_pod(c: Cluster, svc: Service, not_uid: str = "") -> dict[str, Any] | None:
    pods = [
        p
        for p in c.pods(f"app.kubernetes.io/instance={TS},app.kubernetes.io/component={svc.name}")
        if _ready(p) and not p["metadata"].get("deletionTimestamp") and p["metadata"]["uid"] != not_uid
    ]
    return pods[0] if len(pods) == 1 else None


def metrics(c: Cluster, pod: str, svc: Service) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A pod's /metrics through the API server's pod proxy: (name, labels) -> value."""
    text = c.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{c.ns}/pods/http:{pod}:{svc.http_port}/proxy/metrics"
    )
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= lab)


def restarts_seen(c: Cluster, pod: str, subscriber: Service, publisher: Service) -> float:
    return total(
        metrics(c, pod, subscriber),
        "tradingsystem_publisher_restarts_total",
        service=subscriber.name,
        publisher=publisher.name,
    )


def upstream_topics(subscriber: Service, publisher: Service) -> tuple[str, ...]:
    """Received-message labels at ``subscriber`` that can only come from ``publisher``."""
    kinds = [k.decode() for k in publisher.publishes]
    if publisher is RISK_MANAGER:
        kinds.append(wire.TOPIC_SYNC.decode())  # resync requests ride the risk-manager's PUB
    if len(subscriber.subscribes) == 1:
        kinds.append(wire.TOPIC_HEARTBEAT.decode())  # one upstream: its heartbeats are its own
    return tuple(kinds)


def hears_every_upstream(c: Cluster, pod: str, svc: Service) -> bool:
    """The new process has received traffic on each of its inbound links (its counters start
    at 0); market-data's inbound link is the simulator's stream."""
    s = metrics(c, pod, svc)
    if not svc.subscribes:
        return total(s, "tradingsystem_marketdata_ticks_total") > 0
    received = {
        dict(lab)["topic"]: v
        for (n, lab), v in s.items()
        if n == "tradingsystem_messages_received_total" and dict(lab).get("service") == svc.name
    }
    return all(
        sum(v for topic, v in received.items() if topic.startswith(upstream_topics(svc, BY_NAME[u]))) > 0
        for u in svc.subscribes
    )


def pod_name(c: Cluster, svc: Service) -> str:
    return str(in_cluster(lambda: ready_pod(c, svc), f"one Ready {svc.name} pod")["metadata"]["name"])


def replace(c: Cluster, svc: Service, mode: Mode) -> Replacement:
    old = in_cluster(lambda: ready_pod(c, svc), f"one Ready {svc.name} pod")
    subscribers = [s for s in PIPELINE if svc.name in s.subscribes]
    sub_pods = {s.name: pod_name(c, s) for s in subscribers}
    before = {s.name: restarts_seen(c, sub_pods[s.name], s, svc) for s in subscribers}
    force = ["--grace-period=0", "--force"] if mode is Mode.FORCED else []
    t0 = time.monotonic()
    c.kubectl("-n", c.ns, "delete", "pod", old["metadata"]["name"], "--wait=false", *force)
    ready_at: float | None = None
    heard_at: float | None = None
    seen_at: dict[str, float] = {}
    while ready_at is None or heard_at is None or len(seen_at) < len(subscribers):
        now = time.monotonic() - t0
        bound, what = (
            (ready_at + LINK_BOUND_S, f"every link back within {LINK_BOUND_S:.0f} s of the new pod Ready")
            if ready_at is not None
            else (POD_BOUND_S, f"a new Ready pod within {POD_BOUND_S:.0f} s")
        )
        assert now < bound, (
            f"{svc.name} {mode.value}: expected {what} (documented worst case {LINK_WORST_S:.0f} s from a "
            f"peer's silence to a connection, docs/architecture.md); new pod Ready at {ready_at}, "
            f"epoch seen by {seen_at} of {[s.name for s in subscribers]}, new pod heard its upstreams at {heard_at}"
        )
        try:
            new = ready_pod(c, svc, not_uid=old["metadata"]["uid"])
            if new is not None and ready_at is None:
                ready_at = now
            for s in subscribers:
                if s.name not in seen_at and restarts_seen(c, sub_pods[s.name], s, svc) > before[s.name]:
                    seen_at[s.name] = now
            if new is not None and heard_at is None and hears_every_upstream(c, new["metadata"]["name"], svc):
                heard_at = now
        except (subprocess.CalledProcessError, ValueError, KeyError):
            pass  # the API answers errors while pods come and go: not yet
        time.sleep(0.2)
    return Replacement(
        svc.name, mode, ready_at, min(seen_at.values()), max(ready_at, heard_at, *seen_at.values())
    )


def filled(c: Cluster) -> int:
    return sum(o["status"] == "filled" for o in c.ledger(TS)["orders"])


def trading_after(c: Cluster, n: int, what: str) -> int:
    """Wait for more than ``n`` filled orders at the simulator; their number."""

    def more() -> int | None:
        f = filled(c)
        return f if f > n else None

    return in_cluster(more, what, timeout=300, every=2)


@pytest.fixture(scope="module")
def cluster(kind_env: KindEnvironment, product_image: str) -> Iterator[Cluster]:
    with operator_release(kind_env, NAMESPACE, RELEASE) as c:
        doc = yaml.safe_load((REPO / "examples" / "sim.yaml").read_text())
        doc["metadata"]["name"] = TS
        doc["spec"]["image"] = product_image
        doc["spec"]["executionEngine"] = {"storage": "persistentVolumeClaim"}
        doc["spec"]["riskManager"]["storage"] = "persistentVolumeClaim"
        c.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump(doc))
        in_cluster(
            lambda: (row := c.ts_row(TS)).get("PHASE") == "Running" and row.get("READY") == "4/4",
            f"{TS} Running 4/4",
            timeout=600,
        )
        yield c


def test_every_link_comes_back_after_each_pod_replacement_and_the_books_agree(cluster: Cluster) -> None:
    c = cluster
    n = trading_after(c, 2, "orders filled before the first replacement")
    results = []
    for svc, mode in SCHEDULE:
        r = replace(c, svc, mode)
        print(r.line())
        results.append(r)
        n = trading_after(c, n, f"new fills after {svc.name} {mode.value}")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"[repl] service           mode      ready   detect  recover (s after the delete; load {load})")
    for r in results:
        print(f"[repl] {r.service:16} {r.mode.value:8} {r.ready_s:6.1f} {r.detect_s:7.1f} {r.recover_s:8.1f}")
    snap, state = in_cluster(
        lambda: settled_and_equal(c, TS), "books settled and equal", timeout=300, every=1
    )
    broker_open = [o["client_order_id"] for o in snap["orders"] if o["status"] in OPEN]
    assert (state["open_order_ids"], broker_open) == ([], [])  # no phantom open orders
    cids = Counter(o["client_order_id"] for o in snap["orders"])
    assert [cid for cid, k in cids.items() if k > 1] == []
    print(f"[repl] end: {len(snap['orders'])} orders at the simulator, book = ledger {state['positions']}")


def _epoch_s(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# Runs in the risk-manager pod: polls its own /state every 20 ms and prints the first HALTED one,
# with the pod's clock at that moment (the kind node shares the host's kernel clock).
WATCH_HALT = f"""
import json, time, urllib.request as u
t = open({f"{CONTROL_DIR}/{CONTROL_TOKEN_KEY}"!r}).read().strip()
r = u.Request("http://127.0.0.1:{RISK_MANAGER.control_port}/state", headers={{"Authorization": "Bearer " + t}})
print("watching", flush=True)
end = time.time() + 120
while time.time() < end:
    s = json.loads(u.urlopen(r, timeout=5).read())
    if s["state"] == "HALTED":
        s["observed_at"] = time.time()
        print(json.dumps(s), flush=True)
        break
    time.sleep(0.02)
"""


def test_spec_halted_stops_orders_within_one_second_and_resume_trades_again(cluster: Cluster) -> None:
    c = cluster
    trading_after(c, filled(c), "trading before the halt")
    watcher = subprocess.Popen(
        [c.env.cluster.kubectl_bin, "-n", c.ns, "exec", f"deploy/{TS}-risk-manager", "--", "python", "-c", WATCH_HALT],
        env=c.env.cluster.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert watcher.stdout is not None and watcher.stdout.readline().strip() == "watching"
        patch = ["-n", c.ns, "patch", "tradingsystem", TS, "--type=merge", "-p"]
        t_patch = time.time()  # before the request: the latency and the 1 s window are measured from here
        c.kubectl(*patch, json.dumps({"spec": {"halted": True}}))
        t_patched = time.time()
        out, _ = watcher.communicate(timeout=150)
    finally:
        watcher.kill()
    halted = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    assert halted.get("state") == "HALTED", f"the running risk-manager never reported HALT: {out!r}"
    # The fast path (the operator's authenticated control call), not the rolled pod's config.
    assert halted["reason"] == f"config: spec.halted on {c.ns}/{TS}", halted["reason"]
    in_cluster(
        lambda: (
            c.json("-n", c.ns, "get", "deployment", f"{TS}-execution-engine")["spec"]["replicas"] == 0
            and ready_pod(c, EXECUTION_ENGINE) is None
        ),
        "execution-engine scaled to 0",
    )
    time.sleep(5)  # anything still in flight would reach the simulator by now
    orders = c.ledger(TS)["orders"]
    late = [o for o in orders if _epoch_s(o["submitted_at"]) > t_patch + 1.0]
    last = max(_epoch_s(o["submitted_at"]) for o in orders)
    print(
        f"[halt] patch sent at {t_patch:.3f} (kubectl returned after {t_patched - t_patch:.3f} s); "
        f"risk-manager HALT after {halted['kill_switch_since'] - t_patch:.3f} s "
        f"(seen by the in-pod poll after {halted['observed_at'] - t_patch:.3f} s); "
        f"last order at the simulator {last - t_patch:+.3f} s from the patch; {len(orders)} orders"
    )
    assert late == [], f"orders reached the simulator more than 1 s after spec.halted: {late}"
    c.kubectl(*patch, json.dumps({"spec": {"halted": False}}))
    count = len(orders)
    in_cluster(lambda: len(c.ledger(TS)["orders"]) > count, "a new order after resuming", timeout=600)
    # The rolled risk-manager restored its stored book and is ACTIVE: spec.halted lifted its halt.
    assert c.risk_state(TS)["state"] == "ACTIVE"
