"""risk-manager: SUB signals, execution reports and market data; PUB orders and rejections on :5557.

One thread owns the ZeroMQ sockets and polls them together. An HTTP thread serves ``/metrics``
and the probes (read-only); another serves, on the control port and only with the bearer token
(see ``common/control.py``), ``GET /state`` and ``POST /control``
({"action": "halt"|"reduce"|"resume", "reason": ...}). Both touch the engine only under
``_lock``, so a halt is in force before its response is sent. Without a configured token the
control port is not opened at all.
State changes are published as ``RiskStatus`` by the socket thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from tradingsystem.common import metrics as m
from tradingsystem.common.bus import CurveKeys, Publisher, Subscriber, WireError, load_curve
from tradingsystem.common.config import Settings
from tradingsystem.common.control import bearer_guard, token_from_settings
from tradingsystem.common.runtime import Health, HttpEndpoint, install_signal_handlers, setup_logging
from tradingsystem.common.wire import (
    TOPIC_EXEC,
    TOPIC_QUOTE,
    TOPIC_SIGNAL,
    TOPIC_TRADE,
    Control,
    ControlAction,
    ExecutionReport,
    Msg,
    OrderIntent,
    Quote,
    Rejection,
    RiskState,
    RiskStatus,
    Signal,
    Trade,
)
from tradingsystem.risk.engine import RiskEngine
from tradingsystem.risk.limits import Limits
from tradingsystem.risk.reconcile import PositionSource, alpaca_positions, fetch_with_retry

SERVICE = "risk-manager"
POLL_MS = 100
MAX_BATCH = 256  # messages drained per socket before looking at the others again
log = logging.getLogger(__name__)


class RiskService:
    def __init__(
        self,
        settings: Settings,
        *,
        positions: PositionSource | None = None,
        clock: Callable[[], int] = time.time_ns,
        http_port: int | None = None,
        control_port: int | None = None,
    ) -> None:
        rs = settings.risk
        self.settings = settings
        self.engine = RiskEngine(
            Limits.from_settings(rs),
            settings.symbols,
            order_qty=rs.order_qty,
            sizing=rs.sizing,
            cid_prefix=settings.execution.cid_prefix,
            halted=rs.halted,
            clock=clock,
        )
        self._positions = positions
        self._lock = threading.Lock()
        self.health = Health(SERVICE)
        port = rs.http_port if http_port is None else http_port
        token = token_from_settings(rs)  # ConfigError naming the field, before anything binds
        self.http = HttpEndpoint(settings.bus.bind_host, port, self.health)
        self.control: HttpEndpoint | None = None
        if token is not None:
            self.control = HttpEndpoint(
                rs.control_host,
                rs.control_port if control_port is None else control_port,
                self.health,
                {"/state": self._get_state, "/control": self._post_control},
                probes=False,
                guard=bearer_guard(token),
            )
        self._in = {
            k: m.MESSAGES_IN.labels(SERVICE, k.decode())
            for k in (TOPIC_SIGNAL, TOPIC_QUOTE, TOPIC_TRADE, TOPIC_EXEC)
        }
        self._hop = {k: m.HOP_LATENCY.labels(SERVICE, k.decode()) for k in self._in}
        self._published: tuple[RiskState, str] | None = None
        self._gauges_due = 0.0

    # --- HTTP (other thread) ----------------------------------------------------------
    def _get_state(self, _body: bytes) -> tuple[int, Any]:
        with self._lock:
            return 200, self.engine.snapshot()

    def _post_control(self, body: bytes) -> tuple[int, Any]:
        try:
            data = json.loads(body)
            ctl = Control(action=ControlAction(data["action"]), reason=str(data.get("reason", ""))[:200])
        except (ValueError, KeyError, TypeError):
            return 400, {"error": 'POST JSON {"action": "halt"|"reduce"|"resume", "reason": "..."}'}
        with self._lock:
            self.engine.control(ctl.action, ctl.reason)
            state, reason = self.engine.state, self.engine.state_reason
        log.warning("control %s: state %s (%s)", ctl.action.value, state.value, reason)
        return 200, {"state": state.value, "reason": reason}

    # --- socket thread ----------------------------------------------------------------
    def _curve(self, server: str | None = None) -> CurveKeys | None:
        curve = self.settings.bus.curve
        return load_curve(curve.keys_dir, SERVICE, server) if curve.enabled else None

    def run(self, stop: threading.Event) -> int:
        bus = self.settings.bus
        self.http.start()
        if self.control is not None:
            self.control.start()
        else:
            log.warning("no control token configured (risk.control_token_file): control port closed")
        pub: Publisher | None = None
        subs: list[Subscriber] = []
        try:
            if self._positions is not None and not self._seed(stop):
                return 0 if stop.is_set() else 1
            pub = Publisher(bus.bind_endpoint(bus.risk), service=SERVICE, curve=self._curve())
            subs = [
                Subscriber(bus.signals, [TOPIC_SIGNAL], curve=self._curve("signal-bridge")),
                Subscriber(bus.execution, [TOPIC_EXEC], curve=self._curve("execution-engine")),
                Subscriber(bus.market_data, [TOPIC_QUOTE, TOPIC_TRADE], curve=self._curve("market-data")),
            ]
            poller = zmq.Poller()
            for sub in subs:
                poller.register(sub.sock, zmq.POLLIN)
            m.DAILY_LOSS_LIMIT.set(self.settings.risk.daily_loss_limit)
            self.health.set_ready(True, state=self.engine.state.value)
            log.info("risk-manager ready, publishing on %s", pub.endpoint)
            while not stop.is_set():
                ready = dict(poller.poll(POLL_MS))
                for sub in subs:
                    if sub.sock in ready:
                        self._drain(sub, pub)
                self._housekeeping(pub)
            return 0
        finally:
            self.health.set_ready(False)
            for sub in subs:
                sub.close()
            if pub is not None:
                pub.close()
            self.http.stop()
            if self.control is not None:
                self.control.stop()

    def _seed(self, stop: threading.Event) -> bool:
        assert self._positions is not None
        rows = fetch_with_retry(self._positions, stop)
        if rows is None:
            log.error("could not read positions from the broker; not starting blind")
            return False
        with self._lock:
            for row in rows:
                self.engine.seed_position(row.symbol, row.qty, row.avg_entry_price)
        log.info("seeded %d position(s) from the broker", len(rows))
        return True

    def _drain(self, sub: Subscriber, pub: Publisher) -> None:
        for _ in range(MAX_BATCH):
            try:
                rec = sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except WireError:
                m.MESSAGES_DROPPED.labels(SERVICE, "malformed").inc()
                continue
            kind = rec.topic.split(b".", 1)[0]
            counter = self._in.get(kind)
            if counter is None:
                m.MESSAGES_DROPPED.labels(SERVICE, "malformed").inc()
                continue
            counter.inc()
            self._hop[kind].observe(max(time.time_ns() - rec.msg.ts, 0) / 1e9)
            if rec.gap:
                m.SEQUENCE_GAPS.labels(SERVICE, kind.decode()).inc(rec.gap)
            self._dispatch(rec.msg, pub)

    def _dispatch(self, msg: Msg, pub: Publisher) -> None:
        decision: OrderIntent | Rejection | None = None
        with self._lock:
            if isinstance(msg, Quote):
                self.engine.on_quote(msg)
            elif isinstance(msg, Trade):
                self.engine.on_trade(msg)
            elif isinstance(msg, Signal):
                decision = self.engine.on_signal(msg)
            elif isinstance(msg, ExecutionReport):
                self.engine.on_report(msg)
                self._gauges_due = 0.0  # positions moved: refresh now
            else:
                m.MESSAGES_DROPPED.labels(SERVICE, "malformed").inc()
        if decision is None:
            return
        self._publish(pub, decision)
        if isinstance(decision, OrderIntent):
            m.RISK_DECISIONS.inc()
        else:
            m.RISK_REJECTS.labels(decision.reason.value).inc()
            log.info(
                "rejected %s %s %g: %s %s",
                decision.side.value,
                decision.symbol,
                decision.qty,
                decision.reason.value,
                decision.detail,
            )

    def _publish(self, pub: Publisher, msg: Msg) -> None:
        topic = pub.publish(msg)
        m.MESSAGES_OUT.labels(SERVICE, topic.split(b".", 1)[0].decode()).inc()

    def _housekeeping(self, pub: Publisher) -> None:
        with self._lock:
            status = (self.engine.state, self.engine.state_reason)
        if status != self._published:
            if self._published is not None:
                log.warning("risk state %s -> %s (%s)", self._published[0].value, status[0].value, status[1])
            self._published = status
            self._publish(pub, RiskStatus(state=status[0], reason=status[1]))
            self.health.set_ready(True, state=status[0].value)
            self._gauges_due = 0.0
        pub.heartbeat(status[0].value, every=self.settings.bus.heartbeat_interval_s)
        now = time.monotonic()
        if now >= self._gauges_due:
            self._gauges_due = now + self.settings.bus.heartbeat_interval_s
            self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        with self._lock:
            eng = self.engine
            state = eng.state
            for s in RiskState:
                m.RISK_STATE.labels(s.value).set(1 if s is state else 0)
            m.KILL_SWITCH.set(1 if eng.kill_switch else 0)
            m.CIRCUIT_BREAKER.set(1 if eng.circuit_breaker else 0)
            for symbol in self.settings.symbols:  # configured symbols only: bounded labels
                m.POSITION_QTY.labels(symbol).set(float(eng.book.qty(symbol)))
            m.GROSS_EXPOSURE.set(float(eng.gross_exposure()))
            m.PNL_REALIZED.set(float(eng.book.realized_today()))
            m.PNL_UNREALIZED.set(float(eng.book.unrealized()))
            m.PNL_DAILY.set(float(eng.book.daily_pnl()))


def run(settings: Settings) -> int:
    setup_logging(settings.log_level, settings.log_format, SERVICE)
    stop = threading.Event()
    install_signal_handlers(stop)
    positions = alpaca_positions(settings) if settings.risk.reconcile_on_start else None
    return RiskService(settings, positions=positions).run(stop)
