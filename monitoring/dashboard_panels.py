"""What the Grafana dashboards show: the panel model and the three dashboards, as data. No I/O.

Rendered into Grafana JSON by ``grafana_json.py`` and described in ``docs/dashboards.md`` by
``doc_tables.py``; ``generate.py`` writes both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NS = 'namespace=~"$namespace"'  # matches series without a namespace label too (static scraping)
RATE = "$__rate_interval"
PIPELINE_JOBS = 'job=~"tradingsystem-.+"'


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[Target, ...]
    kind: str = "timeseries"  # timeseries | stat | table | heatmap
    unit: str = "short"
    width: int = 12
    mappings: tuple[tuple[str, str, str], ...] = ()  # (value, text, colour)
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    show_name: bool = False  # stat: show the series name (legend) instead of the value


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...] = field(default_factory=tuple)


ON_OFF = (("0", "off", "green"), ("1", "ON", "red"))
UP_DOWN = (("0", "DOWN", "red"), ("1", "UP", "green"))


def _t(expr: str, legend: str = "") -> tuple[Target, ...]:
    return (Target(expr, legend),)


PIPELINE = Dashboard(
    uid="tradingsystem-pipeline",
    title="TradingSystem / Pipeline",
    description="Message flow and latency through market-data -> signal-bridge -> risk-manager -> execution-engine.",
    rows=(
        Row(
            "Flow",
            (
                Panel(
                    "Messages published",
                    "Messages each service publishes on the bus per second, by topic kind "
                    "(trade, quote, bar, signal, order, exec, hb, ...). A line dropping to zero means "
                    "that stage stopped producing.",
                    _t(
                        f"sum by (service, topic) (rate(tradingsystem_messages_published_total{{{NS}}}[{RATE}]))",
                        "{{service}} {{topic}}",
                    ),
                    unit="ops",
                ),
                Panel(
                    "Messages received",
                    "Messages each service receives from its upstream per second, by topic kind. "
                    "Compare with the publisher's rate: a persistent difference means drops.",
                    _t(
                        f"sum by (service, topic) (rate(tradingsystem_messages_received_total{{{NS}}}[{RATE}]))",
                        "{{service}} {{topic}}",
                    ),
                    unit="ops",
                ),
                Panel(
                    "Ticks forwarded by kind",
                    "Valid trades, quotes and bars market-data forwards per second, after validation.",
                    _t(
                        f"sum by (kind) (rate(tradingsystem_marketdata_ticks_total{{{NS}}}[{RATE}]))",
                        "{{kind}}",
                    ),
                    unit="ops",
                    width=8,
                ),
                Panel(
                    "Signals by strategy and action",
                    "Signals signal-bridge emits per minute, by strategy and action (buy, sell, flat).",
                    _t(
                        f"sum by (strategy, action) (rate(tradingsystem_signals_total{{{NS}}}[{RATE}])) * 60",
                        "{{strategy}} {{action}}",
                    ),
                    unit="opm",
                    width=8,
                ),
                Panel(
                    "Dropped messages by reason",
                    "Messages or ticks discarded per second, by service and reason (malformed, stale, "
                    "crossed_quote, ...). Should be zero or close to it.",
                    _t(
                        f"sum by (service, reason) (rate(tradingsystem_messages_dropped_total{{{NS}}}[{RATE}]))",
                        "{{service}} {{reason}}",
                    ),
                    unit="ops",
                    width=8,
                ),
                Panel(
                    "Sequence gaps (messages lost)",
                    "Messages a subscriber missed, detected by gaps in the per-topic sequence numbers. "
                    "Non-zero means a slow subscriber or a publisher restart.",
                    _t(
                        f"sum by (service, topic) (increase(tradingsystem_sequence_gap_messages_total{{{NS}}}[{RATE}]))",
                        "{{service}} {{topic}}",
                    ),
                    width=24,
                ),
            ),
        ),
        Row(
            "Latency",
            (
                Panel(
                    "Bus hop latency p99",
                    "99th percentile time from publish to receipt of one bus hop, by receiving "
                    "service and topic. Sub-millisecond on one node; the HighMessageLatency alert "
                    "fires above 50 ms.",
                    _t(
                        "histogram_quantile(0.99, sum by (service, topic, le) "
                        f"(rate(tradingsystem_hop_latency_seconds_bucket{{{NS}}}[{RATE}])))",
                        "{{service}} {{topic}}",
                    ),
                    unit="s",
                ),
                Panel(
                    "Bus hop latency distribution",
                    "Heatmap of all hop latencies (all services and topics): where the bulk of "
                    "messages lies and how long the tail is.",
                    _t(
                        f"sum by (le) (rate(tradingsystem_hop_latency_seconds_bucket{{{NS}}}[{RATE}]))",
                        "{{le}}",
                    ),
                    kind="heatmap",
                    unit="s",
                ),
                Panel(
                    "Tick-to-order latency",
                    "Median and 99th percentile time from a tick's receipt at market-data to the "
                    "resulting order's submission at the broker: the end-to-end reaction time.",
                    (
                        Target(
                            "histogram_quantile(0.5, sum by (le) "
                            f"(rate(tradingsystem_tick_to_order_latency_seconds_bucket{{{NS}}}[{RATE}])))",
                            "p50",
                        ),
                        Target(
                            "histogram_quantile(0.99, sum by (le) "
                            f"(rate(tradingsystem_tick_to_order_latency_seconds_bucket{{{NS}}}[{RATE}])))",
                            "p99",
                        ),
                    ),
                    unit="s",
                    width=8,
                ),
                Panel(
                    "Broker request latency p99",
                    "99th percentile latency of execution-engine's requests to the broker API, by endpoint.",
                    _t(
                        "histogram_quantile(0.99, sum by (endpoint, le) "
                        f"(rate(tradingsystem_broker_request_latency_seconds_bucket{{{NS}}}[{RATE}])))",
                        "{{endpoint}}",
                    ),
                    unit="s",
                    width=8,
                ),
                Panel(
                    "Market data age by symbol",
                    "Seconds since the last valid tick per symbol. Rises steadily when a symbol's feed "
                    "stops; the MarketDataStale alert fires above 2 minutes.",
                    _t(
                        f"time() - max by (symbol) (tradingsystem_marketdata_last_tick_timestamp_seconds{{{NS}}})",
                        "{{symbol}}",
                    ),
                    unit="s",
                    width=8,
                ),
            ),
        ),
    ),
)

PNL_THRESHOLDS = ((None, "red"), (0.0, "green"))

TRADING = Dashboard(
    uid="tradingsystem-trading",
    title="TradingSystem / Trading",
    description="P&L, positions, exposure, orders and rejects of the risk-manager and execution-engine.",
    rows=(
        Row(
            "Now",
            (
                Panel(
                    "Daily P&L",
                    "Realized plus unrealized P&L for the trading day, in dollars.",
                    _t(f"sum(tradingsystem_pnl_daily_dollars{{{NS}}})"),
                    kind="stat",
                    unit="currencyUSD",
                    width=4,
                    thresholds=PNL_THRESHOLDS,
                ),
                Panel(
                    "Realized P&L",
                    "P&L of closed trades since the start of the day (average-cost method).",
                    _t(f"sum(tradingsystem_pnl_realized_dollars{{{NS}}})"),
                    kind="stat",
                    unit="currencyUSD",
                    width=4,
                    thresholds=PNL_THRESHOLDS,
                ),
                Panel(
                    "Unrealized P&L",
                    "P&L of open positions at the last price.",
                    _t(f"sum(tradingsystem_pnl_unrealized_dollars{{{NS}}})"),
                    kind="stat",
                    unit="currencyUSD",
                    width=4,
                    thresholds=PNL_THRESHOLDS,
                ),
                Panel(
                    "Daily loss limit used",
                    "Today's loss as a share of risk.daily_loss_limit: yellow from 80% (the risk "
                    "manager only reduces exposure), red at 100% (the circuit breaker halts trading).",
                    _t(
                        f"clamp_min(-sum(tradingsystem_pnl_daily_dollars{{{NS}}}) "
                        f"/ sum(tradingsystem_risk_daily_loss_limit_dollars{{{NS}}}), 0)"
                    ),
                    kind="stat",
                    unit="percentunit",
                    width=4,
                    thresholds=((None, "green"), (0.8, "yellow"), (1.0, "red")),
                ),
                Panel(
                    "Risk state",
                    "The risk manager's state: ACTIVE (orders within limits), REDUCING (only orders "
                    "that reduce exposure) or HALTED (nothing goes out).",
                    _t(f"tradingsystem_risk_state{{{NS}}} == 1", "{{state}}"),
                    kind="stat",
                    width=4,
                    show_name=True,  # the state is the label; the value is always 1
                ),
                Panel(
                    "Kill switch and circuit breaker",
                    "ON when the kill switch is engaged or the daily-loss circuit breaker has tripped; "
                    "either halts trading until released by hand.",
                    (
                        Target(f"max(tradingsystem_risk_kill_switch_engaged{{{NS}}})", "kill switch"),
                        Target(f"max(tradingsystem_risk_circuit_breaker_tripped{{{NS}}})", "circuit breaker"),
                    ),
                    kind="stat",
                    width=4,
                    mappings=ON_OFF,
                ),
            ),
        ),
        Row(
            "P&L and positions",
            (
                Panel(
                    "P&L over time",
                    "Daily, realized and unrealized P&L over the selected time range.",
                    (
                        Target(f"sum(tradingsystem_pnl_daily_dollars{{{NS}}})", "daily"),
                        Target(f"sum(tradingsystem_pnl_realized_dollars{{{NS}}})", "realized"),
                        Target(f"sum(tradingsystem_pnl_unrealized_dollars{{{NS}}})", "unrealized"),
                    ),
                    unit="currencyUSD",
                    width=24,
                ),
                Panel(
                    "Positions by symbol",
                    "Signed position per symbol in shares (negative = short), as the risk manager tracks it from fills.",
                    _t(f"sum by (symbol) (tradingsystem_position_quantity{{{NS}}})", "{{symbol}}"),
                ),
                Panel(
                    "Gross exposure",
                    "Sum over symbols of |position x last price|, in dollars; limited by risk.max_gross_exposure.",
                    _t(f"sum(tradingsystem_gross_exposure_dollars{{{NS}}})", "gross exposure"),
                    unit="currencyUSD",
                ),
            ),
        ),
        Row(
            "Orders",
            (
                Panel(
                    "Order transitions by state",
                    "Orders per minute reaching each state of the local order state machine "
                    "(pending_submit for every new order, submitted, accepted, partially_filled, filled, canceled, "
                    "rejected, expired).",
                    _t(
                        f"sum by (state) (rate(tradingsystem_orders_total{{{NS}}}[{RATE}])) * 60", "{{state}}"
                    ),
                    unit="opm",
                ),
                Panel(
                    "Risk decisions",
                    "Intended orders per minute approved by the risk manager, and those rejected by reason "
                    "(max_position, order_rate, price_band, halted, ...).",
                    (
                        Target(
                            f"sum(rate(tradingsystem_risk_orders_approved_total{{{NS}}}[{RATE}])) * 60",
                            "approved",
                        ),
                        Target(
                            f"sum by (reason) (rate(tradingsystem_risk_rejects_total{{{NS}}}[{RATE}])) * 60",
                            "rejected: {{reason}}",
                        ),
                    ),
                    unit="opm",
                ),
                Panel(
                    "Open orders",
                    "Orders at the broker not yet in a terminal state.",
                    _t(f"sum(tradingsystem_orders_open{{{NS}}})", "open orders"),
                    width=8,
                ),
                Panel(
                    "Fills per minute",
                    "Partial and full fills reported by the broker per minute.",
                    _t(f"sum(rate(tradingsystem_fills_total{{{NS}}}[{RATE}])) * 60", "fills"),
                    unit="opm",
                    width=8,
                ),
                Panel(
                    "Order reject ratio",
                    "Share of new orders (pending_submit) that ended rejected, by the broker or because they "
                    "never reached it; the OrderRejectRateHigh alert fires above 10% over 10 minutes.",
                    _t(
                        f'sum(rate(tradingsystem_orders_total{{state="rejected",{NS}}}[{RATE}])) '
                        f'/ sum(rate(tradingsystem_orders_total{{state="pending_submit",{NS}}}[{RATE}]))',
                        "rejected / new",
                    ),
                    unit="percentunit",
                    width=8,
                ),
            ),
        ),
    ),
)

HEALTH = Dashboard(
    uid="tradingsystem-health",
    title="TradingSystem / Health",
    description="Are the services up and ready, what do they cost, how is the broker connection, is the operator well.",
    rows=(
        Row(
            "Services",
            (
                Panel(
                    "Scrape targets up",
                    "Whether Prometheus can scrape each service (job tradingsystem-<service>). DOWN for a "
                    "minute fires the ServiceDown alert.",
                    _t(f"up{{{PIPELINE_JOBS},{NS}}}", "{{job}} {{instance}}"),
                    kind="stat",
                    mappings=UP_DOWN,
                ),
                Panel(
                    "Ready",
                    "Each service's own readiness (/readyz): connected upstream, and for execution-engine "
                    "reconciled with the broker.",
                    _t(f"tradingsystem_ready{{{NS}}}", "{{service}}"),
                    kind="stat",
                    mappings=(("0", "NOT READY", "red"), ("1", "READY", "green")),
                ),
                Panel(
                    "Firing alerts",
                    "TradingSystem alerts firing now, by name and severity (from Prometheus' ALERTS series).",
                    _t(
                        'sum by (alertname, severity) (ALERTS{alertstate="firing",alertname=~"TradingSystem.+"})'
                    ),
                    kind="table",
                ),
                Panel(
                    "Versions",
                    "The version each running service reports (tradingsystem_build_info).",
                    _t(f"tradingsystem_build_info{{{NS}}}"),
                    kind="table",
                ),
            ),
        ),
        Row(
            "Resources",
            (
                Panel(
                    "CPU by service",
                    "CPU cores used by each service process.",
                    _t(
                        f"sum by (job) (rate(process_cpu_seconds_total{{{PIPELINE_JOBS},{NS}}}[{RATE}]))",
                        "{{job}}",
                    ),
                ),
                Panel(
                    "Resident memory by service",
                    "Resident set size of each service process.",
                    _t(f"sum by (job) (process_resident_memory_bytes{{{PIPELINE_JOBS},{NS}}})", "{{job}}"),
                    unit="bytes",
                ),
            ),
        ),
        Row(
            "Connections and broker",
            (
                Panel(
                    "Market data reconnects",
                    "Stream reconnects of market-data after a disconnect. Occasional ones are normal; "
                    "a steady rate means an unstable feed or bad credentials.",
                    _t(
                        f"sum(increase(tradingsystem_marketdata_reconnects_total{{{NS}}}[{RATE}]))",
                        "reconnects",
                    ),
                    width=6,
                ),
                Panel(
                    "Broker requests by endpoint",
                    "Requests per second from execution-engine to the broker API, by endpoint.",
                    _t(
                        f"sum by (endpoint) (rate(tradingsystem_broker_requests_total{{{NS}}}[{RATE}]))",
                        "{{endpoint}}",
                    ),
                    unit="reqps",
                    width=6,
                ),
                Panel(
                    "Broker errors by code",
                    "Failed broker requests per second by HTTP status, or transport for timeouts and resets. "
                    "429 means the broker rate-limits us.",
                    _t(
                        f"sum by (code) (rate(tradingsystem_broker_errors_total{{{NS}}}[{RATE}]))",
                        "{{code}}",
                    ),
                    unit="reqps",
                    width=6,
                ),
                Panel(
                    "Client rate-limit headroom",
                    "Requests left in execution-engine's client-side rate-limit window; at zero, requests wait.",
                    _t(f"min(tradingsystem_broker_rate_limit_remaining{{{NS}}})", "remaining"),
                    width=6,
                ),
            ),
        ),
        Row(
            "Operator",
            (
                Panel(
                    "Operator reconciles by result",
                    "Reconcile passes of the tradingsystem operator per minute, by result (success, error). "
                    "Not filtered by namespace: the operator usually runs in its own.",
                    _t(
                        f"sum by (result) (rate(tradingsystem_operator_reconciles_total[{RATE}])) * 60",
                        "{{result}}",
                    ),
                    unit="opm",
                ),
                Panel(
                    "Operator reconcile duration p99",
                    "99th percentile wall time of one reconcile pass, API calls included.",
                    _t(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(tradingsystem_operator_reconcile_duration_seconds_bucket[{RATE}])))",
                        "p99",
                    ),
                    unit="s",
                ),
            ),
        ),
    ),
)

ALL = (PIPELINE, TRADING, HEALTH)
