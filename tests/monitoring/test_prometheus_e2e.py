"""A real Prometheus scrapes real services and evaluates the shipped rules.

First one ``HttpEndpoint`` (the services' own HTTP server) in this process, then the whole
pipeline on the simulator. Stopping a service must drive the shipped
``TradingSystemServiceDown`` rule (its ``for:`` shortened) through pending to firing.
"""

from __future__ import annotations

import urllib.error
from functools import partial

import pytest
from promhelpers import StartPrometheus, dashboard_exprs

from tradingsystem.common.metrics import HOP_LATENCY, MESSAGES_OUT
from tradingsystem.common.runtime import Health, HttpEndpoint
from tradingsystem.common.services import PIPELINE
from tradingsystem.supervisor import Pipeline, http_port
from tradingsystem_testing import eventually

pytestmark = pytest.mark.e2e

JOB = "tradingsystem-market-data"


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
        up = eventually(lambda: prom.query(f'up{{job="{JOB}"}} == 1'), "the target to be up", every=0.2)
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{endpoint.port}"
        for expr in (
            f'tradingsystem_ready{{job="{JOB}",service="market-data"}} == 1',
            f'tradingsystem_build_info{{job="{JOB}",service="market-data"}}',
            f'tradingsystem_messages_published_total{{job="{JOB}",topic="trade"}} >= 3',
            f'tradingsystem_hop_latency_seconds_count{{job="{JOB}",topic="trade"}} >= 1',
        ):
            assert prom.query(expr), f"no live series for {expr}"
        assert prom.alert("TradingSystemServiceDown") is None
    finally:
        endpoint.stop()

    eventually(lambda: prom.query(f'up{{job="{JOB}"}} == 0'), "up to drop to 0", every=0.2)
    alert = prom.wait_pending_then_firing("TradingSystemServiceDown", service="market-data")
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"].startswith("market-data is down")


# Live series the dashboards and alerts depend on, once ticks have flowed to fills.
KEY_SERIES = (
    'count(tradingsystem_ready{job=~"tradingsystem-.+"} == 1) == 4',
    "tradingsystem_marketdata_ticks_total > 0",
    "tradingsystem_marketdata_last_tick_timestamp_seconds > 0",
    'tradingsystem_messages_published_total{service="market-data"} > 0',
    'tradingsystem_messages_received_total{service="signal-bridge"} > 0',
    "tradingsystem_signals_total > 0",
    'tradingsystem_hop_latency_seconds_count{service="risk-manager"} > 0',
    "tradingsystem_risk_orders_approved_total > 0",
    'tradingsystem_risk_state{state="ACTIVE"} == 1',
    "tradingsystem_pnl_daily_dollars",
    "tradingsystem_broker_requests_total > 0",
    "tradingsystem_fills_total > 0",
    "tradingsystem_tick_to_order_latency_seconds_count > 0",
    # A recording rule evaluated on live data.
    'instance_topic:tradingsystem_hop_latency_seconds:p99_rate5m{service="signal-bridge"} > 0',
)


def test_live_pipeline_series_and_service_down(pipeline: Pipeline, start_prometheus: StartPrometheus) -> None:
    targets = {
        f"tradingsystem-{name}": [f"127.0.0.1:{http_port(pipeline.settings, name)}"]
        for name in (s.name for s in PIPELINE)
    }
    prom = start_prometheus(targets, rule_for={"TradingSystemServiceDown": "5s"})
    for expr in KEY_SERIES:
        eventually(partial(prom.query, expr), f"live series {expr}", timeout=60, every=0.2)
    assert prom.alert("TradingSystemServiceDown") is None

    pipeline.stop_process("execution-engine")
    alert = prom.wait_pending_then_firing("TradingSystemServiceDown", service="execution-engine")
    assert alert["labels"]["job"] == "tradingsystem-execution-engine"
    assert prom.alert("TradingSystemServiceDown", service="market-data") is None


# Values Grafana substitutes for the dashboard variables.
GRAFANA_VARIABLES = {"$namespace": ".*", "$__rate_interval": "1m"}


def test_every_dashboard_query_is_valid_promql(start_prometheus: StartPrometheus) -> None:
    prom = start_prometheus({})
    exprs = list(dashboard_exprs())
    assert len(exprs) > 30
    for where, expr in exprs:
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{where}: unknown Grafana variable in {expr!r}"
        try:
            prom.query(expr)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{where}: Prometheus refuses {expr!r}: {exc.read().decode()}") from None
