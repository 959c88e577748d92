"""execution-engine: approved orders in (SUB risk ``order.*``), broker orders out, reports on PUB.

Threads, each with one job:

* the **bus thread** (``ExecutionService.run``) owns the SUB socket: it persists every
  received intent as PENDING_SUBMIT (so a crash loses nothing), admits it (the age limit and
  the bounded queue of ``execution.engine.Engine``) and hands it to the worker; it answers
  resync requests from the outbox and sends whatever the outbox holds that was not published
  live. The PUB socket is shared, under a lock, by whichever thread writes a report (the
  report and the state change are one transaction), so a report leaves without a thread
  wake-up: before its commit when the broker holds the order, after it otherwise.
* the **worker** owns the open orders: submits (with the broker's retry policy), applies
  ``trade_updates``, reconciles. Serializing all order mutations in one thread is what
  keeps the state machine simple; broker calls are ~10-100 ms, far below 200 orders/min.
* the **stream** thread runs alpaca-py's ``TradingStream``. Its events only enqueue work;
  every (re)connect also enqueues a reconciliation, because the stream has no replay.

Startup: open the store, bind (intents and resync requests wait in ZeroMQ), reconcile every
non-terminal order with the broker (adopt, or place the orders that never reached it), then
only become ready and start consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import zmq
from alpaca.trading.stream import TradingStream

from tradingsystem.broker import credentials, paper, trading_stream_url
from tradingsystem.common.bus import CurveKeys, Publisher, Subscriber, load_curve
from tradingsystem.common.config import Settings
from tradingsystem.common.metrics import (
    EXEC_REJECTS,
    FILLS,
    INTENT_QUEUE,
    MESSAGES_DROPPED,
    MESSAGES_IN,
    MESSAGES_OUT,
    OPEN_ORDERS,
    ORDERS,
    OUTBOX_HEAD,
    PUBLISHER_RESTARTS,
    SEQUENCE_GAPS,
    TICK_TO_ORDER_LATENCY,
)
from tradingsystem.common.runtime import Health, HttpEndpoint, install_signal_handlers, setup_logging
from tradingsystem.common.services import EXECUTION_ENGINE, RISK_MANAGER
from tradingsystem.common.wire import (
    TOPIC_ORDER,
    TOPIC_SYNC,
    ExecRejectReason,
    ExecutionReport,
    OrderIntent,
    OrderStatus,
    SyncReply,
    SyncRequest,
    WireError,
    now_ns,
)
from tradingsystem.execution.broker import (
    Broker,
    BrokerOrder,
    HeldByBroker,
    Rejected,
    TooOld,
    Unavailable,
)
from tradingsystem.execution.engine import Engine, EngineLimits, ReconcileAction
from tradingsystem.execution.orders import Fill, Order
from tradingsystem.execution.store import OrderStore

log = logging.getLogger(__name__)

SERVICE = EXECUTION_ENGINE.name
RISK_SERVICE = RISK_MANAGER.name
_POLL_MS = 100  # bus loop idle wake-up: bounds stop latency and heartbeat jitter
_MAX_BATCH = 256  # messages taken from the bus before publishing the outbox again
SYNC_BATCH = 500  # reports per resync answer; the risk manager asks again for the rest


class _Stream(TradingStream):
    """TradingStream that tells us about every (re)connect: the cue to reconcile by REST."""

    def __init__(self, on_connect: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_connect = on_connect

    async def _start_ws(self) -> None:
        await super()._start_ws()
        self._on_connect()


class ExecutionService:
    """The I/O shell around ``execution.engine.Engine``: broker, store/outbox, bus, stream."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        ex = settings.execution
        self.health = Health(SERVICE)
        self.store = OrderStore(ex.db_path)
        self.broker = Broker(settings)
        self.broker_positions: dict[str, float] = {}
        self.engine = Engine(
            EngineLimits(max_age_ns=int(ex.resubmit_max_age_s * 1e9), max_queued=ex.max_queued_intents)
        )
        # Guards ``engine``: the bus thread admits intents, the worker settles orders.
        self._lock = threading.RLock()
        self._work: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._head = self._published = self.store.head()  # outbox: written / published live
        OUTBOX_HEAD.set(self._head)
        # The PUB socket is used by whichever thread writes a report (worker or bus thread),
        # so a report leaves without waking another thread (a wake-up cost 0.3 ms at p50 and
        # 1 ms at p90 on a busy 2-core host). libzmq lets a socket move between threads across
        # a full memory barrier: this lock is that barrier, and it also keeps the outbox
        # published in order. Whoever needs both takes the store's lock first.
        self._pub: Publisher | None = None
        self._pub_lock = threading.Lock()
        # Every state from the start, at 0: a rate or ratio over a state not reached yet (the
        # reject ratio before the first reject) is then 0 rather than missing.
        for state in OrderStatus:
            ORDERS.labels(state.value)
        self._last_reconcile = 0.0

    @property
    def _open(self) -> dict[str, Order]:
        return self.engine.open

    # --- order state (worker thread; bus thread for admission) ---------------------------
    def _apply(self, order: Order, bo: BrokerOrder, execution: tuple[Decimal, Decimal] | None = None) -> None:
        before = order.status
        avg = bo.get("filled_avg_price")
        changed, fill = order.apply_broker(
            str(bo["status"]),
            float(bo.get("filled_qty") or 0),
            float(avg) if avg else None,
            bo.get("id"),
            execution,
        )
        if order.status is OrderStatus.REJECTED and not order.reason:
            order.reason = "rejected by broker"
            order.reject = ExecRejectReason.BROKER
        if changed:
            self._commit(order, fill, status_changed=order.status is not before)

    def _commit(self, order: Order, fill: Fill | None = None, *, status_changed: bool = True) -> None:
        """State change, fill and report in one transaction, published by this thread: before
        the commit when the broker holds the order (``store.needs_fsync``), else after it."""
        report = self.store.save(order, fill, now_ns(), publish=self._publish_first)
        if status_changed:
            ORDERS.labels(order.status.value).inc()
        if fill is not None:
            FILLS.inc()
        if order.reject is not None and order.terminal:
            EXEC_REJECTS.labels(order.reject.value).inc()
        with self._lock:
            self.engine.track(order)
            OPEN_ORDERS.set(len(self.engine.open))
            self._head = max(self._head, report.report_seq)
        OUTBOX_HEAD.set(report.report_seq)
        self._publish_outbox(report)

    def _reject(self, order: Order, why: ExecRejectReason, detail: str) -> None:
        log.warning("order %s rejected (%s): %s", order.client_order_id, why.value, detail)
        order.transition(OrderStatus.REJECTED, detail)
        order.reject = why
        self._commit(order)

    def _place(self, order: Order, *, may_exist: bool) -> None:
        if order.origin_ts and not may_exist:  # a re-placement after a crash is not tick latency
            TICK_TO_ORDER_LATENCY.observe(max(0, now_ns() - order.origin_ts) / 1e9)
        try:
            bo = self.broker.submit(
                order, may_exist=may_exist, not_after_ns=self.engine.send_deadline_ns(order)
            )
        except TooOld as exc:
            if exc.may_exist:  # an attempt was ambiguous: reconciliation looks it up, then decides
                log.error("order %s past its age limit after an ambiguous attempt", order.client_order_id)
            else:
                self._reject(
                    order, ExecRejectReason.STALE, "past resubmit_max_age_s before the broker took it"
                )
            return
        except Rejected as exc:
            self._reject(
                order, ExecRejectReason.BROKER, f"broker {exc.status} {exc.code or ''}: {exc.message}".strip()
            )
            return
        except HeldByBroker as exc:
            # Proof it exists: SUBMITTED, so reconciliation keeps looking and never re-places it.
            log.error("order %s held by the broker but not visible yet: %s", order.client_order_id, exc)
            order.transition(OrderStatus.SUBMITTED, "broker: client_order_id already held")
            self._commit(order)
            return
        except Unavailable as exc:
            # Outcome unknown: stays PENDING_SUBMIT; the next reconciliation resolves it by cid.
            log.error("order %s not confirmed, will reconcile: %s", order.client_order_id, exc)
            return
        self._apply(order, bo)

    def _submit_queued(self, order: Order) -> None:
        with self._lock:
            stale = self.engine.before_submit(order, now_ns())
            INTENT_QUEUE.set(self.engine.queued)
        if stale is not None:
            self._reject(order, stale, "waited in the queue beyond resubmit_max_age_s; not sent")
        else:
            self._place(order, may_exist=False)

    def _on_trade_update(self, data: dict[str, Any]) -> None:
        bo = data.get("order") or {}
        order = self._open.get(str(bo.get("client_order_id")))
        if order is None:
            return  # terminal already (a late duplicate) or not placed by this engine
        execution = None
        if (
            data.get("event") in ("fill", "partial_fill")
            and data.get("price") is not None
            and data.get("qty")
        ):
            execution = (Decimal(str(data["qty"])), Decimal(str(data["price"])))
        self._apply(order, bo, execution)

    def reconcile(self) -> None:
        """Align local state with the broker: by cid for each open order, then positions."""
        for order in list(self._open.values()):
            bo = self.broker.order_by_cid(order.client_order_id)
            action = self.engine.reconcile_action(order, bo is not None, now_ns())
            if action is ReconcileAction.APPLY and bo is not None:
                self._apply(order, bo)
            elif action is ReconcileAction.KEEP_LOOKING:
                log.error("order %s (%s) not visible at the broker yet", order.client_order_id, order.status)
            elif action is ReconcileAction.REJECT_STALE:
                self._reject(
                    order,
                    ExecRejectReason.STALE,
                    "never reached the broker within resubmit_max_age_s; not placed",
                )
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
            self.engine.track(order)
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
                    self._submit_queued(item)
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

    def _on_intents(self, intents: list[OrderIntent]) -> None:
        """Persist the intents of one bus batch in one commit (group commit: one fsync), then
        admit each; none reaches the worker, hence the broker, before it is on disk."""
        created = now_ns()
        orders = [Order.from_intent(i, created_ns=created) for i in intents]
        new = self.store.add_many(orders)
        if len(new) < len(orders):
            log.debug("%d duplicate intent(s) ignored", len(orders) - len(new))
        for order in new:
            self._admit(order)

    def _admit(self, order: Order) -> None:
        ORDERS.labels(order.status.value).inc()
        with self._lock:
            verdict = self.engine.admit(order, now_ns())
            INTENT_QUEUE.set(self.engine.queued)
        if verdict is ExecRejectReason.STALE:
            self._reject(order, verdict, "older than resubmit_max_age_s on arrival; not sent")
        elif verdict is not None:
            self._reject(order, verdict, f"{self.engine.queued} orders already wait for the broker; not sent")
        else:
            self._work.put(("place", order))

    def _on_sync(self, req: SyncRequest) -> None:
        """A resync: replay the outbox after ``since`` (bounded), then answer on the same socket,
        so the reply reaches the risk manager after the reports it covers."""
        with self.store.lock, self._pub_lock:  # the store's lock first: see ``_publish_first``
            if self._pub is not None:
                self._answer_sync(req, self._pub)

    def _answer_sync(self, req: SyncRequest, pub: Publisher) -> None:
        replayed_to = head = self.store.head()
        if req.since >= 0:
            replayed_to = req.since
            for report in self.store.reports_since(req.since, SYNC_BATCH):
                pub.publish(report)
                replayed_to = report.report_seq
            MESSAGES_OUT.labels(SERVICE, "exec").inc(max(0, replayed_to - req.since))
        unknown = sorted(set(req.open) - self.store.known(list(req.open)))
        pub.publish(SyncReply(request_id=req.request_id, head=head, replayed_to=replayed_to, unknown=unknown))
        MESSAGES_OUT.labels(SERVICE, "execsync").inc()

    def _publish_first(self, report: ExecutionReport) -> None:
        """Called by ``store.save`` before the transaction of a report the broker's state
        backs, under the store's lock: publish it now if it is the next one (else the catch-up
        after the commit sends it in order). Lock order everywhere: store, then socket. Never
        raises: a failed send leaves the report to the catch-up, the commit goes on."""
        with self._pub_lock:
            if self._pub is None or report.prev_seq != self._published:
                return
            try:
                self._pub.publish(report)
            except zmq.ZMQError as exc:
                log.error("report %d not published live (%s); the outbox sends it", report.report_seq, exc)
                return
            MESSAGES_OUT.labels(SERVICE, "exec").inc()
            self._published = report.report_seq

    def _publish_outbox(self, committed: ExecutionReport | None = None) -> None:
        """Publish the outbox after what was published live, in order: ``committed`` (just
        written) as it is when it is the next one, else from the store (another thread's
        report came first, or none is given). Before the socket exists and after it closed,
        reports stay in the outbox for the next start or a resync."""
        if self._published >= (self._head if committed is None else committed.report_seq):
            return  # nothing new; unlocked read: whoever raises ``_head`` calls this after it
        with self.store.lock, self._pub_lock:
            pub = self._pub
            if pub is None:
                return
            if committed is not None and committed.prev_seq == self._published:
                pub.publish(committed)
                MESSAGES_OUT.labels(SERVICE, "exec").inc()
                self._published = committed.report_seq
            while self._published < self._head:
                batch = self.store.reports_since(self._published, SYNC_BATCH)
                if not batch:
                    return
                for report in batch:
                    pub.publish(report)
                    MESSAGES_OUT.labels(SERVICE, "exec").inc()
                self._published = batch[-1].report_seq

    def run(self, stop: threading.Event) -> int:
        bus = self.settings.bus
        http = HttpEndpoint(bus.bind_host, self.settings.execution.http_port, self.health).start()
        worker_stop = threading.Event()
        worker = threading.Thread(target=self._worker, args=(worker_stop,), name="exec-worker", daemon=True)
        stream: tuple[_Stream, threading.Thread] | None = None
        pub = sub = None
        try:
            # Bind first: intents and resync requests queue in ZeroMQ while reconciliation runs.
            pub = Publisher(bus.bind_endpoint(bus.execution), service=SERVICE, curve=self._curve(None))
            with self._pub_lock:
                self._pub = pub
            sub = Subscriber(bus.risk, [TOPIC_ORDER, TOPIC_SYNC], curve=self._curve(RISK_SERVICE))
            if not self.startup(stop):
                return 0
            worker.start()
            stream = self._start_stream()
            self.health.set_ready(True)
            log.info("execution-engine ready: %d open orders reconciled", len(self._open))
            poller = zmq.Poller()
            poller.register(sub.sock, zmq.POLLIN)
            while not stop.is_set():
                ready = dict(poller.poll(_POLL_MS))
                if sub.sock in ready:
                    self._receive(sub)
                self._publish_outbox()  # a commit whose publish failed, at the latest here
                with self._pub_lock:
                    pub.heartbeat(every=bus.heartbeat_interval_s)
            return 0
        finally:
            self.health.set_ready(False)
            worker_stop.set()
            if worker.is_alive():
                worker.join(timeout=30)
            if stream is not None:
                self._stop_stream(*stream)
            with self._pub_lock:  # a report committed from now on waits in the outbox
                self._pub = None
            for sock in (sub, pub):
                if sock is not None:
                    sock.close()
            http.stop()
            self.store.close()

    def _receive(self, sub: Subscriber) -> None:
        intents: list[OrderIntent] = []
        for _ in range(_MAX_BATCH):
            try:
                rec = sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            except WireError:
                MESSAGES_DROPPED.labels(SERVICE, "malformed").inc()
                continue
            if rec.restarted:
                PUBLISHER_RESTARTS.labels(SERVICE, RISK_SERVICE).inc()
            if isinstance(rec.msg, OrderIntent):
                MESSAGES_IN.labels(SERVICE, "order").inc()
                if rec.gap:
                    # Not lost: the risk manager replays every intent this engine does not know.
                    SEQUENCE_GAPS.labels(SERVICE, "order").inc(rec.gap)
                    log.warning("missed %d approved orders upstream; the risk manager replays them", rec.gap)
                intents.append(rec.msg)
            elif isinstance(rec.msg, SyncRequest):
                MESSAGES_IN.labels(SERVICE, "sync").inc()
                if intents:  # stored first: the answer's ``unknown`` must not list them
                    self._on_intents(intents)
                    intents = []
                self._on_sync(rec.msg)
        if intents:
            self._on_intents(intents)


def run(settings: Settings) -> int:
    setup_logging(settings.log_level, settings.log_format, SERVICE)
    stop = threading.Event()
    install_signal_handlers(stop)
    return ExecutionService(settings).run(stop)
