"""The metric catalogue: every metric the trading services export, defined once.

Dashboards, alert rules and ``docs/metrics.md`` refer to these names; a test checks that
every name they use is defined here. Labels are bounded: ``service`` (4 values), ``topic``
(message kind, not the symbol), ``reason``/``state``/``code`` (enums), ``symbol`` (the
configured symbols only).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

# Latency buckets from 50 us to 5 s: hops on one host are ~0.1 ms, broker calls tens of ms.
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

BUILD_INFO = Info("tradingsystem_build", "Version of the running service")

# --- pipeline (all services) -------------------------------------------------------
MESSAGES_IN = Counter(
    "tradingsystem_messages_received_total", "Messages received from the bus", ["service", "topic"]
)
MESSAGES_OUT = Counter(
    "tradingsystem_messages_published_total", "Messages published on the bus", ["service", "topic"]
)
MESSAGES_DROPPED = Counter(
    "tradingsystem_messages_dropped_total",
    "Messages or ticks dropped, by reason (malformed, stale, crossed_quote, ...)",
    ["service", "reason"],
)
SEQUENCE_GAPS = Counter(
    "tradingsystem_sequence_gap_messages_total",
    "Messages missed upstream, detected by sequence number gaps",
    ["service", "topic"],
)
HOP_LATENCY = Histogram(
    "tradingsystem_hop_latency_seconds",
    "Publish-to-receive latency of one bus hop",
    ["service", "topic"],
    buckets=LATENCY_BUCKETS,
)
TICK_TO_ORDER_LATENCY = Histogram(
    "tradingsystem_tick_to_order_latency_seconds",
    "From tick receipt at market-data to order submission at the broker",
    buckets=LATENCY_BUCKETS,
)
PUBLISHER_RESTARTS = Counter(
    "tradingsystem_publisher_restarts_total",
    "Upstream publisher restarts seen (a new epoch in the wire header)",
    ["service", "publisher"],
)
UP = Gauge(
    "tradingsystem_ready", "1 when the service is ready (connected; reconciled for execution)", ["service"]
)

# --- market-data -------------------------------------------------------------------
TICKS = Counter("tradingsystem_marketdata_ticks_total", "Valid ticks forwarded", ["kind"])
LAST_TICK_TIMESTAMP = Gauge(
    "tradingsystem_marketdata_last_tick_timestamp_seconds",
    "Unix time of the last valid tick received, per symbol (age = time() - this)",
    ["symbol"],
)
RECONNECTS = Counter("tradingsystem_marketdata_reconnects_total", "Stream reconnects after a disconnect")

# --- signal-bridge -----------------------------------------------------------------
SIGNALS = Counter("tradingsystem_signals_total", "Signals emitted", ["strategy", "action"])

# --- risk-manager ------------------------------------------------------------------
RISK_DECISIONS = Counter(
    "tradingsystem_risk_orders_approved_total", "Intended orders approved by the risk manager"
)
RISK_REJECTS = Counter("tradingsystem_risk_rejects_total", "Intended orders rejected, by reason", ["reason"])
RISK_STATE = Gauge(
    "tradingsystem_risk_state", "1 for the current risk state (ACTIVE, REDUCING, HALTED)", ["state"]
)
KILL_SWITCH = Gauge("tradingsystem_risk_kill_switch_engaged", "1 when the kill switch is engaged")
CIRCUIT_BREAKER = Gauge(
    "tradingsystem_risk_circuit_breaker_tripped", "1 when the daily-loss circuit breaker has tripped"
)
POSITION_QTY = Gauge("tradingsystem_position_quantity", "Signed position, shares", ["symbol"])
GROSS_EXPOSURE = Gauge("tradingsystem_gross_exposure_dollars", "Sum of |position x last price|")
PNL_REALIZED = Gauge("tradingsystem_pnl_realized_dollars", "Realized P&L since start of day (average cost)")
PNL_UNREALIZED = Gauge("tradingsystem_pnl_unrealized_dollars", "Unrealized P&L at last price")
PNL_DAILY = Gauge("tradingsystem_pnl_daily_dollars", "Realized + unrealized P&L for the trading day")
DAILY_LOSS_LIMIT = Gauge("tradingsystem_risk_daily_loss_limit_dollars", "Configured daily loss limit")
RISK_OPEN_ORDERS = Gauge(
    "tradingsystem_risk_open_orders", "Approved orders the risk manager counts as open (reserved)"
)
RISK_RESYNCS = Counter(
    "tradingsystem_risk_resyncs_total",
    "Resyncs with the execution-engine's outbox, by trigger (start, epoch, gap, periodic)",
    ["trigger"],
)
RISK_REPORT_GAPS = Counter(
    "tradingsystem_risk_report_gap_total",
    "Execution reports that arrived ahead of the outbox chain (the ones before were missing; a resync fetched them)",
)
RISK_REPORT_CHAIN_RESUMED = Counter(
    "tradingsystem_risk_report_chain_resumed_total",
    "Times the execution-engine's outbox resumed below the last report applied here "
    "(its unsynced tail lost by a machine crash; its reconciliation reports the broker's state again)",
)
RISK_INTENT_REPLAYS = Counter(
    "tradingsystem_risk_intent_replays_total",
    "Approved intents published again because the execution-engine had not seen them",
)
CONTROL_REFUSED = Counter(
    "tradingsystem_control_refused_total",
    "Requests to the control port (POST /control, GET /state) refused, by reason (missing, malformed, wrong_token)",
    ["reason"],
)

# --- execution-engine --------------------------------------------------------------
ORDERS = Counter("tradingsystem_orders_total", "Order state transitions, by state reached", ["state"])
OPEN_ORDERS = Gauge("tradingsystem_orders_open", "Orders not yet in a terminal state")
FILLS = Counter("tradingsystem_fills_total", "Fills (partial and full) received from the broker")
EXEC_REJECTS = Counter(
    "tradingsystem_execution_rejects_total",
    "Approved orders ended REJECTED by the execution-engine, by reason (stale, queue_full, broker)",
    ["reason"],
)
INTENT_QUEUE = Gauge(
    "tradingsystem_execution_intent_queue_depth", "Approved orders waiting for their first submit"
)
OUTBOX_HEAD = Gauge(
    "tradingsystem_execution_outbox_head",
    "Last report_seq written to the execution outbox (it starts at generation << 32 at each engine start)",
)
BROKER_REQUESTS = Counter("tradingsystem_broker_requests_total", "Requests to the broker API", ["endpoint"])
BROKER_ERRORS = Counter(
    "tradingsystem_broker_errors_total",
    "Broker API errors by HTTP status (or 'transport' for timeouts and resets)",
    ["code"],
)
BROKER_LATENCY = Histogram(
    "tradingsystem_broker_request_latency_seconds",
    "Broker API request latency",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
RATE_LIMIT_REMAINING = Gauge(
    "tradingsystem_broker_rate_limit_remaining", "Requests left in the client-side rate-limit window"
)
