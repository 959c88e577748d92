"""The risk engine: signals in, approved orders or rejections out. Pure: no I/O, injectable clock.

States (``wire.RiskState``):

* ``ACTIVE``: every order within the limits goes out.
* ``REDUCING``: only reducing orders go out. Entered by a ``reduce`` control or, latched for
  the trading day, when the daily loss reaches ``reducing_at_loss_fraction`` of the limit.
* ``HALTED``: nothing goes out, not even reducing orders. Entered by the kill switch
  (``risk.halted`` in the config, or a ``halt`` control) or, latched for the trading day, by
  the circuit breaker when the daily loss reaches ``daily_loss_limit``.

``resume`` clears the kill switch, the manual reduce and both latches; the loss is then
re-evaluated at once, so resuming while still over a threshold re-enters the same state.
A new trading day (America/New_York) clears the latches but not the kill switch.

Every limit counts orders approved but not yet filled (the open-order book), as if they
all filled: a burst of approvals cannot overshoot a limit before the fills arrive. A
*reducing* order (moves the position toward zero without crossing it, even if every open
order on the same side filled) skips the exposure limits and the REDUCING state: it can
only shrink risk. It still needs a price, a sane reference price and a rate slot.
Orders are sized by the rule in the config and are rejected, never resized, when over a limit.

Reports move the book only for orders in the open-order book (approved here, or seeded from
the broker at start): a report about an order this engine never counted is already in the
positions it seeded from the broker. The service feeds reports exactly once, in the
execution-engine's durable ``report_seq`` order (``risk.resync``).

Everything a restart must not forget — kill switch set by control, manual reduce, both loss
latches, the trading day and its P&L baseline, positions, marks, open orders — is exported
as one ``PersistedState`` (``export``) plus the open orders changed since the last write
(``take_order_changes``); ``restore`` takes both back. The service writes them to its store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from zoneinfo import ZoneInfo

import msgspec

from tradingsystem.common.money import ZERO, cents, dec
from tradingsystem.common.wire import (
    Action,
    ControlAction,
    ExecutionReport,
    OrderIntent,
    OrderStatus,
    Quote,
    Rejection,
    RejectReason,
    RiskState,
    Side,
    Signal,
    Trade,
)
from tradingsystem.risk.limits import Limits, OrderRate
from tradingsystem.risk.positions import Position, PositionBook

TRADING_TZ = ZoneInfo("America/New_York")
TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
CONFIG_KILL = "config: risk.halted"  # the config's kill switch: the config decides it at each start


def marks_price(tick: Trade | Quote) -> bool:
    """Whether a tick gives a price to mark at: a positive finite trade, an uncrossed quote."""
    if isinstance(tick, Trade):
        return tick.price > 0 and math.isfinite(tick.price)
    return tick.bid > 0 and tick.ask >= tick.bid and math.isfinite(tick.ask)


def tick_price(tick: Trade | Quote) -> Decimal:
    """The price a tick marks at (one that ``marks_price``): the trade price, the quote's mid."""
    if isinstance(tick, Trade):
        return dec(tick.price)
    return (dec(tick.bid) + dec(tick.ask)) / 2


def base36(n: int) -> str:
    if n < 0:  # divmod of a negative never reaches 0: the loop below would never end
        raise ValueError(f"base36 of a negative number: {n}")
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


def next_day_start_ns(now_ns: int, tz: ZoneInfo = TRADING_TZ) -> int:
    """The next midnight in ``tz`` after ``now_ns``, in ns since the epoch."""
    day = datetime.fromtimestamp(now_ns / 1e9, tz).date() + timedelta(days=1)
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()) * 1_000_000_000


@dataclass(slots=True)
class OpenOrder:
    symbol: str
    side: Side
    qty: Decimal
    filled: Decimal = ZERO
    approved_ts: int = 0  # 0: seeded from the broker, not approved by this manager
    ref_price: float = 0.0
    reducing: bool = False
    origin_ts: int = 0

    @property
    def from_broker(self) -> bool:
        return self.approved_ts == 0

    @property
    def remaining(self) -> Decimal:
        return max(self.qty - self.filled, ZERO)


