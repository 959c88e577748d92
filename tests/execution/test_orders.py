"""Order state machine and idempotent fill accounting."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradingsystem.common.wire import OrderIntent, OrderStatus, Side
from tradingsystem.execution.orders import IllegalTransition, Order, local_status

S = OrderStatus


def _order(qty: float = 10) -> Order:
    return Order.from_intent(OrderIntent(client_order_id="c1", symbol="AAPL", side=Side.BUY, qty=qty), 1)


def test_happy_path_with_partial_fills_reports_each_fill_once() -> None:
    o = _order()
    assert o.apply_broker("pending_new", 0, None, "b1") == (True, None)
    assert o.status is S.SUBMITTED and o.broker_order_id == "b1"
    o.apply_broker("new", 0, None, "b1")
    assert o.status is S.ACCEPTED
    changed, fill = o.apply_broker("partially_filled", 4, 100.0)
    assert changed and fill is not None and (fill.qty, fill.price) == (4, 100.0)
    changed, fill = o.apply_broker("filled", 10, 101.2)
    assert o.status is S.FILLED and o.terminal
    # the second fill's own price, recovered from the cumulative average: (10*101.2 - 4*100)/6
    assert fill is not None and fill.qty == pytest.approx(6) and fill.price == pytest.approx(102.0)


def test_duplicate_and_replayed_updates_do_not_double_count() -> None:
    o = _order()
    o.apply_broker("partially_filled", 4, 100.0)
    assert o.apply_broker("partially_filled", 4, 100.0) == (False, None)  # duplicate event
    o.apply_broker("filled", 10, 100.0)
    assert o.apply_broker("partially_filled", 4, 100.0) == (False, None)  # stale, out of order
    assert o.status is S.FILLED and o.filled_qty == 10


def test_snapshot_after_missed_events_adds_exactly_the_missing_quantity() -> None:
    o = _order()
    o.apply_broker("new", 0, None)
    _, fill = o.apply_broker("filled", 10, 50.0)  # stream was down for both partials
    assert fill is not None and fill.qty == 10 and o.status is S.FILLED


def test_pending_order_may_learn_it_already_filled() -> None:
    o = _order()
    o.apply_broker("filled", 10, 20.0, "b")
    assert o.status is S.FILLED and o.filled_qty == 10


def test_illegal_transitions() -> None:
    o = _order()
    o.apply_broker("filled", 10, 20.0)
    changed, _ = o.apply_broker("canceled", 10, 20.0)  # ignored, logged
    assert not changed and o.status is S.FILLED
    with pytest.raises(IllegalTransition):
        o.transition(S.ACCEPTED)
    p = _order()
    p.apply_broker("partially_filled", 1, 20.0)
    with pytest.raises(IllegalTransition):
        p.transition(S.REJECTED)


def test_canceled_with_partial_fill_keeps_the_fill() -> None:
    o = _order()
    o.apply_broker("partially_filled", 3, 10.0)
    o.apply_broker("canceled", 3, 10.0)
    assert o.status is S.CANCELED and o.filled_qty == 3


@pytest.mark.parametrize("terminal", ["filled", "canceled", "expired"])
def test_a_terminal_status_whose_fills_have_no_price_keeps_the_order_open_until_they_do(
    terminal: str,
) -> None:
    o = _order()
    o.apply_broker("partially_filled", 3, 10.0)
    assert o.apply_broker(terminal, 8, None) == (False, None)
    assert o.status is S.PARTIALLY_FILLED and not o.terminal and o.filled_qty == 3
    changed, fill = o.apply_broker(terminal, 8, 12.5)  # the next reconciliation's view
    assert changed and o.terminal and fill is not None and (fill.qty, fill.price) == (5, 14.0)


def test_a_terminal_status_without_fills_needs_no_price() -> None:
    o = _order()
    o.apply_broker("new", 0, None)
    assert o.apply_broker("canceled", 0, None) == (True, None) and o.status is S.CANCELED


def test_status_mapping() -> None:
    assert local_status("new", 2) is S.PARTIALLY_FILLED
    assert local_status("replaced", 0) is S.CANCELED
    with pytest.raises(ValueError):
        local_status("bogus", 0)


def test_a_fill_event_gives_its_exact_price_and_a_decimal_quantity() -> None:
    order = Order.from_intent(
        OrderIntent(client_order_id="x", symbol="AAPL", side=Side.BUY, qty=0.5), created_ns=1
    )
    _, first = order.apply_broker("partially_filled", 0.1, 190.13)
    # The cumulative average is rounded by the broker; the event says what this fill cost.
    _, second = order.apply_broker(
        "partially_filled", 0.3, 190.14, execution=(Decimal("0.2"), Decimal("190.15"))
    )
    assert first is not None and second is not None
    assert (second.qty, second.price) == (0.2, 190.15)  # not 190.145 from the averages
    assert order.filled_qty == 0.3
