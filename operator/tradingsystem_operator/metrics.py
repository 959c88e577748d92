"""The operator's metric catalogue, defined once.

The operator serves these with ``prometheus_client`` (kopf exports none of its own). Alert
rules and dashboards in ``monitoring/`` refer to these names; a test checks that every name
they use is defined here or in ``tradingsystem.common.metrics``. Labels are bounded:
``result`` is ``success`` or ``error``; the per-service replica gauges carry one series per
service of each TradingSystem the operator knows (``namespace``, ``tradingsystem``, ``service``,
as kube-state-metrics labels the objects it reports on; the chart's ServiceMonitor honours them).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from tradingsystem_operator.rules import SYSTEM_LABEL

RECONCILE_RESULTS = ("success", "error")

RECONCILES = Counter(
    "tradingsystem_operator_reconciles_total",
    "Reconcile passes over TradingSystem objects, by result (success or error)",
    ["result"],
)
RECONCILE_DURATION = Histogram(
    "tradingsystem_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass, including API calls",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
IS_LEADER = Gauge(
    "tradingsystem_operator_is_leader",
    "1 while this replica reconciles (holds the leader Lease, or runs without leader election); "
    "0 while it stands by",
)
# Export every result at 0 from the start: rate() and increase() need the series before the first error.
for _result in RECONCILE_RESULTS:
    RECONCILES.labels(_result)

# From the status the operator writes: a service whose pods never start (unschedulable, image
# pull errors, crash before serving) has no scrape target at all, so `up` cannot tell; these can.
_SERVICE_LABELS = ["namespace", SYSTEM_LABEL, "service"]
SERVICE_DESIRED = Gauge(
    "tradingsystem_operator_service_desired_replicas",
    "Replicas the operator wants for each service of a TradingSystem (0 while halted or gated)",
    _SERVICE_LABELS,
)
SERVICE_READY = Gauge(
    "tradingsystem_operator_service_ready_replicas",
    "Available replicas of each service of a TradingSystem, as the operator last observed them",
    _SERVICE_LABELS,
)


def record_services(namespace: str, name: str, services: Mapping[str, Any]) -> None:
    """Set the replica gauges from a status' ``services`` map (a ``None`` entry: the service no
    longer runs, its series go)."""
    for service, counts in services.items():
        labels = (namespace, name, service)
        if counts is None:
            _remove(labels)
            continue
        SERVICE_DESIRED.labels(*labels).set(int(counts.get("desired") or 0))
        SERVICE_READY.labels(*labels).set(int(counts.get("ready") or 0))


def forget_system(namespace: str, name: str) -> None:
    """Drop every series of a deleted TradingSystem (a gone object must not keep alerting)."""
    services = {
        sample.labels["service"]
        for gauge in (SERVICE_DESIRED, SERVICE_READY)
        for metric in gauge.collect()
        for sample in metric.samples
        if sample.labels.get("namespace") == namespace and sample.labels.get(SYSTEM_LABEL) == name
    }
    for service in services:
        _remove((namespace, name, service))


def _remove(labels: tuple[str, str, str]) -> None:
    for gauge in (SERVICE_DESIRED, SERVICE_READY):
        with suppress(KeyError):
            gauge.remove(*labels)