@dataclass(slots=True)
class Pending:
    """Unfilled quantity of open orders on one symbol, per side."""

    buy: Decimal = ZERO
    sell: Decimal = ZERO

    def add(self, side: Side, qty: Decimal) -> None:
        if side is Side.BUY:
            self.buy += qty
        else:
            self.sell += qty


class PersistedPosition(msgspec.Struct, array_like=True, frozen=True):
    qty: Decimal
    avg_price: Decimal
    realized: Decimal


class PersistedOrder(msgspec.Struct, array_like=True, frozen=True):
    symbol: str
    side: Side
    qty: Decimal
    filled: Decimal
    approved_ts: int
    ref_price: float
    reducing: bool
    origin_ts: int


class PersistedState(msgspec.Struct, frozen=True, kw_only=True):
    """What a restarted risk manager must not forget (decimals are kept exact), but the open
    orders: those are kept one row each (``PersistedOrder``), written as they change, so an
    approval costs one small row however many orders are open."""

    next_roll_ns: int
    kill: str | None = None  # set by control; the config's kill switch is re-read at start
    manual_reduce: str | None = None
    breaker: str | None = None
    loss_reducing: str | None = None
    realized_at_day_start: Decimal = ZERO
    baseline: dict[str, Decimal] = {}
    baseline_pending: list[str] = []
    marks: dict[str, Decimal] = {}
    positions: dict[str, PersistedPosition] = {}


def _persisted(o: OpenOrder) -> PersistedOrder:
    return PersistedOrder(
        o.symbol, o.side, o.qty, o.filled, o.approved_ts, o.ref_price, o.reducing, o.origin_ts
    )


