"""A real Prometheus scrapes a real service endpoint and evaluates the shipped rules.

The endpoint is the services' own ``HttpEndpoint`` serving the metric catalogue; stopping it
must drive the shipped ``TradingSystemServiceDown`` rule (its ``for:`` shortened) through
pending to firing.
"""

from __future__ import annotations

from typing import Any

import pytest
from promhelpers import StartPrometheus

from tradingsystem.common.metrics import HOP_LATENCY, MESSAGES_OUT
from tradingsystem.common.runtime import Health, HttpEndpoint

pytestmark = pytest.mark.e2e

JOB = "tradingsystem-market-data"


def _alert_state(alerts: list[dict[str, Any]], name: str) -> str | None:
    states = [a["state"] for a in alerts if a["labels"]["alertname"] == name]
    return states[0] if states else None


def test_prometheus_scrapes_the_service_and_fires_service_down(start_prometheus: StartPrometheus) -> None:
    health = Health("market-data")
    health.set_ready(True)
    MESSAGES_OUT.labels("market-data", "trade").inc(3)
    HOP_LATENCY.labels("market-data", "trade").observe(0.0002)
    endpoint = HttpEndpoint("127.0.0.1", 0, health).start()
    try:
        prom = start_prometheus(
            {JOB: [f"127.0.0.1:{endpoint.port}"]}, rule_for={"TradingSystemServiceDown": "5s"}
        )
        up = prom.wait_for("the target to be up", lambda: prom.query(f'up{{job="{JOB}"}} == 1'))
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{endpoint.port}"
        for expr in (
            f'tradingsystem_ready{{job="{JOB}",service="market-data"}} == 1',
            f'tradingsystem_build_info{{job="{JOB}",service="market-data"}}',
            f'tradingsystem_messages_published_total{{job="{JOB}",topic="trade"}} >= 3',
            f'tradingsystem_hop_latency_seconds_count{{job="{JOB}",topic="trade"}} >= 1',
        ):
            assert prom.query(expr), f"no live series for {expr}"
        assert _alert_state(prom.alerts(), "TradingSystemServiceDown") is None
    finally:
        endpoint.stop()

    prom.wait_for("up to drop to 0", lambda: prom.query(f'up{{job="{JOB}"}} == 0'))
    seen: list[str | None] = []

    def firing() -> bool:
        seen.append(_alert_state(prom.alerts(), "TradingSystemServiceDown"))
        return seen[-1] == "firing"

    prom.wait_for("ServiceDown firing", firing)
    assert "pending" in seen, f"never saw the pending state: {seen}"
    (alert,) = [a for a in prom.alerts() if a["labels"]["alertname"] == "TradingSystemServiceDown"]
    assert alert["labels"]["service"] == "market-data"
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"].startswith("market-data is down")
