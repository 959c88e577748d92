"""Average-cost P&L: partial closes, flips through zero, shorts, exact decimals, daily baseline."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tradingsystem.common.money import dec
from tradingsystem.risk.positions import Position, PositionBook

D = Decimal


def test_adding_averages_and_partial_close_realizes() -> None:
    p = Position()
    p.apply_fill(D(10), D(100))
    p.apply_fill(D(30), D(104))
    assert (p.qty, p.avg_price) == (40, 103)
    assert p.apply_fill(D(-10), D(110)) == 70  # (110 - 103) * 10
    assert (p.qty, p.avg_price, p.realized) == (30, 103, 70)
    assert p.unrealized(D(100)) == -90


def test_flip_through_zero_opens_remainder_at_fill_price() -> None:
    p = Position()
    p.apply_fill(D(10), D(100))
    assert p.apply_fill(D(-25), D(90)) == -100  # closes 10 at a loss of 10 each
    assert (p.qty, p.avg_price) == (-15, 90)
    assert p.unrealized(D(80)) == 150  # short gains as price falls
    assert p.apply_fill(D(15), D(85)) == 75
    assert (p.qty, p.avg_price, p.realized) == (0, 0, -25)


def test_same_arithmetic_as_the_simulator_ledger() -> None:
    from tradingsystem.sim.ledger import Position as SimPosition

    ours, sim = Position(), SimPosition("AAPL")
    for qty, price in [
        (3, "100.01"),
        (4, "100.02"),
        (-5, "99.37"),
        (-9, "101.11"),
        (2, "100.5"),
        (5, "98.76"),
    ]:
        ours.apply_fill(D(qty), D(price))
        sim.apply(D(qty), D(price))
        assert (ours.qty, ours.avg_price, ours.realized) == (sim.qty, sim.avg_entry_price, sim.realized_pl)


def test_float_prices_are_exact_decimals() -> None:
    p = Position()
    for _ in range(3):
        p.apply_fill(dec(1.0), dec(0.1))
    p.apply_fill(dec(-3.0), dec(0.2))
    assert p.realized == D("0.3")  # floats would give 0.30000000000000004


def test_daily_pnl_roll_and_seed_baseline() -> None:
    book = PositionBook()
    book.seed("AAPL", D(10), D(100))  # yesterday's position, no price known yet
    book.mark("AAPL", D(90))  # first price: the baseline, not a loss of today
    assert book.daily_pnl() == 0 and book.unrealized() == -100
    book.mark("AAPL", D(95))
    assert book.daily_pnl() == 50
    book.apply_fill("AAPL", D(-10), D(95))
    assert (book.realized_today(), book.daily_pnl()) == (-50, 50)
    book.roll_day()
    assert book.daily_pnl() == 0 and book.realized_today() == 0 and book.realized() == -50


prices = st.decimals(min_value=D("0.01"), max_value=D("1000"), places=2)
fills = st.lists(
    st.tuples(st.integers(-50, 50).filter(bool).map(Decimal), prices),
    min_size=1,
    max_size=40,
)


@given(fills=fills, mark=prices)
def test_realized_plus_unrealized_equals_cash_flow_pnl(
    fills: list[tuple[Decimal, Decimal]], mark: Decimal
) -> None:
    """Average cost only splits P&L in time; the total must equal cash flows plus holdings at mark
    (up to the 28-digit rounding of a repeating average price)."""
    p = Position()
    cash = D(0)
    for qty, price in fills:
        p.apply_fill(qty, price)
        cash -= qty * price
    assert p.qty == sum(q for q, _ in fills)
    assert abs(p.realized + p.unrealized(mark) - (cash + p.qty * mark)) < D("1e-18")
