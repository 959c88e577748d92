"""The engine in-process over real ZeroMQ and the real simulator: intents in, reports out."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from tradingsystem.common.bus import Publisher, Subscriber
from tradingsystem.common.config import Settings
from tradingsystem.common.wire import (
    TOPIC_EXEC,
    TOPIC_HEARTBEAT,
    ExecutionReport,
    OrderIntent,
    OrderStatus,
    Side,
    SyncReply,
    SyncRequest,
    now_ns,
)
from tradingsystem.execution.orders import Order
from tradingsystem.execution.service import ExecutionService
from tradingsystem.execution.store import OrderStore
from tradingsystem_testing import eventually
from tradingsystem_testing.sim import SimulatorThread

from .conftest import SYMBOL, ledger_orders, ledger_positions


class Harness:
    """A running engine plus the risk-side publisher and a report subscriber."""

    def __init__(self, settings: Settings) -> None:
        self.engine = ExecutionService(settings)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.engine.run, args=(self.stop,), daemon=True)
        self.risk = Publisher(settings.bus.bind_endpoint(settings.bus.risk), service="risk-manager")
        self.reports = Subscriber(settings.bus.execution, [TOPIC_EXEC, TOPIC_HEARTBEAT])
        self.thread.start()
        eventually(lambda: self.engine.health.ready, "engine ready")
        # Reports are not replayed: only trade once the report subscription is live.
        eventually(lambda: self.reports.sock.poll(50) and self.reports.recv(), "engine heartbeat")

    def send_until_report(
        self, intent: OrderIntent, done: Callable[[ExecutionReport], bool], timeout: float = 10.0
    ) -> list[ExecutionReport]:
        """Publish ``intent`` until a report satisfies ``done`` (re-sends are deduplicated by cid:
        PUB/SUB drops messages until the subscription has propagated)."""
        seen: list[ExecutionReport] = []

        def step() -> bool:
            self.risk.publish(intent)
            while self.reports.sock.poll(50):
                msg = self.reports.recv().msg
                if isinstance(msg, ExecutionReport) and msg.client_order_id == intent.client_order_id:
                    seen.append(msg)
            return any(done(r) for r in seen)

        eventually(step, f"report for {intent.client_order_id}", timeout=timeout)
        return seen

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        self.risk.close()
        self.reports.close()


@pytest.fixture
def harness(make_settings: Callable[..., Settings]) -> Iterator[Harness]:
    h = Harness(make_settings())
    yield h
    h.close()
    assert not h.thread.is_alive()


def _intent(symbol: str = SYMBOL, qty: float = 4, side: Side = Side.BUY) -> OrderIntent:
    return OrderIntent(client_order_id=f"t-{uuid.uuid4().hex[:12]}", symbol=symbol, side=side, qty=qty)


def test_market_order_fills_once_and_positions_match(harness: Harness, sim: SimulatorThread) -> None:
    intent = _intent()
    reports = harness.send_until_report(intent, lambda r: r.status is OrderStatus.FILLED)
    filled = [r for r in reports if r.status is OrderStatus.FILLED]
    assert len(filled) == 1 and filled[0].last_fill_qty == 4 and filled[0].last_fill_price
    assert filled[0].broker_order_id == ledger_orders(sim, intent.client_order_id)[0]["id"]
    # the fill also arrives on trade_updates; cumulative accounting keeps it single
    assert harness.engine.store.fill_count(intent.client_order_id) == 1
    assert harness.engine.store.positions() == ledger_positions(sim) == {SYMBOL: 4.0}


def test_broker_4xx_is_reported_rejected_with_reason(harness: Harness, sim: SimulatorThread) -> None:
    intent = _intent(symbol="NOPE")
    reports = harness.send_until_report(intent, lambda r: r.status is OrderStatus.REJECTED)
    assert "422" in reports[-1].reason
    assert ledger_orders(sim, intent.client_order_id) == []


def test_broker_faults_lose_and_duplicate_nothing(harness: Harness, sim: SimulatorThread) -> None:
    intents = [_intent(qty=1) for _ in range(4)]
    sim.faults.http_429_next = 2
    sim.faults.order_504_next = 1
    sim.faults.http_5xx_next = 1
    for intent in intents:
        harness.send_until_report(intent, lambda r: r.status is OrderStatus.FILLED)
    for intent in intents:
        assert len(ledger_orders(sim, intent.client_order_id)) == 1
    assert harness.engine.store.positions() == ledger_positions(sim) == {SYMBOL: 4.0}


def test_fills_missed_while_the_stream_was_down_come_from_reconciliation(
    harness: Harness, sim: SimulatorThread
) -> None:
    # A far-away limit order rests; the fill happens while trade_updates is disconnected.
    quote = sim.call(lambda: sim.ledger.quotes[SYMBOL])
    intent = OrderIntent(
        client_order_id=f"t-{uuid.uuid4().hex[:12]}",
        symbol=SYMBOL,
        side=Side.BUY,
        qty=2,
        order_type="limit",  # type: ignore[arg-type]
        limit_price=round(float(quote.ask) * 0.5, 2),
    )
    harness.send_until_report(intent, lambda r: r.status is OrderStatus.ACCEPTED)
    sim.disconnect("trading", clean=False)
    order_id = ledger_orders(sim, intent.client_order_id)[0]["id"]
    sim.call(
        lambda: sim.ledger._fill(sim.ledger.orders[order_id], sim.ledger.orders[order_id].qty, quote.ask, 1)
    )
    eventually(
        lambda: (o := harness.engine.store.get(intent.client_order_id)) and o.status is OrderStatus.FILLED,
        "fill via reconciliation after stream reconnect",
        timeout=15,
    )
    assert harness.engine.store.positions() == ledger_positions(sim)


def test_broker_rejection_on_trade_updates_is_reported(harness: Harness, sim: SimulatorThread) -> None:
    sim.faults.reject_next = 1
    intent = _intent()
    reports = harness.send_until_report(intent, lambda r: r.status is OrderStatus.REJECTED)
    assert reports[-1].reason and reports[-1].filled_qty == 0
    assert harness.engine.store.positions() == ledger_positions(sim) == {}


def test_stale_unplaced_order_is_not_placed_at_startup(
    make_settings: Callable[..., Settings], sim: SimulatorThread
) -> None:
    settings = make_settings(resubmit_max_age_s=5)
    store = OrderStore(settings.execution.db_path)
    stale = Order.from_intent(_intent(), created_ns=now_ns() - 60 * 10**9)
    fresh = Order.from_intent(_intent(), created_ns=now_ns())
    assert store.add(stale) and store.add(fresh)
    store.close()

    h = Harness(settings)  # ready means reconciled: both are resolved before it trades
    try:
        got_stale = h.engine.store.get(stale.client_order_id)
        got_fresh = h.engine.store.get(fresh.client_order_id)
        assert got_stale is not None and got_stale.status is OrderStatus.REJECTED
        assert got_fresh is not None and got_fresh.status is OrderStatus.FILLED
        assert ledger_orders(sim, stale.client_order_id) == []
        assert len(ledger_orders(sim, fresh.client_order_id)) == 1
    finally:
        h.close()


def test_a_resync_replays_the_outbox_in_order_and_names_unknown_orders(harness: Harness) -> None:
    intent = _intent()
    harness.send_until_report(intent, lambda r: r.status is OrderStatus.FILLED)
    head = harness.engine.store.head()
    request = SyncRequest(request_id=7, since=0, open=[intent.client_order_id, "never-sent"])
    replayed: list[ExecutionReport] = []
    replies: list[SyncReply] = []

    def answered() -> bool:  # re-sent until it arrives (PUB/SUB joins late)
        harness.risk.publish(request)
        while harness.reports.sock.poll(50):
            msg = harness.reports.recv().msg
            if isinstance(msg, SyncReply) and msg.request_id == 7:
                replies.append(msg)
            elif isinstance(msg, ExecutionReport) and not replies:
                replayed.append(msg)
        return bool(replies)

    eventually(answered, "the resync answer")
    reply = replies[0]
    assert (reply.head, reply.replayed_to, reply.unknown) == (head, head, ["never-sent"])
    # The last full replay before the answer is the whole outbox, in order, one chain.
    outbox = [(r.report_seq, r.prev_seq) for r in harness.engine.store.reports_since(0)]
    assert [(r.report_seq, r.prev_seq) for r in replayed][-len(outbox) :] == outbox
    assert [prev for _, prev in outbox] == [0] + [seq for seq, _ in outbox[:-1]]


def test_reports_written_by_both_threads_leave_once_each_in_outbox_order(
    make_settings: Callable[..., Settings],
) -> None:
    """The worker publishes fills inside their transaction and the bus thread publishes its
    queue-full rejections after their fsync; the live stream is still the outbox, in order."""
    h = Harness(make_settings(max_queued_intents=1))
    try:
        h.send_until_report(_intent(), lambda r: r.status is OrderStatus.FILLED)  # subscribed both ways
        start = h.engine.store.head()
        burst = [_intent() for _ in range(30)]
        for intent in burst:  # one bus batch: the bus thread rejects what the queue cannot take
            h.risk.publish(intent)
        live: list[ExecutionReport] = []

        def settled() -> bool:
            while h.reports.sock.poll(50):
                msg = h.reports.recv().msg
                if isinstance(msg, ExecutionReport) and msg.report_seq > start:
                    live.append(msg)
            done = {r.client_order_id for r in live if r.status in (OrderStatus.FILLED, OrderStatus.REJECTED)}
            return done >= {i.client_order_id for i in burst}

        eventually(settled, "a final report for every order of the burst")
        outbox = [(r.report_seq, r.prev_seq) for r in h.engine.store.reports_since(start)]
        assert [(r.report_seq, r.prev_seq) for r in live] == outbox
        assert {r.status for r in live} >= {OrderStatus.FILLED, OrderStatus.REJECTED}
    finally:
        h.close()
