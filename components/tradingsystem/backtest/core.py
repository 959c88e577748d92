"""The backtest: historical market data through the live signal engine, the live risk engine
and the simulator's fill rule, driven by a simulated clock. No I/O.

One event (a ``wire.Trade``, ``wire.Quote`` or ``wire.Bar``, the structs the live services
exchange) is handled in the order the live pipeline sees it:

1. the broker matches the orders resting on that symbol against the event, with
   ``sim.ledger.fill_price`` (the simulator's own rule): a market order fills at the touch
   (ask/bid of a quote, the trade price, a bar's open) moved by the slippage; a limit order
   fills at the touch if it is at or through the limit, and on a bar whose range reaches the
   limit, at the limit. Fills go to the risk engine as ``ExecutionReport``s, as the execution
   engine sends them;
2. the risk engine marks the symbol (quotes and trades, as live; a bar marks at its close,
   since bar data has nothing else);
3. an event of the configured signal source (``signals.source``) goes to the signal engine;
   a signal goes to the risk engine, whose approved order rests at the broker until the
   symbol's next event. An order never fills on the event that caused it: a signal at a
   bar's close fills at the next bar's open.

The clock the risk engine reads is the event time (a bar's start time), so the order-rate
limit, the trading day of the daily-loss breaker (America/New_York) and the kill switch act
as they do live. Money is exact (``Decimal``); the equity curve is sampled as floats.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from tradingsystem.common import wire
from tradingsystem.common.config import Settings
from tradingsystem.common.money import CENT, ZERO, dec
from tradingsystem.common.wire import (
    Bar,
    ExecutionReport,
    OrderIntent,
    OrderStatus,
    Quote,
    Rejection,
    Side,
    Trade,
)
from tradingsystem.risk.engine import RiskEngine
from tradingsystem.risk.limits import Limits
from tradingsystem.risk.positions import Position
from tradingsystem.signals.engine import SignalEngine
from tradingsystem.sim.ledger import fill_price

Event = wire.Trade | wire.Quote | wire.Bar
PROGRESS_EVERY = 1 << 16  # events between progress callbacks
BROKER_REJECTED = "insufficient_buying_power"  # the simulator's refusal of a buy over cash


class OrderStyle(enum.StrEnum):
    MARKET = "market"  # as the execution engine sends them
    LIMIT = "limit"  # limit at the reference price +/- limit_offset_bps, lives one event


class Decision(enum.StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Costs:
    slippage_bps: Decimal = ZERO  # market orders only, as in the simulator
    commission_per_share: Decimal = ZERO
    commission_bps: Decimal = ZERO  # of the fill's notional
    commission_min: Decimal = ZERO  # per fill, when there is a commission at all

    def commission(self, qty: Decimal, price: Decimal) -> Decimal:
        c = qty * self.commission_per_share + qty * price * self.commission_bps / 10_000
        if c and c < self.commission_min:
            c = self.commission_min
        return c.quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class BacktestInputs:
    """Everything a run depends on besides the events; ``settings`` is the live configuration
    (symbols, ``signals`` and ``risk`` sections), so a backtest trades by the same rules."""

    settings: Settings
    initial_cash: Decimal = Decimal(100_000)
    costs: Costs = Costs()
    order_style: OrderStyle = OrderStyle.MARKET
    limit_offset_bps: Decimal = ZERO
    check_buying_power: bool = True  # refuse a buy over the cash, as the simulator does


@dataclass(frozen=True, slots=True)
class RiskDecision:
    ts_ns: int
    symbol: str
    side: Side
    qty: float
    decision: Decision
    reason: str  # the RejectReason value for a rejection, "" if approved
    client_order_id: str = ""


@dataclass(frozen=True, slots=True)
class Fill:
    ts_ns: int
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    commission: Decimal
    client_order_id: str


@dataclass(slots=True)
class RoundTrip:
    """One trade: from flat to flat (or to a flip through zero) on one symbol."""

    symbol: str
    direction: int  # +1 long, -1 short
    entry_ns: int
    entry_index: int  # event index, for bars held
    entry_qty: Decimal = ZERO
    entry_notional: Decimal = ZERO
    exit_qty: Decimal = ZERO
    exit_notional: Decimal = ZERO
    gross_pnl: Decimal = ZERO
    commission: Decimal = ZERO
    exit_ns: int | None = None
    exit_index: int | None = None

    @property
    def closed(self) -> bool:
        return self.exit_ns is not None

    @property
    def pnl(self) -> Decimal:
        return self.gross_pnl - self.commission

    @property
    def entry_price(self) -> Decimal:
        return self.entry_notional / self.entry_qty if self.entry_qty else ZERO

    @property
    def exit_price(self) -> Decimal:
        return self.exit_notional / self.exit_qty if self.exit_qty else ZERO

    @property
    def return_pct(self) -> float:
        return float(100 * self.pnl / self.entry_notional) if self.entry_notional else 0.0


@dataclass(slots=True)
class BacktestResult:
    symbols: list[str]
    initial_cash: Decimal
    cash: Decimal
    final_equity: Decimal  # cash + positions at their last price, exact
    positions: dict[str, Decimal]
    equity_ns: list[int]
    equity: list[float]
    exposed: int  # events with any open position
    events: int
    prices: dict[str, tuple[list[int], list[float]]]
    fills: list[Fill]
    trades: list[RoundTrip]
    decisions: list[RiskDecision]
    broker_rejections: int = 0
    final_risk_state: str = ""
    signals: int = 0

    @property
    def orders(self) -> list[RiskDecision]:
        return [d for d in self.decisions if d.decision is Decision.APPROVED]

    def rejections_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.decisions:
            if d.decision is Decision.REJECTED:
                out[d.reason] = out.get(d.reason, 0) + 1
        return dict(sorted(out.items()))


class SimClock:
    """The simulated clock the risk engine reads: the time of the event being handled."""

    __slots__ = ("now_ns",)

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


@dataclass(slots=True)
class _Resting:
    intent: OrderIntent
    limit: Decimal | None


@dataclass(slots=True)
class _Account:
    """Cash, positions and round trips; fills are applied by the same average-cost arithmetic
    as the risk engine's book and the simulator's ledger (``risk.positions.Position``)."""

    cash: Decimal
    positions: dict[str, Position] = field(default_factory=dict)
    open_trades: dict[str, RoundTrip] = field(default_factory=dict)
    trades: list[RoundTrip] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)

    def apply(self, fill: Fill, index: int) -> None:
        signed = fill.qty if fill.side is Side.BUY else -fill.qty
        self.cash -= signed * fill.price + fill.commission
        pos = self.positions.setdefault(fill.symbol, Position())
        old = pos.qty
        pnl = pos.apply_fill(signed, fill.price)
        self.fills.append(fill)
        self._book_trade(fill, index, old, signed, pnl)

    def _book_trade(self, fill: Fill, index: int, old: Decimal, signed: Decimal, pnl: Decimal) -> None:
        trade = self.open_trades.get(fill.symbol)
        if trade is None or old == 0:
            self._open(fill, index, abs(signed), 1 if signed > 0 else -1, fill.commission)
            return
        if (old > 0) == (signed > 0):  # adding
            trade.entry_qty += abs(signed)
            trade.entry_notional += abs(signed) * fill.price
            trade.commission += fill.commission
            return
        closed = min(abs(old), abs(signed))
        share = fill.commission * closed / abs(signed)
        trade.exit_qty += closed
        trade.exit_notional += closed * fill.price
        trade.gross_pnl += pnl
        trade.commission += share
        if abs(signed) >= abs(old):
            trade.exit_ns, trade.exit_index = fill.ts_ns, index
            del self.open_trades[fill.symbol]
            rest = abs(signed) - abs(old)
            if rest:  # flipped through zero: the rest opens the next trade
                self._open(fill, index, rest, 1 if signed > 0 else -1, fill.commission - share)

    def _open(self, fill: Fill, index: int, qty: Decimal, direction: int, commission: Decimal) -> None:
        trade = RoundTrip(fill.symbol, direction, fill.ts_ns, index)
        trade.entry_qty, trade.entry_notional, trade.commission = qty, qty * fill.price, commission
        self.open_trades[fill.symbol] = trade
        self.trades.append(trade)


def event_ts(ev: Event) -> int:
    return ev.start_ts if isinstance(ev, wire.Bar) else ev.exch_ts


_SOURCE: dict[str, type[Event]] = {"trades": wire.Trade, "quotes": wire.Quote, "bars": wire.Bar}


def run(
    events: Sequence[Event],
    inputs: BacktestInputs,
    signal_engine: SignalEngine,
    *,
    progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Run ``events`` (time-ordered) through ``signal_engine`` (built from the same settings)."""
    s = inputs.settings
    rs = s.risk
    clock = SimClock(event_ts(events[0]) if events else 0)
    risk = RiskEngine(
        Limits.from_settings(rs),
        s.symbols,
        order_qty=rs.order_qty,
        sizing=rs.sizing,
        cid_prefix=s.execution.cid_prefix,
        halted=rs.halted,
        clock=clock,
    )
    source = _SOURCE[s.signals.source]
    symbols = set(s.symbols)
    costs = inputs.costs
    slippage = costs.slippage_bps
    account = _Account(inputs.initial_cash)
    resting: dict[str, list[_Resting]] = {}
    decisions: list[RiskDecision] = []
    last: dict[str, float] = {}
    prices: dict[str, tuple[list[int], list[float]]] = {sym: ([], []) for sym in s.symbols}
    qty_f: dict[str, float] = {}  # open positions as floats, for the sampled equity curve
    equity_ns: list[int] = []
    equity: list[float] = []
    cash_f = float(account.cash)
    exposed = 0
    broker_rejections = 0
    signals = 0
    seq = 0
    offset = inputs.limit_offset_bps / 10_000

    def report(intent: OrderIntent, status: OrderStatus, fill: Fill | None = None) -> None:
        q = float(fill.qty) if fill is not None else 0.0
        risk.on_report(
            ExecutionReport(
                client_order_id=intent.client_order_id,
                symbol=intent.symbol,
                side=intent.side,
                status=status,
                qty=intent.qty,
                filled_qty=q,
                avg_fill_price=float(fill.price) if fill is not None else None,
                last_fill_qty=q,
                last_fill_price=float(fill.price) if fill is not None else None,
            )
        )

    for index, ev in enumerate(events):
        sym = ev.symbol
        if sym not in symbols:
            continue
        kind = type(ev)
        now = ev.start_ts if kind is Bar else ev.exch_ts  # type: ignore[union-attr]
        clock.now_ns = now
        # 1. the broker: orders placed on an earlier event match against this one
        book = resting.get(sym)
        if book:
            resting[sym] = []
            for order in book:
                intent = order.intent
                buy = intent.side is Side.BUY
                if isinstance(ev, Quote):
                    touch = dec(ev.ask if buy else ev.bid)
                elif isinstance(ev, Trade):
                    touch = dec(ev.price)
                else:
                    touch = dec(ev.open)
                price = fill_price(buy, touch, order.limit, slippage)
                if (
                    price is None
                    and order.limit is not None
                    and isinstance(ev, Bar)
                    and ev.low <= order.limit <= ev.high
                ):
                    price = fill_price(buy, order.limit, order.limit, slippage)  # the bar traded through it
                if price is None:
                    report(intent, OrderStatus.CANCELED)  # a limit order lives for one event
                    continue
                qty = dec(intent.qty)
                if inputs.check_buying_power and buy and qty * price > account.cash:
                    broker_rejections += 1
                    report(intent, OrderStatus.REJECTED)
                    continue
                fill = Fill(
                    now, sym, intent.side, qty, price, costs.commission(qty, price), intent.client_order_id
                )
                account.apply(fill, index)
                cash_f = float(account.cash)
                pos = account.positions[sym].qty
                if pos:
                    qty_f[sym] = float(pos)
                else:
                    qty_f.pop(sym, None)
                report(intent, OrderStatus.FILLED, fill)
        # 2. marks
        if isinstance(ev, Bar):
            px = ev.close
            risk.on_trade(Trade(symbol=sym, price=px, size=ev.volume, exch_ts=now, origin_ts=now))
        elif isinstance(ev, Trade):
            risk.on_trade(ev)
            px = ev.price
        else:
            risk.on_quote(ev)
            px = (ev.bid + ev.ask) / 2
        last[sym] = px
        ts_list, px_list = prices[sym]
        ts_list.append(now)
        px_list.append(px)
        # 3. signal -> risk -> order
        if kind is source:
            sig = signal_engine.on_tick(ev)
            if sig is not None:
                signals += 1
                seq += 1
                sig.seq, sig.ts = seq, now
                out = risk.on_signal(sig)
                if isinstance(out, Rejection):
                    decisions.append(
                        RiskDecision(now, sym, out.side, out.qty, Decision.REJECTED, out.reason.value)
                    )
                else:
                    decisions.append(
                        RiskDecision(now, sym, out.side, out.qty, Decision.APPROVED, "", out.client_order_id)
                    )
                    limit = None
                    if inputs.order_style is OrderStyle.LIMIT:
                        ref = dec(out.ref_price)
                        raw = ref * (1 + offset) if out.side is Side.BUY else ref * (1 - offset)
                        limit = raw.quantize(CENT, ROUND_HALF_UP)
                    resting.setdefault(sym, []).append(_Resting(out, limit))
        # equity, sampled after the event
        value = cash_f
        if qty_f:
            exposed += 1
            for psym, q in qty_f.items():
                value += q * last[psym]
        equity_ns.append(now)
        equity.append(value)
        if progress is not None and index % PROGRESS_EVERY == 0:
            progress(index)

    # Orders still resting when the data ends never fill.
    for book in resting.values():
        for order in book:
            report(order.intent, OrderStatus.CANCELED)
    positions = {sym: p.qty for sym, p in account.positions.items() if p.qty}
    final = account.cash + sum((q * dec(last[sym]) for sym, q in positions.items()), ZERO)
    return BacktestResult(
        symbols=list(s.symbols),
        initial_cash=inputs.initial_cash,
        cash=account.cash,
        final_equity=final,
        positions=positions,
        equity_ns=equity_ns,
        equity=equity,
        exposed=exposed,
        events=len(equity),
        prices=prices,
        fills=account.fills,
        trades=account.trades,
        decisions=decisions,
        broker_rejections=broker_rejections,
        final_risk_state=risk.state.value,
        signals=signals,
    )


def sort_events(events: Iterable[Event]) -> list[Event]:
    """Time order, stable: events with the same time keep their input order."""
    return sorted(events, key=event_ts)
