"""SQLite persistence survives reopening (what a restart after kill -9 sees)."""

from __future__ import annotations

from pathlib import Path

from tradingsystem.common.wire import OrderIntent, OrderStatus, Side
from tradingsystem.execution.orders import Order
from tradingsystem.execution.store import OrderStore


def _order(cid: str, side: Side = Side.BUY) -> Order:
    return Order.from_intent(OrderIntent(client_order_id=cid, symbol="AAPL", side=side, qty=5), 7)


def test_orders_fills_and_positions_survive_reopen(tmp_path: Path) -> None:
    db = tmp_path / "x" / "exec.sqlite"
    store = OrderStore(db)
    a, b = _order("a"), _order("b", Side.SELL)
    assert store.add(a) and store.add(b)
    assert not store.add(_order("a"))  # replayed intent
    _, fill = a.apply_broker("filled", 5, 10.0, "broker-a")
    store.save(a, fill, 1)
    store.save(a, fill, 1)  # the same fill twice is stored once
    b.apply_broker("partially_filled", 2, 11.0)
    store.save(b)
    store.close()

    again = OrderStore(db)
    got = again.get("a")
    assert got is not None and got.status is OrderStatus.FILLED and got.broker_order_id == "broker-a"
    assert [o.client_order_id for o in again.open_orders()] == ["b"]
    assert again.positions() == {"AAPL": 3.0}
    assert again.fill_count("a") == 1
    pending = again.get("b")
    assert pending is not None and pending.filled_qty == 2
    again.close()


def test_every_state_change_lands_in_the_outbox_with_a_durable_gap_free_sequence(tmp_path: Path) -> None:
    db = tmp_path / "exec.sqlite"
    store = OrderStore(db)
    a = _order("a")
    store.add(a)
    a.apply_broker("new", 0, None, "broker-a")
    first = store.save(a)
    _, fill = a.apply_broker("filled", 5, 10.0)
    second = store.save(a, fill, 1)
    store.close()

    again = OrderStore(db)  # a restarted engine continues the sequence
    b = _order("b")
    again.add(b)
    b.apply_broker("new", 0, None, "broker-b")
    third = again.save(b)
    assert (first.report_seq, second.report_seq, third.report_seq) == (1, 2, 3)
    assert again.head() == 3
    replay = again.reports_since(1)
    assert [(r.report_seq, r.client_order_id, r.status) for r in replay] == [
        (2, "a", OrderStatus.FILLED),
        (3, "b", OrderStatus.ACCEPTED),
    ]
    assert replay[0].last_fill_qty == 5 and replay[0].last_fill_price == 10.0
    assert again.reports_since(0, limit=1)[0].report_seq == 1
    assert again.known(["a", "zzz", "b"]) == {"a", "b"}
    again.close()


def test_a_batch_of_intents_is_stored_in_one_commit_and_replays_are_left_out(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "exec.sqlite")
    assert store.add(_order("a"))
    new = store.add_many([_order("a"), _order("b"), _order("c")])
    assert [o.client_order_id for o in new] == ["b", "c"]
    assert store.known(["a", "b", "c", "d"]) == {"a", "b", "c"}
    store.close()
