"""What a restarted risk manager gets back: the pure export/restore and the SQLite store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from risk_builders import FakeClock, make_engine, quote, report, signal

from tradingsystem.common.wire import (
    Action,
    ControlAction,
    ExecutionReport,
    OrderIntent,
    OrderStatus,
    Rejection,
    RiskState,
    Side,
)
from tradingsystem.risk.engine import RiskEngine
from tradingsystem.risk.store import RiskStore, journal_path, read_journal

BUY, SELL = Action.BUY, Action.SELL
HOUR = 3600


def approved(decision: OrderIntent | Rejection) -> OrderIntent:
    assert isinstance(decision, OrderIntent), decision
    return decision


def restarted(eng: RiskEngine, clock: FakeClock, tmp_path: Path, **risk: object) -> RiskEngine:
    """Through the real store, as a new process would: export, write, read, restore."""
    store = RiskStore(tmp_path / "risk.sqlite")
    store.save(eng.export(), 7, clock(), eng.take_order_changes(), durable=True)
    store.close()
    loaded = RiskStore(tmp_path / "risk.sqlite").load()
    assert loaded is not None and loaded[2] == 7
    fresh = make_engine(clock, **risk)
    fresh.restore(loaded[0], loaded[1])
    return fresh


def test_a_kill_switch_set_by_control_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(clock)
    eng.control(ControlAction.HALT, "desk")
    again = restarted(eng, clock, tmp_path)
    assert (again.state, again.state_reason) == (RiskState.HALTED, "control: desk")


def test_the_config_kill_switch_is_the_configs_to_decide_at_each_start(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(clock, halted=True)
    assert restarted(eng, clock, tmp_path).state is RiskState.ACTIVE


def test_the_operators_config_halt_is_in_force_at_once_and_left_to_the_config_at_the_next_start(
    tmp_path: Path,
) -> None:
    # spec.halted: the operator halts the running process, then rolls it with risk.halted: true;
    # spec.halted: false rolls it again with risk.halted: false, which must then trade.
    clock = FakeClock()
    eng = make_engine(clock)
    eng.control(ControlAction.CONFIG_HALT, "spec.halted on ns/ts")
    assert (eng.state, eng.state_reason) == (RiskState.HALTED, "config: spec.halted on ns/ts")
    assert restarted(eng, clock, tmp_path).state is RiskState.ACTIVE
    assert restarted(eng, clock, tmp_path, halted=True).state is RiskState.HALTED


def test_a_control_halt_outranks_the_config_halt_and_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(clock)
    eng.control(ControlAction.HALT, "desk")
    eng.control(ControlAction.CONFIG_HALT, "spec.halted on ns/ts")
    again = restarted(eng, clock, tmp_path)
    assert (again.state, again.state_reason) == (RiskState.HALTED, "control: desk")
    eng.control(ControlAction.RESUME)
    eng.control(ControlAction.CONFIG_HALT, "spec.halted on ns/ts")
    eng.control(ControlAction.HALT, "desk")  # and replaces it
    assert restarted(eng, clock, tmp_path).state_reason == "control: desk"


def test_a_latched_loss_breaker_survives_a_restart_on_the_same_day_only(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(clock, daily_loss_limit=100)
    eng.on_quote(quote("AAPL", 100.0))
    order = approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
    eng.on_report(report(order, 10, 100.0))
    eng.on_quote(quote("AAPL", 80.0))  # -200: breaker
    assert eng.circuit_breaker
    eng.on_quote(quote("AAPL", 100.0))  # the loss is gone; the latch is not
    again = restarted(eng, clock, tmp_path, daily_loss_limit=1000)
    assert again.state is RiskState.HALTED and again.circuit_breaker
    clock.advance(24 * HOUR)  # the next trading day clears it
    assert restarted(again, clock, tmp_path).state is RiskState.ACTIVE


def test_positions_pnl_baseline_and_open_orders_come_back_exactly(tmp_path: Path) -> None:
    clock = FakeClock()
    eng = make_engine(clock)
    eng.on_quote(quote("AAPL", 100.1))
    first = approved(eng.on_signal(signal("AAPL", BUY, 100.1)))
    eng.on_report(report(first, 3, 100.13, filled_total=3))
    open_one = approved(eng.on_signal(signal("AAPL", BUY, 100.1)))
    again = restarted(eng, clock, tmp_path)
    assert again.book.snapshot() == eng.book.snapshot()
    assert again.book.daily_pnl() == eng.book.daily_pnl()
    assert set(again.open_orders) == {first.client_order_id, open_one.client_order_id}
    assert again.pending["AAPL"].buy == eng.pending["AAPL"].buy == 17
    assert again.replay_intent(open_one.client_order_id) == open_one


def test_a_broker_open_order_is_counted_and_its_earlier_fills_not_twice() -> None:
    eng = make_engine()
    eng.on_quote(quote("AAPL", 100.0))
    eng.seed_open_order("x-1", "AAPL", Side.BUY, 10, 4)  # 4 already in the broker's position
    assert eng.pending["AAPL"].buy == 6
    done = ExecutionReport(
        client_order_id="x-1",
        symbol="AAPL",
        side=Side.BUY,
        status=OrderStatus.FILLED,
        qty=10,
        filled_qty=10,
        last_fill_qty=6,
        last_fill_price=100.0,
    )
    assert eng.on_report(done)
    assert eng.book.qty("AAPL") == 6 and eng.open_orders == {}
    assert eng.replay_intent("x-1") is None  # never replayed: not approved here


def test_a_report_for_an_order_never_counted_here_moves_nothing() -> None:
    eng = make_engine()
    stray = ExecutionReport(
        client_order_id="other",
        symbol="AAPL",
        side=Side.BUY,
        status=OrderStatus.FILLED,
        qty=5,
        filled_qty=5,
        last_fill_qty=5,
        last_fill_price=100.0,
    )
    assert not eng.on_report(stray)
    assert eng.book.qty("AAPL") == 0


def journaled(tmp_path: Path) -> set[str]:
    return {cid for _, orders in read_journal(tmp_path / "risk.sqlite") for cid in orders}


def quoted_with_store(tmp_path: Path) -> tuple[FakeClock, RiskEngine, RiskStore]:
    """An engine with AAPL quoted at 100, and a store in ``tmp_path``."""
    clock = FakeClock()
    eng = make_engine(clock)
    eng.on_quote(quote("AAPL", 100.0))
    return clock, eng, RiskStore(tmp_path / "risk.sqlite")


def reserved(eng: RiskEngine, store: RiskStore) -> OrderIntent:
    """One approval, journaled as the service does before publishing it."""
    intent = approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
    store.reserve(eng.reservations([intent]))
    return intent


def test_only_changed_open_orders_are_written_and_closed_ones_deleted(tmp_path: Path) -> None:
    clock, eng, store = quoted_with_store(tmp_path)
    a = approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
    b = approved(eng.on_signal(signal("AAPL", BUY, 100.0)))
    store.save(eng.export(), 1, clock(), eng.take_order_changes())
    eng.on_report(report(a, 10, 100.0))  # a closes
    upserts, closed = eng.take_order_changes()
    assert (upserts, closed) == ({}, [a.client_order_id])
    store.save(eng.export(), 2, clock(), (upserts, closed))
    loaded = store.load()
    store.close()
    assert loaded is not None and set(loaded[1]) == {b.client_order_id}


def test_a_reservation_published_but_not_yet_committed_comes_back_from_the_journal(tmp_path: Path) -> None:
    # The process dies between the journal write (before the intent is published) and the
    # transaction that follows: the next start has the order open, reserved and replayable.
    clock, eng, store = quoted_with_store(tmp_path)
    store.save(eng.export(), 3, clock(), eng.take_order_changes())
    a = reserved(eng, store)
    store.close()  # no save: killed before its transaction
    again = RiskStore(tmp_path / "risk.sqlite")
    loaded = again.load()
    assert loaded is not None and set(loaded[1]) == {a.client_order_id} and loaded[2] == 3
    fresh = make_engine(clock)
    fresh.restore(loaded[0], loaded[1])
    assert fresh.replay_intent(a.client_order_id) == a and fresh.pending["AAPL"].buy == 10
    assert read_journal(tmp_path / "risk.sqlite") == []  # written into the table at load
    again.close()


def test_a_save_takes_the_journaled_reservations_and_empties_the_journal(tmp_path: Path) -> None:
    clock, eng, store = quoted_with_store(tmp_path)
    a = reserved(eng, store)
    assert journaled(tmp_path) == {a.client_order_id}
    store.save(eng.export(), 1, clock(), eng.take_order_changes())
    journal = journal_path(tmp_path / "risk.sqlite")
    assert journal is not None and journal.stat().st_size == 0
    loaded = store.load()
    store.close()
    assert loaded is not None and set(loaded[1]) == {a.client_order_id}


def test_the_journal_never_brings_back_an_order_that_closed(tmp_path: Path) -> None:
    clock, eng, store = quoted_with_store(tmp_path)
    a = reserved(eng, store)
    store.save(eng.export(), 1, clock(), eng.take_order_changes())
    eng.on_report(report(a, 10, 100.0))  # filled: closed
    store.save(eng.export(), 2, clock(), eng.take_order_changes())
    store.close()
    loaded = RiskStore(tmp_path / "risk.sqlite").load()
    assert loaded is not None and loaded[1] == {}


def test_a_torn_last_journal_record_is_dropped_and_the_ones_before_it_kept(tmp_path: Path) -> None:
    # A machine crash in the middle of a write: that intent was never published.
    _, eng, store = quoted_with_store(tmp_path)
    a = reserved(eng, store)
    reserved(eng, store)
    store.close()
    journal = journal_path(tmp_path / "risk.sqlite")
    assert journal is not None
    journal.write_bytes(journal.read_bytes()[:-3])
    assert journaled(tmp_path) == {a.client_order_id}


def test_a_journal_left_behind_after_a_commit_brings_back_nothing_that_commit_held(tmp_path: Path) -> None:
    # Killed between a commit and the journal's truncation, or a machine crash that kept the
    # later commit but not the truncation: the stored record number says what is replayed.
    clock, eng, store = quoted_with_store(tmp_path)
    a = reserved(eng, store)
    journal = journal_path(tmp_path / "risk.sqlite")
    assert journal is not None
    left_behind = journal.read_bytes()
    store.save(eng.export(), 1, clock(), eng.take_order_changes())
    eng.on_report(report(a, 10, 100.0))  # filled: closed, and that commit holds it
    b = reserved(eng, store)  # and one the commit holds too, still open
    store.save(eng.export(), 2, clock(), eng.take_order_changes())
    c = reserved(eng, store)  # the journal's only record after the last commit
    left_behind += journal.read_bytes()
    store.close()
    journal.write_bytes(left_behind)
    loaded = RiskStore(tmp_path / "risk.sqlite").load()
    assert loaded is not None and set(loaded[1]) == {b.client_order_id, c.client_order_id}


def test_record_numbers_go_on_across_restarts(tmp_path: Path) -> None:
    clock, eng, store = quoted_with_store(tmp_path)
    reserved(eng, store)
    store.save(eng.export(), 1, clock(), eng.take_order_changes())
    store.close()
    again = RiskStore(tmp_path / "risk.sqlite")
    assert again.load() is not None
    later = reserved(eng, again)
    again.close()
    assert [seq for seq, _ in read_journal(tmp_path / "risk.sqlite")] == [2]
    loaded = RiskStore(tmp_path / "risk.sqlite").load()
    assert loaded is not None and later.client_order_id in loaded[1]


def test_a_state_file_from_before_the_journal_opens_and_keeps_its_state(tmp_path: Path) -> None:
    clock, eng, store = quoted_with_store(tmp_path)
    eng.control(ControlAction.HALT, "desk")
    store.save(eng.export(), 4, clock(), eng.take_order_changes(), durable=True)
    store.close()
    with sqlite3.connect(tmp_path / "risk.sqlite") as db:  # the earlier schema: no record number
        db.execute("ALTER TABLE risk_state DROP COLUMN reserved_seq")
    loaded = RiskStore(tmp_path / "risk.sqlite").load()
    assert loaded is not None and loaded[0].kill == "control: desk" and loaded[2] == 4
