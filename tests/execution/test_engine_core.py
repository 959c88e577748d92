"""The pure order-management core: the age limit, the bounded queue, reconciliation choices."""

from __future__ import annotations

from tradingsystem.common.wire import ExecRejectReason, OrderIntent, OrderStatus, Side
from tradingsystem.execution.engine import Engine, EngineLimits, ReconcileAction
from tradingsystem.execution.orders import Order

S = 1_000_000_000
T = 1_000 * S


def engine(max_age_s: int = 10, max_queued: int = 2) -> Engine:
    return Engine(EngineLimits(max_age_ns=max_age_s * S, max_queued=max_queued))


def order(
    cid: str = "a", approved_s_ago: float = 0.0, status: OrderStatus = OrderStatus.PENDING_SUBMIT
) -> Order:
    intent = OrderIntent(
        client_order_id=cid, symbol="AAPL", side=Side.BUY, qty=1, approved_ts=T - int(approved_s_ago * S)
    )
    o = Order.from_intent(intent, created_ns=T)
    o.status = status
    return o


def test_a_fresh_intent_is_queued_and_counted_open() -> None:
    e = engine()
    assert e.admit(order(), T) is None
    assert (e.queued, list(e.open)) == (1, ["a"])


def test_an_intent_older_than_the_limit_on_arrival_is_rejected_as_stale() -> None:
    assert engine().admit(order(approved_s_ago=11), T) is ExecRejectReason.STALE


def test_a_full_queue_rejects_the_next_intent() -> None:
    e = engine(max_queued=2)
    assert e.admit(order("a"), T) is None and e.admit(order("b"), T) is None
    assert e.admit(order("c"), T) is ExecRejectReason.QUEUE_FULL
    assert "c" not in e.open


def test_an_intent_that_waited_too_long_in_the_queue_is_not_sent() -> None:
    e = engine()
    o = order()
    e.admit(o, T)
    assert e.before_submit(o, T + 11 * S) is ExecRejectReason.STALE
    assert e.queued == 0


def test_the_age_counts_from_risk_approval_not_from_arrival() -> None:
    o = order(approved_s_ago=9)
    assert engine().before_submit(o, T + 2 * S) is ExecRejectReason.STALE


def test_reconciliation_choices() -> None:
    e = engine()
    assert e.reconcile_action(order(), True, T) is ReconcileAction.APPLY
    assert e.reconcile_action(order(), False, T) is ReconcileAction.PLACE
    assert e.reconcile_action(order(approved_s_ago=11), False, T) is ReconcileAction.REJECT_STALE
    # Accepted once (or proven held by a 422): it exists, however long the lookup lags.
    held = order(status=OrderStatus.SUBMITTED, approved_s_ago=3600)
    assert e.reconcile_action(held, False, T) is ReconcileAction.KEEP_LOOKING


def test_terminal_orders_are_no_longer_tracked() -> None:
    e = engine()
    o = order()
    e.track(o)
    o.status = OrderStatus.FILLED
    e.track(o)
    assert e.open == {}
