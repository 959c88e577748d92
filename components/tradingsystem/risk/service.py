"""risk-manager: SUB signals, execution reports and market data; PUB orders and rejections on :5557.

One thread owns the ZeroMQ sockets and polls them together. An HTTP thread serves ``/metrics``
and the probes (read-only); another serves, on the control port and only with the bearer token
(see ``common/control.py``), ``GET /state`` and ``POST /control``
({"action": "halt"|"config_halt"|"reduce"|"resume", "reason": ...}). Both touch the engine only under
``_lock``, so a halt is in force before its response is sent. Without a configured token the
control port is not opened at all.
State changes are published as ``RiskStatus`` by the socket thread.

Durability (docs/risk.md): the engine's ``PersistedState`` and the last applied report_seq
are written to ``risk.state_path`` after every change that matters — a batch's approvals
appended to the reservation journal *before* its intents are published, then its approvals
and reports in one transaction (group commit), a control *before* it is acknowledged, a state
change before it is published. At
start the stored state is restored (same trading day: same latches), the broker's open
orders are counted, and a resync with the execution-engine's outbox (``risk.resync``)
delivers every report missed while down and replays every approved intent the engine never
received. After a restart with stored state, signals are rejected (``not_synced``) until
that first resync has completed.
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
from tradingsystem.common.services import EXECUTION_ENGINE, MARKET_DATA, RISK_MANAGER, SIGNAL_BRIDGE
from tradingsystem.common.wire import (
    TOPIC_EXEC,
    TOPIC_EXEC_SYNC,
    TOPIC_HEARTBEAT,
    TOPIC_QUOTE,
    TOPIC_SIGNAL,
    TOPIC_TRADE,
    Action,
    Control,
    ControlAction,
    ExecutionReport,
    Heartbeat,
    Msg,
    OrderIntent,
    Quote,
    Rejection,
    RejectReason,
    RiskState,
    RiskStatus,
    Side,
    Signal,
    SyncReply,
    Trade,
)
from tradingsystem.risk.engine import RiskEngine
from tradingsystem.risk.limits import Limits
from tradingsystem.risk.reconcile import (
    OpenOrderSource,
    PositionSource,
    alpaca_open_orders,
    alpaca_positions,
    fetch_with_retry,
)
from tradingsystem.risk.resync import ReportVerdict, Resync, SyncTrigger
from tradingsystem.risk.store import RiskStore

SERVICE = RISK_MANAGER.name
EXECUTION = EXECUTION_ENGINE.name


POLL_MS = 100
MAX_BATCH = 256  # messages drained per socket before looking at the others again
_TICKS = (Trade, Quote)  # market data: marks only (``_drain``)
log = logging.getLogger(__name__)


class RiskService:
    def __init__(
        self,
        settings: Settings,
        *,
        positions: PositionSource | None = None,
        open_orders: OpenOrderSource | None = None,
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
        self._open_orders = open_orders
        self._clock = clock
        self._lock = threading.Lock()
        self.store = RiskStore(rs.state_path)
        stored = self.store.load()
        self.warm = stored is not None
        if stored is not None:
            self.engine.restore(stored[0], stored[1])
            log.warning(
                "restored safety state: %s%s, %d open order(s), reports applied up to %s",
                self.engine.state.value,
                f" ({self.engine.state_reason})" if self.engine.state_reason else "",
                len(self.engine.open_orders),
                stored[2],
            )
        self.resync = Resync(stored[2] if stored is not None else None, rs.resync_interval_s)
        # A restored state may miss fills of the time it was down: approve nothing until the
        # first resync has delivered them. A first start's book is the broker's, fresh.
        self._synced = not self.warm
        self._dirty = False  # reports applied since the state was last written
        self._held: list[OrderIntent] = []  # approved in this batch, published once reserved
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
            for k in (TOPIC_SIGNAL, TOPIC_QUOTE, TOPIC_TRADE, TOPIC_EXEC, TOPIC_EXEC_SYNC, TOPIC_HEARTBEAT)
        }
        self._hop = {k: m.HOP_LATENCY.labels(SERVICE, k.decode()) for k in self._in}
        self._malformed = m.MESSAGES_DROPPED.labels(SERVICE, "malformed")
        # Every reason exported from the start, at 0: the reject panels and the reject-ratio rule
        # read 0 while nothing is rejected, rather than no series at all.
        for reason in RejectReason:
            m.RISK_REJECTS.labels(reason.value)
        self._out: dict[bytes, Any] = {}
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
            return 400, {
                "error": 'POST JSON {"action": "halt"|"config_halt"|"reduce"|"resume", "reason": "..."}'
            }
        with self._lock:
            self.engine.control(ctl.action, ctl.reason)
            state, reason = self.engine.state, self.engine.state_reason
            self._persist(durable=True)  # on disk before the caller hears "HALTED"
        log.warning("control %s: state %s (%s)", ctl.action.value, state.value, reason)
        return 200, {"state": state.value, "reason": reason}

    # --- socket thread ----------------------------------------------------------------
    def _curve(self, server: str | None = None) -> CurveKeys | None:
        curve = self.settings.bus.curve
        return load_curve(curve.keys_dir, SERVICE, server) if curve.enabled else None

    def _persist(self, *, durable: bool = False) -> None:
        """Write the state, the changed open orders and the last applied report_seq (caller
        holds ``_lock``); ``durable``: fsynced before returning (controls, latches)."""
        eng = self.engine
        self.store.save(
            eng.export(), self.resync.last_seq, self._clock(), eng.take_order_changes(), durable=durable
        )

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
            if not self._seed(stop):
                return 0 if stop.is_set() else 1
            pub = Publisher(bus.bind_endpoint(bus.risk), service=SERVICE, curve=self._curve())
            publishers = {
                SIGNAL_BRIDGE.name: Subscriber(
                    bus.signals, [TOPIC_SIGNAL], curve=self._curve(SIGNAL_BRIDGE.name)
                ),
                # Heartbeats too: a restarted engine is noticed by its new epoch within a second.
                EXECUTION: Subscriber(
                    bus.execution, [TOPIC_EXEC, TOPIC_HEARTBEAT], curve=self._curve(EXECUTION)
                ),
                MARKET_DATA.name: Subscriber(
                    bus.market_data, [TOPIC_QUOTE, TOPIC_TRADE], curve=self._curve(MARKET_DATA.name)
                ),
            }
            subs = list(publishers.values())
            poller = zmq.Poller()
            for sub in subs:
                poller.register(sub.sock, zmq.POLLIN)
            m.DAILY_LOSS_LIMIT.set(self.settings.risk.daily_loss_limit)
            self.health.set_ready(True, state=self.engine.state.value)
            log.info("risk-manager ready, publishing on %s", pub.endpoint)
            while not stop.is_set():
                ready = dict(poller.poll(POLL_MS))
                for name, sub in publishers.items():
                    if sub.sock in ready:
                        self._drain(sub, pub, name)
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
            with self._lock:  # after both HTTP threads: no control request writes to a closed store
                self.store.close()

    def _seed(self, stop: threading.Event) -> bool:
        """First start: positions from the broker. Every start: the broker's open orders."""
        if self._positions is not None and not self.warm:
            rows = fetch_with_retry(self._positions, stop)
            if rows is None:
                log.error("could not read positions from the broker; not starting blind")
                return False
            with self._lock:
                for row in rows:
                    self.engine.seed_position(row.symbol, row.qty, row.avg_entry_price)
            log.info("seeded %d position(s) from the broker", len(rows))
        if self._open_orders is not None:
            orders = fetch_with_retry(self._open_orders, stop)
            if orders is None:
                log.error("could not read open orders from the broker; not starting blind")
                return False
            with self._lock:
                for o in orders:
                    self.engine.seed_open_order(o.client_order_id, o.symbol, o.side, o.qty, o.filled_qty)
            log.info("counted %d open order(s) held by the broker", len(orders))
        with self._lock:
            self._persist()
        return True

    def _drain(self, sub: Subscriber, pub: Publisher, publisher: str) -> None:
        # Market data only moves the marks, and only the last price per symbol matters: the
        # ticks of one drain are marked together at its end (``RiskEngine.on_ticks``), each one
        # still decoded, gap-checked and counted. No signal is decided in between (signals
        # are drained first and never here), so every decision sees the same marks.
        ticks: list[Trade | Quote] = []
        counts = dict.fromkeys(self._in, 0)  # added to the counters once per drain
        for _ in range(MAX_BATCH):
            try:
                rec = sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            except WireError:
                self._malformed.inc()
                continue
            kind = rec.topic.split(b".", 1)[0]
            if kind not in counts:
                self._malformed.inc()
                continue
            counts[kind] += 1
            msg = rec.msg
            self._hop[kind].observe(max(time.time_ns() - msg.ts, 0) / 1e9)
            if rec.gap:
                m.SEQUENCE_GAPS.labels(SERVICE, kind.decode()).inc(rec.gap)
            if rec.restarted:
                m.PUBLISHER_RESTARTS.labels(SERVICE, publisher).inc()
                log.warning("%s restarted (new epoch)", publisher)
                if publisher == EXECUTION:
                    self.resync.need(SyncTrigger.EPOCH)
            if isinstance(msg, _TICKS):
                ticks.append(msg)
            else:
                self._dispatch(msg, pub)
        if ticks:
            with self._lock:
                self.engine.on_ticks(ticks)
        for kind, n in counts.items():  # after the marks: a message counted has been applied
            if n:
                self._in[kind].inc(n)
        self._flush(pub)

    def _flush(self, pub: Publisher) -> None:
        """The batch's approvals are appended to the reservation journal in one write and
        published (never before their reservation is in the file); then one transaction
        takes them with the batch's reports (group commit) and empties the journal."""
        if not (self._dirty or self._held):
            return
        held, self._held = self._held, []
        if held:
            with self._lock:
                self.store.reserve(self.engine.reservations(held))
            for intent in held:
                self._publish(pub, intent)
            m.RISK_DECISIONS.inc(len(held))
        with self._lock:
            self._persist()
        self._dirty = False

    def _on_report(self, report: ExecutionReport) -> None:
        last = self.resync.last_seq
        verdict = self.resync.on_report(report.report_seq, report.prev_seq)
        if verdict is ReportVerdict.RESUMED:
            log.warning(
                "the execution-engine's outbox resumes at %d after %d, below report %s applied here: "
                "it lost its unsynced tail (machine crash); its reconciliation reports the broker's state again",
                report.report_seq,
                report.prev_seq,
                last,
            )
            m.RISK_REPORT_CHAIN_RESUMED.inc()
        if verdict in (ReportVerdict.APPLY, ReportVerdict.RESUMED, ReportVerdict.UNSYNCED):
            with self._lock:
                self.engine.on_report(report)
            self._dirty = True
            self._gauges_due = 0.0  # positions moved: refresh now
        elif verdict is ReportVerdict.GAP:
            m.RISK_REPORT_GAPS.inc()

    def _on_sync_reply(self, reply: SyncReply, pub: Publisher) -> None:
        """Every replayed report before this reply is applied; re-publish the intents the
        engine has never seen (it dedupes by cid and rejects the stale ones)."""
        with self._lock:
            replays = [i for i in (self.engine.replay_intent(cid) for cid in reply.unknown) if i is not None]
            foreign = [
                c
                for c in reply.unknown
                if (o := self.engine.open_orders.get(c)) is not None and o.from_broker
            ]
        if foreign:
            self._release_closed_foreign(foreign)
        with self._lock:
            self.resync.on_reply(reply, time.monotonic())
            self._persist()
        for intent in replays:
            self._publish(pub, intent)
            m.RISK_INTENT_REPLAYS.inc()
        if replays:
            log.warning("replayed %d approved intent(s) the execution-engine had not received", len(replays))
        if not self._synced and self.resync.pending is None:
            self._synced = True
            log.info("in sync with the execution-engine at report %s", self.resync.last_seq)

    def _release_closed_foreign(self, cids: list[str]) -> None:
        """Orders counted from the broker at start that the engine never knew: only the broker
        can say when they end. One read of its open orders and positions (errors: next resync)."""
        if self._open_orders is None or self._positions is None:
            return
        try:
            still_open = {o.client_order_id for o in self._open_orders()}
            positions = {p.symbol: (p.qty, p.avg_entry_price) for p in self._positions()}
        except Exception as exc:  # transport or API error: the next periodic resync retries
            log.warning("broker open orders unavailable: %s", type(exc).__name__)
            return
        with self._lock:
            for cid in cids:
                if cid not in still_open:
                    order = self.engine.open_orders.get(cid)
                    if order is not None:
                        log.warning("broker order %s no longer open: released", cid)
                        self.engine.release_foreign(cid, positions.get(order.symbol))
            self._dirty = True

    def _dispatch(self, msg: Msg, pub: Publisher) -> None:
        decision: OrderIntent | Rejection | None = None
        if isinstance(msg, ExecutionReport):
            self._on_report(msg)
            return
        if isinstance(msg, SyncReply):
            self._on_sync_reply(msg, pub)
            return
        if isinstance(msg, Heartbeat):
            return
        with self._lock:
            if isinstance(msg, Signal):
                if self._synced:
                    decision = self.engine.on_signal(msg)
                else:
                    decision = Rejection(
                        symbol=msg.symbol,
                        side=Side.SELL if msg.action is Action.SELL else Side.BUY,
                        qty=0.0,
                        reason=RejectReason.NOT_SYNCED,
                        detail="waiting for the first resync with the execution-engine",
                        origin_ts=msg.origin_ts,
                    )
            else:
                self._malformed.inc()
        if decision is None:
            return
        if isinstance(decision, OrderIntent):
            # Held until the end of the batch (``_flush``): the reservation is in the file
            # before the order exists, and a burst of approvals shares one write.
            self._held.append(decision)
        else:
            self._publish(pub, decision)
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
        kind = topic.split(b".", 1)[0]
        counter = self._out.get(kind)
        if counter is None:  # bound once per kind: a label lookup per message is measurable
            counter = self._out[kind] = m.MESSAGES_OUT.labels(SERVICE, kind.decode())
        counter.inc()

    def _housekeeping(self, pub: Publisher) -> None:
        with self._lock:
            status = (self.engine.state, self.engine.state_reason)

        def open_cids() -> list[str]:
            with self._lock:
                return sorted(self.engine.open_orders)

        trigger = self.resync.pending
        request = self.resync.request(time.monotonic(), open_cids)
        if request is not None:
            m.RISK_RESYNCS.labels((self.resync.pending or trigger or SyncTrigger.PERIODIC).value).inc()
            self._publish(pub, request)
        if status != self._published:
            with self._lock:
                self._persist(durable=True)  # a latch is on disk before it is announced
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
            m.RISK_OPEN_ORDERS.set(len(eng.open_orders))
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
    reconcile = settings.risk.reconcile_on_start
    positions = alpaca_positions(settings) if reconcile else None
    open_orders = alpaca_open_orders(settings) if reconcile else None
    return RiskService(settings, positions=positions, open_orders=open_orders).run(stop)
