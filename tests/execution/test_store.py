"""SQLite persistence survives reopening (what a restart after kill -9 sees)."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from tradingsystem.common.wire import ExecutionReport, OrderIntent, OrderStatus, Side
from tradingsystem.execution.orders import Order
from tradingsystem.execution.store import GENERATION_SHIFT, OrderStore, needs_fsync


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


def test_every_state_change_lands_in_the_outbox_chained_and_gap_free_within_a_generation(
    tmp_path: Path,
) -> None:
    db = tmp_path / "exec.sqlite"
    store = OrderStore(db)
    base = store.generation << GENERATION_SHIFT
    a = _order("a")
    store.add(a)
    a.apply_broker("new", 0, None, "broker-a")
    first = store.save(a)
    _, fill = a.apply_broker("filled", 5, 10.0)
    second = store.save(a, fill, 1)
    store.close()
    assert [(r.report_seq, r.prev_seq) for r in (first, second)] == [(base, 0), (base + 1, base)]

    again = OrderStore(db)  # a restarted engine starts a generation; the chain goes on
    b = _order("b")
    again.add(b)
    b.apply_broker("new", 0, None, "broker-b")
    third = again.save(b)
    assert again.generation == store.generation + 1
    assert (third.report_seq, third.prev_seq) == (again.generation << GENERATION_SHIFT, base + 1)
    assert again.head() == third.report_seq
    replay = again.reports_since(first.report_seq)
    assert [(r.report_seq, r.prev_seq, r.client_order_id, r.status) for r in replay] == [
        (base + 1, base, "a", OrderStatus.FILLED),
        (third.report_seq, base + 1, "b", OrderStatus.ACCEPTED),
    ]
    assert replay[0].last_fill_qty == 5 and replay[0].last_fill_price == 10.0
    assert again.reports_since(0, limit=1)[0].report_seq == base
    assert again.known(["a", "zzz", "b"]) == {"a", "b"}
    again.close()


def test_a_report_of_an_order_the_broker_holds_is_published_by_the_store_and_not_fsynced_and_no_other(
    tmp_path: Path,
) -> None:
    store = OrderStore(tmp_path / "exec.sqlite")
    acked, refused = _order("a"), _order("b")
    store.add_many([acked, refused])
    published: list[ExecutionReport] = []
    assert _synchronous(store) == "FULL"
    acked.apply_broker("new", 0, None, "broker-a")
    store.save(acked, publish=published.append)
    assert _synchronous(store) == "NORMAL"
    refused.transition(OrderStatus.REJECTED, "broker 403")
    store.save(refused, publish=published.append)
    assert _synchronous(store) == "FULL"
    assert [r.client_order_id for r in published] == ["a"]  # the refusal leaves after its fsync
    store.close()


def test_only_orders_the_broker_holds_may_be_reported_before_their_fsync() -> None:
    pending, acked, refused, late_reject = _order("a"), _order("b"), _order("c"), _order("d")
    acked.apply_broker("filled", 5, 10.0, "broker-b")
    refused.transition(OrderStatus.REJECTED, "stale")
    late_reject.apply_broker("rejected", 0, None, "broker-d")
    assert [needs_fsync(o) for o in (pending, acked, refused, late_reject)] == [True, False, True, True]


def test_after_a_machine_crash_lost_report_numbers_are_never_used_again(tmp_path: Path) -> None:
    db = tmp_path / "exec.sqlite"
    store = OrderStore(db)
    a = _order("a")
    store.add(a)  # fsynced: what a machine crash leaves
    durable = _snapshot(store, tmp_path / "durable.sqlite")
    a.apply_broker("new", 0, None, "broker-a")
    lost = store.save(a)  # published, never fsynced
    store.close()
    _crash(db, durable)

    again = OrderStore(db)
    order = again.get("a")
    assert order is not None and order.status is OrderStatus.PENDING_SUBMIT  # looked up at start
    order.apply_broker("new", 0, None, "broker-a")
    resumed = again.save(order)
    assert resumed.report_seq > lost.report_seq and resumed.prev_seq == 0
    again.close()


def test_a_report_of_an_order_the_broker_holds_is_published_before_its_commit(tmp_path: Path) -> None:
    db = tmp_path / "exec.sqlite"
    store = OrderStore(db)
    a = _order("a")
    store.add(a)
    a.apply_broker("filled", 5, 10.0, "broker-a")
    seen: list[tuple[int, int]] = []  # (report_seq, outbox rows committed when it was published)
    report = store.save(a, publish=lambda r: seen.append((r.report_seq, _committed_reports(db))))
    assert seen == [(report.report_seq, 0)] and _committed_reports(db) == 1
    store.close()


def test_a_report_that_left_before_a_commit_that_never_happened_lends_its_number_to_no_other(
    tmp_path: Path,
) -> None:
    store = OrderStore(tmp_path / "exec.sqlite")
    a, b = _order("a"), _order("b")
    store.add_many([a, b])
    a.apply_broker("new", 0, None, "broker-a")
    left: list[int] = []

    def publish_then_die(report: ExecutionReport) -> None:
        left.append(report.report_seq)
        raise KeyboardInterrupt  # the process stops between the publish and the commit

    with pytest.raises(KeyboardInterrupt):
        store.save(a, publish=publish_then_die)
    b.apply_broker("new", 0, None, "broker-b")
    after = store.save(b)
    assert store.reports_since(0) == [after]
    assert after.report_seq > left[0] and after.prev_seq == 0
    store.close()


def _committed_reports(db: Path) -> int:
    """Outbox rows another connection sees: what is committed."""
    with contextlib.closing(sqlite3.connect(db)) as other:
        (n,) = other.execute("SELECT COUNT(*) FROM outbox").fetchone()
    return int(n)


def _synchronous(store: OrderStore) -> str:
    (level,) = store._db.execute("PRAGMA synchronous").fetchone()
    return {1: "NORMAL", 2: "FULL"}[level]


def _snapshot(store: OrderStore, to: Path) -> Path:
    """The store's committed content now, consistent (SQLite's backup API)."""
    with sqlite3.connect(to) as copy:
        store._db.backup(copy)
    copy.close()
    return to


def _crash(db: Path, durable: Path) -> None:
    """The store as a machine crash leaves it: what was on disk at ``durable``, no WAL."""
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(durable, db)


def test_a_batch_of_intents_is_stored_in_one_commit_and_replays_are_left_out(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "exec.sqlite")
    assert store.add(_order("a"))
    new = store.add_many([_order("a"), _order("b"), _order("c")])
    assert [o.client_order_id for o in new] == ["b", "c"]
    assert store.known(["a", "b", "c", "d"]) == {"a", "b", "c"}
    store.close()
