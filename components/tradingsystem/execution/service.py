"""execution-engine: approved orders in (SUB risk ``order.*``), broker orders out, reports on PUB.

Threads, each with one job:

* the **bus thread** (``Engine.run``) owns both ZeroMQ sockets: it persists every received
  intent as PENDING_SUBMIT (so a crash loses nothing) and hands it to the worker, and it
  publishes the reports the worker queues. Sockets never cross threads.
* the **worker** owns the open orders: submits (with the broker's retry policy), applies
  ``trade_updates``, reconciles. Serializing all order mutations in one thread is what
  keeps the state machine simple; broker calls are ~10-100 ms, far below 200 orders/min.
* the **stream** thread runs alpaca-py's ``TradingStream``. Its events only enqueue work;
  every (re)connect also enqueues a reconciliation, because the stream has no replay.

Startup: open the store, reconcile every non-terminal order with the broker (adopt, or
place the orders that never reached it), then only become ready and start consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from alpaca.trading.stream import TradingStream

from tradingsystem.broker import credentials, paper, trading_stream_url
from tradingsystem.common.bus import CurveKeys, Publisher, Subscriber, load_curve
from tradingsystem.common.config import Settings
from tradingsystem.common.metrics import (
    FILLS,
    MESSAGES_DROPPED,
    MESSAGES_IN,
    MESSAGES_OUT,
    OPEN_ORDERS,
    ORDERS,
    SEQUENCE_GAPS,
    TICK_TO_ORDER_LATENCY,
)
from tradingsystem.common.runtime import Health, HttpEndpoint, install_signal_handlers, setup_logging
from tradingsystem.common.services import EXECUTION_ENGINE, RISK_MANAGER
from tradingsystem.common.wire import (
    TOPIC_ORDER,
    ExecutionReport,
    OrderIntent,
    OrderStatus,
    WireError,
    now_ns,
)
from tradingsystem.execution.broker import Broker, BrokerOrder, Rejected, Unavailable
from tradingsystem.execution.orders import Fill, Order
from tradingsystem.execution.store import OrderStore

log = logging.getLogger(__name__)

SERVICE = EXECUTION_ENGINE.name
RISK_SERVICE = RISK_MANAGER.name
_POLL_MS = 10  # bus loop wake-up: bounds report publishing delay and stop latency


class _Stream(TradingStream):
    """TradingStream that tells us about every (re)connect: the cue to reconcile by REST."""

    def __init__(self, on_connect: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_connect = on_connect

    async def _start_ws(self) -> None:
        await super()._start_ws()
        self._on_connect()


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.health = Health(SERVICE)
        self.store = OrderStore(settings.execution.db_path)
        self.broker = Broker(settings)
        self.broker_positions: dict[str, float] = {}
        self._open: dict[str, Order] = {}  # worker-owned after startup
        self._work: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._reports: queue.Queue[ExecutionReport] = queue.Queue()
        self._last_reconcile = 0.0

    # --- order state (worker thread; startup before the worker exists) -------------------
    def _apply(self, order: Order, bo: BrokerOrder) -> None:
        before = order.status
        avg = bo.get("filled_avg_price")
        changed, fill = order.apply_broker(
            str(bo["status"]), float(bo.get("filled_qty") or 0), float(avg) if avg else None, bo.get("id")
        )
        if order.status is OrderStatus.REJECTED and not order.reason:
            order.reason = "rejected by broker"
        if changed:
            self._commit(order, fill, status_changed=order.status is not before)

    def _commit(self, order: Order, fill: Fill | None = None, *, status_changed: bool = True) -> None:
        self.store.save(order, fill, now_ns())
        if status_changed:
            ORDERS.labels(order.status.value).inc()
        if fill is not None:
            FILLS.inc()
        if order.terminal:
            self._open.pop(order.client_order_id, None)
        OPEN_ORDERS.set(len(self._open))
        self._reports.put(order.report(fill))

    def _reject(self, order: Order, reason: str) -> None:
        order.transition(OrderStatus.REJECTED, reason)
        self._commit(order)

    def _place(self, order: Order, *, may_exist: bool) -> None:
        self._open[order.client_order_id] = order
        if order.origin_ts and not may_exist:  # a re-placement after a crash is not tick latency
            TICK_TO_ORDER_LATENCY.observe(max(0, now_ns() - order.origin_ts) / 1e9)
        try:
            bo = self.broker.submit(order, may_exist=may_exist)
        except Rejected as exc:
            log.warning("order %s rejected by broker: %s", order.client_order_id, exc)
            self._reject(order, f"broker {exc.status} {exc.code or ''}: {exc.message}".strip())
            return
        except Unavailable as exc:
            # Outcome unknown: stays PENDING_SUBMIT; the next reconciliation resolves it by cid.
            log.error("order %s not confirmed, will reconcile: %s", order.client_order_id, exc)
            return
        self._apply(order, bo)

    def _on_trade_update(self, data: dict[str, Any]) -> None:
        bo = data.get("order") or {}
        order = self._open.get(str(bo.get("client_order_id")))
        if order is None:
            return  # terminal already (a late duplicate) or not placed by this engine
        self._apply(order, bo)

    def reconcile(self) -> None:
        """Align local state with the broker: by cid for each open order, then positions."""
        max_age_ns = int(self.settings.execution.resubmit_max_age_s * 1e9)
        for order in list(self._open.values()):
            bo = self.broker.order_by_cid(order.client_order_id)
            if bo is not None:
                self._apply(order, bo)
            elif order.status is not OrderStatus.PENDING_SUBMIT:
                log.error("order %s (%s) unknown to the broker", order.client_order_id, order.status)
            elif now_ns() - order.created_ns > max_age_ns:
                self._reject(order, "never reached the broker within resubmit_max_age_s; not placed")
            else:
                self._place(order, may_exist=True)
        ours = {o.client_order_id for o in self._open.values()}
        foreign = [
            bo["client_order_id"] for bo in self.broker.open_orders() if bo["client_order_id"] not in ours
        ]
        self.broker_positions = self.broker.positions()
        local = self.store.positions()
        if local != self.broker_positions:
            # Expected when the account also trades outside this engine; never silently "fixed".
            log.warning("positions differ from broker: local=%s broker=%s", local, self.broker_positions)
        self.health.detail.update(
            open_orders=len(self._open), foreign_open_orders=len(foreign), positions=self.broker_positions
        )
        self._last_reconcile = time.monotonic()

    def startup(self, stop: threading.Event) -> bool:
        """Reconcile before trading; retries while the broker is unreachable. False if stopped."""
        for order in self.store.open_orders():
            self._open[order.client_order_id] = order
        OPEN_ORDERS.set(len(self._open))
        delay = self.settings.execution.backoff_base_s
        while not stop.is_set():
            try:
                self.reconcile()
                return True
            except (Unavailable, Rejected) as exc:
                log.error("startup reconciliation failed, retrying: %s", exc)
                stop.wait(delay)
                delay = min(delay * 2, self.settings.execution.backoff_max_s)
        return False

    def _worker(self, stop: threading.Event) -> None:
        interval = self.settings.execution.reconcile_interval_s
        while not stop.is_set():
            try:
                kind, item = self._work.get(timeout=0.2)
            except queue.Empty:
                kind, item = "idle", None
            try:
                if kind == "place":
                    self._place(item, may_exist=False)
                elif kind == "update":
                    self._on_trade_update(item)
                elif kind == "reconcile" or (
                    self._open and time.monotonic() - self._last_reconcile > interval
                ):
                    self.reconcile()
            except (Unavailable, Rejected) as exc:
                log.error("broker call failed in %s: %s", kind, exc)
            except Exception:
                log.exception("execution worker error in %s", kind)

    # --- stream ---------------------------------------------------------------------------
    def _start_stream(self) -> tuple[_Stream, threading.Thread]:
        key, secret = credentials(self.settings)
        stream = _Stream(
            lambda: self._work.put(("reconcile", None)),
            api_key=key,
            secret_key=secret,
            paper=paper(self.settings),
            raw_data=True,
            url_override=trading_stream_url(self.settings),
        )

        async def on_update(msg: dict[str, Any]) -> None:
            self._work.put(("update", msg.get("data") or {}))

        stream.subscribe_trade_updates(on_update)
        thread = threading.Thread(target=stream.run, name="trade-updates", daemon=True)
        thread.start()
        return stream, thread

    @staticmethod
    def _stop_stream(stream: _Stream, thread: threading.Thread) -> None:
        loop = stream._loop
        if loop is not None and loop.is_running():
            stream.stop()
            # The SDK notices the stop flag only between 5 s receive timeouts; closing the
            # socket wakes it now.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stream.close(), loop).result(timeout=5)
        else:
            stream._stop_stream_queue.put_nowait({"should_stop": True})
        thread.join(timeout=10)

    # --- bus ------------------------------------------------------------------------------
    def _curve(self, server: str | None) -> CurveKeys | None:
        curve = self.settings.bus.curve
        return load_curve(curve.keys_dir, SERVICE, server) if curve.enabled else None

    def _on_intent(self, intent: OrderIntent) -> None:
        order = Order.from_intent(intent, created_ns=now_ns())
        if not self.store.add(order):
            log.debug("duplicate intent %s ignored", intent.client_order_id)
            return
        ORDERS.labels(order.status.value).inc()
        self._work.put(("place", order))

    def run(self, stop: threading.Event) -> int:
        bus = self.settings.bus
        http = HttpEndpoint(bus.bind_host, self.settings.execution.http_port, self.health).start()
        worker_stop = threading.Event()
        worker = threading.Thread(target=self._worker, args=(worker_stop,), name="exec-worker", daemon=True)
        stream: tuple[_Stream, threading.Thread] | None = None
        pub = sub = None
        try:
            if not self.startup(stop):
                return 0
            pub = Publisher(bus.bind_endpoint(bus.execution), service=SERVICE, curve=self._curve(None))
            sub = Subscriber(bus.risk, [TOPIC_ORDER], curve=self._curve(RISK_SERVICE))
            worker.start()
            stream = self._start_stream()
            self.health.set_ready(True)
            log.info("execution-engine ready: %d open orders reconciled", len(self._open))
            while not stop.is_set():
                if sub.sock.poll(_POLL_MS):
                    self._receive(sub)
                while not self._reports.empty():
                    report = self._reports.get_nowait()
                    pub.publish(report)
                    MESSAGES_OUT.labels(SERVICE, "exec").inc()
                pub.heartbeat(every=bus.heartbeat_interval_s)
            return 0
        finally:
            self.health.set_ready(False)
            worker_stop.set()
            if worker.is_alive():
                worker.join(timeout=30)
            if stream is not None:
                self._stop_stream(*stream)
            for sock in (sub, pub):
                if sock is not None:
                    sock.close()
            http.stop()
            self.store.close()

    def _receive(self, sub: Subscriber) -> None:
        try:
            rec = sub.recv()
        except WireError:
            MESSAGES_DROPPED.labels(SERVICE, "malformed").inc()
            return
        MESSAGES_IN.labels(SERVICE, "order").inc()
        if rec.gap:
            SEQUENCE_GAPS.labels(SERVICE, "order").inc(rec.gap)
            log.error("missed %d approved orders upstream", rec.gap)
        if isinstance(rec.msg, OrderIntent):
            self._on_intent(rec.msg)


def run(settings: Settings) -> int:
    setup_logging(settings.log_level, settings.log_format, SERVICE)
    stop = threading.Event()
    install_signal_handlers(stop)
    return Engine(settings).run(stop)