class RiskEngine:
    def __init__(
        self,
        limits: Limits,
        symbols: Iterable[str],
        *,
        order_qty: float,
        sizing: str = "strength",
        cid_prefix: str = "ts",
        halted: bool = False,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.limits = limits
        self.symbols = frozenset(symbols)
        self.book = PositionBook()
        self.open_orders: dict[str, OpenOrder] = {}
        self._changed_orders: set[str] = set()  # cids added, filled or removed since last taken
        self.pending: dict[str, Pending] = {}
        self._order_qty = dec(order_qty)
        self._sizing = sizing
        self._cid_prefix = cid_prefix
        self._clock = clock
        self._rate = OrderRate(limits.max_orders_per_minute)
        self._seen_cids: set[str] = set()
        # State inputs; ``state`` is derived from them so it can never disagree with them.
        self._kill: str | None = CONFIG_KILL if halted else None
        self._kill_from_config = halted  # the configuration decides it at each start: not persisted
        # Wall-clock ns at which this process engaged the kill switch: the halt latency of
        # ``spec.halted`` is measured against it (docs/kind.md).
        self._kill_since_ns: int | None = clock() if halted else None
        self._manual_reduce: str | None = None
        self._breaker: str | None = None
        self._loss_reducing: str | None = None
        self._next_roll_ns = next_day_start_ns(clock())

    # --- state ------------------------------------------------------------------------
    @property
    def state(self) -> RiskState:
        if self._kill or self._breaker:
            return RiskState.HALTED
        if self._manual_reduce or self._loss_reducing:
            return RiskState.REDUCING
        return RiskState.ACTIVE

    @property
    def state_reason(self) -> str:
        return self._kill or self._breaker or self._manual_reduce or self._loss_reducing or ""

    @property
    def kill_switch(self) -> bool:
        return self._kill is not None

    @property
    def circuit_breaker(self) -> bool:
        return self._breaker is not None

    def control(self, action: ControlAction, reason: str = "") -> None:
        why = f"control: {reason}" if reason else "control"
        if action is ControlAction.HALT or action is ControlAction.CONFIG_HALT:
            if self._kill is None:
                self._kill_since_ns = self._clock()
            if action is ControlAction.HALT:
                self._kill, self._kill_from_config = why, False
            elif self._kill is None or self._kill_from_config:  # a control halt outranks it
                self._kill, self._kill_from_config = (f"config: {reason}" if reason else CONFIG_KILL), True
        elif action is ControlAction.REDUCE:
            self._manual_reduce = why
        else:
            self._kill = self._manual_reduce = self._breaker = self._loss_reducing = None
            self._kill_since_ns, self._kill_from_config = None, False
            self._check_loss()

    def _check_loss(self) -> None:
        loss = -self.book.daily_pnl()
        if loss >= self.limits.daily_loss_limit and self._breaker is None:
            self._breaker = (
                f"circuit breaker: daily loss {cents(loss)} >= limit {self.limits.daily_loss_limit}"
            )
        elif loss >= self.limits.reducing_at_loss and self._loss_reducing is None:
            self._loss_reducing = f"daily loss {cents(loss)} >= {cents(self.limits.reducing_at_loss)}"

    def _roll_day_if_due(self, now_ns: int) -> None:
        if now_ns < self._next_roll_ns:
            return
        self._next_roll_ns = next_day_start_ns(now_ns)
        self.book.roll_day()
        self._breaker = self._loss_reducing = None
        self._seen_cids.clear()

    # --- market data and fills -------------------------------------------------------
    def seed_position(self, symbol: str, qty: float, avg_price: float) -> None:
        self.book.seed(symbol, dec(qty), dec(avg_price))

    def on_quote(self, quote: Quote) -> None:
        if marks_price(quote):
            self._mark(quote.symbol, tick_price(quote))

    def on_trade(self, trade: Trade) -> None:
        if marks_price(trade):
            self._mark(trade.symbol, tick_price(trade))

    def on_ticks(self, ticks: Iterable[Trade | Quote]) -> None:
        """Mark each symbol once, at the last tick of ``ticks`` that has a price: the marks that
        feeding them one by one leaves, for one ``Decimal`` conversion and one loss check per
        symbol instead of one per tick (the service hands over what one wake-up drained)."""
        last: dict[str, Trade | Quote] = {}
        for tick in ticks:
            if marks_price(tick):
                last[tick.symbol] = tick
        for symbol, tick in last.items():
            self._mark(symbol, tick_price(tick))

    def _mark(self, symbol: str, price: Decimal) -> None:
        self._roll_day_if_due(self._clock())
        self.book.mark(symbol, price)
        if self.book.qty(symbol):
            self._check_loss()

    def seed_open_order(self, cid: str, symbol: str, side: Side, qty: float, filled: float) -> None:
        """Count an order the broker holds open (start-up), unless it is already counted."""
        if cid in self.open_orders:
            return
        self.open_orders[cid] = OpenOrder(symbol, side, dec(qty), dec(filled))
        self._changed_orders.add(cid)
        self.pending.setdefault(symbol, Pending()).add(side, max(dec(qty) - dec(filled), ZERO))

    def on_report(self, report: ExecutionReport) -> bool:
        """Apply a report; False (nothing changed) for an order not in the open-order book."""
        self._roll_day_if_due(self._clock())
        order = self.open_orders.get(report.client_order_id)
        if order is None:
            return False
        fill = dec(report.last_fill_qty)
        # A repeated report (same cumulative filled_qty) must not count its fill twice; nor a
        # fill the broker already showed when the order was seeded.
        new_fill = dec(report.filled_qty) > order.filled
        if fill > 0 and report.last_fill_price is not None and new_fill:
            fill = min(fill, dec(report.filled_qty) - order.filled)
            self.book.apply_fill(
                report.symbol, fill if report.side is Side.BUY else -fill, dec(report.last_fill_price)
            )
            self.pending[order.symbol].add(order.side, -min(fill, order.remaining))
            order.filled += fill
            self._check_loss()
        if report.status in TERMINAL:
            self.pending[order.symbol].add(order.side, -order.remaining)
            del self.open_orders[report.client_order_id]
        self._changed_orders.add(report.client_order_id)
        return True

    def release_foreign(self, cid: str, position: tuple[float, float] | None) -> None:
        """An order seeded from the broker that the broker no longer holds open and the
        execution-engine never knew: stop counting it and take the symbol's position over
        from the broker again (its fills produce no execution reports)."""
        o = self.open_orders.pop(cid, None)
        if o is None:
            return
        self._changed_orders.add(cid)
        self.pending[o.symbol].add(o.side, -o.remaining)
        qty, avg = position or (0.0, 0.0)
        self.book.seed(o.symbol, dec(qty), dec(avg))

    def replay_intent(self, cid: str) -> OrderIntent | None:
        """The intent of an order approved here, to publish again (the execution-engine lost
        or never received it; it dedupes by cid and rejects it if too old)."""
        o = self.open_orders.get(cid)
        if o is None or o.from_broker:
            return None
        return OrderIntent(
            client_order_id=cid,
            symbol=o.symbol,
            side=o.side,
            qty=float(o.qty),
            ref_price=o.ref_price,
            reducing=o.reducing,
            origin_ts=o.origin_ts,
            approved_ts=o.approved_ts,
        )

    # --- persistence ---------------------------------------------------------------------
    def export(self) -> PersistedState:
        book = self.book
        return PersistedState(
            next_roll_ns=self._next_roll_ns,
            kill=None if self._kill_from_config else self._kill,
            manual_reduce=self._manual_reduce,
            breaker=self._breaker,
            loss_reducing=self._loss_reducing,
            realized_at_day_start=book._realized_at_day_start,
            baseline=dict(book._baseline),
            baseline_pending=sorted(book._baseline_pending),
            marks=dict(book.marks),
            positions={
                s: PersistedPosition(p.qty, p.avg_price, p.realized) for s, p in book.positions.items()
            },
        )

    def take_order_changes(self) -> tuple[dict[str, PersistedOrder], list[str]]:
        """Open orders added or changed, and ids of orders closed, since the last call."""
        upserts: dict[str, PersistedOrder] = {}
        closed: list[str] = []
        for cid in self._changed_orders:
            o = self.open_orders.get(cid)
            if o is None:
                closed.append(cid)
            else:
                upserts[cid] = _persisted(o)
        self._changed_orders.clear()
        return upserts, closed

    def reservations(self, intents: Iterable[OrderIntent]) -> dict[str, PersistedOrder]:
        """The open orders of just-approved ``intents``, as stored (the journal's records)."""
        return {i.client_order_id: _persisted(self.open_orders[i.client_order_id]) for i in intents}

    def restore(self, p: PersistedState, open_orders: dict[str, PersistedOrder]) -> None:
        """Take over a state written by an earlier process; a new trading day since then rolls
        (latches and today's baseline clear; a control kill switch stays)."""
        if p.kill is not None:
            if self._kill is None:
                self._kill_since_ns = self._clock()
            self._kill, self._kill_from_config = p.kill, False
        self._manual_reduce = p.manual_reduce
        self._breaker = p.breaker
        self._loss_reducing = p.loss_reducing
        self._next_roll_ns = p.next_roll_ns
        book = self.book
        book.positions = {s: Position(q.qty, q.avg_price, q.realized) for s, q in p.positions.items()}
        book.marks = dict(p.marks)
        book._realized_at_day_start = p.realized_at_day_start
        book._baseline = dict(p.baseline)
        book._baseline_pending = set(p.baseline_pending)
        self.open_orders = {}
        self.pending = {}
        for cid, o in open_orders.items():
            self.open_orders[cid] = OpenOrder(
                o.symbol, o.side, o.qty, o.filled, o.approved_ts, o.ref_price, o.reducing, o.origin_ts
            )
            self.pending.setdefault(o.symbol, Pending()).add(o.side, max(o.qty - o.filled, ZERO))
        self._roll_day_if_due(self._clock())

    # --- decisions ---------------------------------------------------------------------
    def on_signal(self, sig: Signal) -> OrderIntent | Rejection:
        now = self._clock()
        self._roll_day_if_due(now)
        symbol = sig.symbol
        side, qty = self._size(sig)

        def reject(reason: RejectReason, detail: str = "") -> Rejection:
            return Rejection(
                symbol=symbol,
                side=side,
                qty=float(qty),
                reason=reason,
                detail=detail,
                origin_ts=sig.origin_ts,
            )

        if symbol not in self.symbols:
            return reject(RejectReason.UNKNOWN_SYMBOL)
        if min(sig.origin_ts, sig.ts, sig.seq) < 0:  # they make up the client_order_id
            return reject(RejectReason.BAD_SIGNAL, f"origin_ts={sig.origin_ts} ts={sig.ts} seq={sig.seq}")
        if self.state is RiskState.HALTED:
            return reject(
                RejectReason.HALTED if self._kill else RejectReason.DAILY_LOSS_LIMIT, self.state_reason
            )
        if qty <= 0:
            return reject(RejectReason.ZERO_QTY)
        ref = self.book.marks.get(symbol)
        if ref is None:
            return reject(RejectReason.NO_QUOTE)
        if (
            not (math.isfinite(sig.price) and sig.price > 0)
            or abs(dec(sig.price) - ref) > ref * self.limits.price_band
        ):
            return reject(RejectReason.PRICE_BAND, f"signal price {sig.price} vs market {ref}")
        cid = f"{self._cid_prefix}-{symbol}-{base36(sig.origin_ts or sig.ts)}-{base36(sig.seq)}"
        if cid in self._seen_cids or cid in self.open_orders:
            return reject(RejectReason.DUPLICATE, cid)
        reducing = self.is_reducing(symbol, side, qty)
        if not reducing:
            if self.state is RiskState.REDUCING:
                return reject(RejectReason.REDUCING_ONLY, self.state_reason)
            breach = self._limit_breach(symbol, side, qty, ref)
            if breach is not None:
                return reject(*breach)
        if not self._rate.allows(now):
            return reject(RejectReason.ORDER_RATE, f"{self.limits.max_orders_per_minute}/min")
        self._rate.record(now)
        self._seen_cids.add(cid)
        self.open_orders[cid] = OpenOrder(
            symbol,
            side,
            qty,
            approved_ts=now,
            ref_price=float(ref),
            reducing=reducing,
            origin_ts=sig.origin_ts,
        )
        self.pending.setdefault(symbol, Pending()).add(side, qty)
        self._changed_orders.add(cid)
        return OrderIntent(
            client_order_id=cid,
            symbol=symbol,
            side=side,
            qty=float(qty),
            ref_price=float(ref),
            reducing=reducing,
            origin_ts=sig.origin_ts,
            approved_ts=now,
        )

    def _size(self, sig: Signal) -> tuple[Side, Decimal]:
        """The intended order of a signal: FLAT closes what is not already being closed."""
        if sig.action is Action.FLAT:
            pos = self.book.qty(sig.symbol)
            pend = self.pending.get(sig.symbol, Pending())
            if pos > 0:
                return Side.SELL, max(pos - pend.sell, ZERO)
            return Side.BUY, max(-pos - pend.buy, ZERO)
        side = Side.BUY if sig.action is Action.BUY else Side.SELL
        if self._sizing == "fixed":
            return side, self._order_qty
        strength = sig.strength if math.isfinite(sig.strength) else 0.0
        scaled = self._order_qty * dec(min(max(strength, 0.0), 1.0))
        return side, scaled.to_integral_value(rounding=ROUND_FLOOR)  # whole shares

    def is_reducing(self, symbol: str, side: Side, qty: Decimal) -> bool:
        """Toward zero without crossing it, even if every open order on this side filled."""
        pos = self.book.qty(symbol)
        pend = self.pending.get(symbol, Pending())
        if side is Side.SELL:
            return pos > 0 and qty <= pos - pend.sell
        return pos < 0 and qty <= -pos - pend.buy

    def worst_case_qty(self, symbol: str) -> Decimal:
        """Largest |position| reachable if any subset of the open orders fills."""
        pos = self.book.qty(symbol)
        pend = self.pending.get(symbol, Pending())
        return max(abs(pos + pend.buy), abs(pos - pend.sell))

    def exposure_price(self, symbol: str) -> Decimal:
        mark = self.book.marks.get(symbol)
        if mark is not None:
            return mark
        pos = self.book.positions.get(symbol)  # seeded from the broker, no price yet
        return pos.avg_price if pos is not None else ZERO

    def _worst_cases(self) -> dict[str, Decimal]:
        """``worst_case_qty`` of every symbol at risk (non-zero), each computed once."""
        out = {}
        for s in self.book.positions.keys() | self.pending.keys():
            q = self.worst_case_qty(s)
            if q:
                out[s] = q
        return out

    def worst_case_gross(self, worst: dict[str, Decimal] | None = None) -> Decimal:
        cases = self._worst_cases() if worst is None else worst
        return sum((q * self.exposure_price(s) for s, q in cases.items()), ZERO)

    def _limit_breach(
        self, symbol: str, side: Side, qty: Decimal, ref: Decimal
    ) -> tuple[RejectReason, str] | None:
        lim = self.limits
        if qty > lim.max_order_qty:
            return RejectReason.MAX_ORDER_QTY, f"{qty} > {lim.max_order_qty}"
        notional = qty * ref
        if notional > lim.max_order_notional:
            return RejectReason.MAX_ORDER_NOTIONAL, f"{cents(notional)} > {lim.max_order_notional}"
        pos = self.book.qty(symbol)
        pend = self.pending.get(symbol, Pending())
        buy, sell = (qty, ZERO) if side is Side.BUY else (ZERO, qty)
        after = max(abs(pos + pend.buy + buy), abs(pos - pend.sell - sell))
        if after > lim.max_position_qty:
            return RejectReason.MAX_POSITION, f"worst case {after} > {lim.max_position_qty}"
        worst = self._worst_cases()
        if symbol not in worst and len(worst) + 1 > lim.max_open_positions:
            return RejectReason.MAX_OPEN_POSITIONS, f"{len(worst)} open"
        gross = self.worst_case_gross(worst) + (after - worst.get(symbol, ZERO)) * ref
        if gross > lim.max_gross_exposure:
            return RejectReason.MAX_GROSS_EXPOSURE, f"worst case {cents(gross)} > {lim.max_gross_exposure}"
        return None

    # --- reporting ---------------------------------------------------------------------
    def gross_exposure(self) -> Decimal:
        """Filled positions only, at the last price (the exported gauge)."""
        return sum(
            (abs(p.qty) * self.exposure_price(s) for s, p in self.book.positions.items() if p.qty), ZERO
        )

    def snapshot(self) -> dict[str, object]:
        realized, unrealized = self.book.realized(), self.book.unrealized()
        return {
            "state": self.state.value,
            "reason": self.state_reason,
            "kill_switch": self.kill_switch,
            # Epoch seconds at which this process engaged the kill switch (None: not engaged).
            "kill_switch_since": None if self._kill_since_ns is None else self._kill_since_ns / 1e9,
            "circuit_breaker": self.circuit_breaker,
            "positions": self.book.snapshot(),
            "marks": {s: float(p) for s, p in sorted(self.book.marks.items())},
            "pnl": {
                "realized": float(cents(realized)),
                "realized_today": float(cents(self.book.realized_today())),
                "unrealized": float(cents(unrealized)),
                "daily": float(cents(self.book.daily_pnl())),
            },
            "gross_exposure": float(cents(self.gross_exposure())),
            "worst_case_gross_exposure": float(cents(self.worst_case_gross())),
            "open_orders": len(self.open_orders),
            "open_order_ids": sorted(self.open_orders),
            "limits": self.limits.as_dict(),
        }
