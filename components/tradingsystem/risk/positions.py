"""Average-cost positions and P&L, per symbol, in exact decimal arithmetic.

Prices and quantities arrive as floats on the wire; they are converted through their shortest
repr (``Decimal(str(x))``), so ``190.1`` is exactly ``190.1`` and sums of fills match a ledger
kept by the broker (or the simulator) to the cent, with no float drift over a day. The average price is a 28-digit decimal (the
default context), so a repeating average such as 100/3 carries a rounding below 1e-20 dollars.

Average cost: buying into a long (or selling into a short) moves the average price; reducing
realizes ``(fill - avg) * qty`` for longs (``(avg - fill) * qty`` for shorts) and keeps the
average; a fill that goes through zero closes the old side and opens the rest at the fill price.

Daily P&L is the change of total P&L (realized + unrealized) since the start of the trading
day: ``realized_today + sum(unrealized_now - unrealized_at_day_start)``. A symbol whose price
was unknown at the start of the day (or when it was seeded from the broker) takes its
baseline at its first price, so yesterday's loss is never counted as today's.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tradingsystem.common.money import ZERO


@dataclass(slots=True)
class Position:
    qty: Decimal = ZERO  # signed: > 0 long, < 0 short
    avg_price: Decimal = ZERO  # average entry price of the open quantity
    realized: Decimal = ZERO  # since the book was created

    def apply_fill(self, signed_qty: Decimal, price: Decimal) -> Decimal:
        """Apply a fill (buy > 0, sell < 0); return the P&L it realized.

        The same arithmetic as the simulator's ledger (``sim/ledger.py``), step for step, so
        the two agree to the last digit rather than only to the cent.
        """
        old = self.qty
        new = old + signed_qty
        pnl = ZERO
        if old == 0 or (old > 0) == (signed_qty > 0):  # opening or adding
            self.avg_price = (abs(old) * self.avg_price + abs(signed_qty) * price) / abs(new)
        else:
            closed = min(abs(old), abs(signed_qty))
            pnl = (price - self.avg_price) * closed * (1 if old > 0 else -1)
            self.realized += pnl
            if new == 0:
                self.avg_price = ZERO
            elif (new > 0) != (old > 0):  # flipped through zero: the remainder opens at the fill price
                self.avg_price = price
        self.qty = new
        return pnl

    def unrealized(self, mark: Decimal | None) -> Decimal:
        if mark is None or self.qty == 0:
            return ZERO
        return (mark - self.avg_price) * self.qty


class PositionBook:
    """All positions, their last prices and the trading-day P&L baseline."""

    def __init__(self) -> None:
        self.positions: dict[str, Position] = {}
        self.marks: dict[str, Decimal] = {}
        self._realized_at_day_start = ZERO
        self._baseline: dict[str, Decimal] = {}  # unrealized at day start, per symbol
        self._baseline_pending: set[str] = set()  # held at day start without a known price

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position()
        return pos

    def qty(self, symbol: str) -> Decimal:
        pos = self.positions.get(symbol)
        return pos.qty if pos is not None else ZERO

    def seed(self, symbol: str, qty: Decimal, avg_price: Decimal) -> None:
        """Take a position over from the broker (start-up reconciliation)."""
        self.positions[symbol] = Position(qty=qty, avg_price=avg_price if qty else ZERO)
        self._take_baseline(symbol)

    def apply_fill(self, symbol: str, signed_qty: Decimal, price: Decimal) -> Decimal:
        return self.position(symbol).apply_fill(signed_qty, price)

    def mark(self, symbol: str, price: Decimal) -> None:
        self.marks[symbol] = price
        if symbol in self._baseline_pending:
            self._baseline_pending.discard(symbol)
            self._baseline[symbol] = self.unrealized(symbol)

    def roll_day(self) -> None:
        """Start a new trading day: today's P&L restarts from zero."""
        self._realized_at_day_start = self.realized()
        self._baseline.clear()
        self._baseline_pending.clear()
        for symbol in self.positions:
            self._take_baseline(symbol)

    def _take_baseline(self, symbol: str) -> None:
        if self.qty(symbol) != 0 and symbol not in self.marks:
            self._baseline_pending.add(symbol)
            self._baseline[symbol] = ZERO
        else:
            self._baseline_pending.discard(symbol)
            self._baseline[symbol] = self.unrealized(symbol)

    def unrealized(self, symbol: str | None = None) -> Decimal:
        if symbol is not None:
            pos = self.positions.get(symbol)
            return pos.unrealized(self.marks.get(symbol)) if pos is not None else ZERO
        return sum((p.unrealized(self.marks.get(s)) for s, p in self.positions.items()), ZERO)

    def realized(self) -> Decimal:
        return sum((p.realized for p in self.positions.values()), ZERO)

    def realized_today(self) -> Decimal:
        return self.realized() - self._realized_at_day_start

    def daily_pnl(self) -> Decimal:
        unrealized_change = sum(
            (
                self.unrealized(s) - self._baseline.get(s, ZERO)
                for s in self.positions
                if s not in self._baseline_pending
            ),
            ZERO,
        )
        return self.realized_today() + unrealized_change

    def snapshot(self) -> dict[str, dict[str, float | None]]:
        """JSON-able view, not rounded: the float of the same decimal the simulator's ledger holds,
        so ``float(ledger_string) == snapshot_value`` exactly."""
        out: dict[str, dict[str, float | None]] = {}
        for symbol, pos in sorted(self.positions.items()):
            mark = self.marks.get(symbol)
            out[symbol] = {
                "qty": float(pos.qty),
                "avg_price": float(pos.avg_price),
                "mark": float(mark) if mark is not None else None,
                "realized": float(pos.realized),
                "unrealized": float(self.unrealized(symbol)),
            }
        return out
