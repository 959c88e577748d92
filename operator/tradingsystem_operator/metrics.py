"""The operator's metric catalogue, defined once.

The operator serves these with ``prometheus_client`` (kopf exports none of its own). Alert
rules and dashboards in ``monitoring/`` refer to these names; a test checks that every name
they use is defined here or in ``tradingsystem.common.metrics``. Labels are bounded:
``result`` is ``success`` or ``error``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
