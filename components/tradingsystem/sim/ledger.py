"""The simulated broker account: cash, positions, orders, fills, and order matching.

Pure and synchronous (no I/O, no asyncio) so it is unit-testable and so the server can apply
a REST call, a quote or a clock step atomically. All money is ``Decimal``: quotes are in
cents, so cash, fills and cost bases are exact and a trading service's books can be compared
to the cent.

Matching follows Alpaca's paper-trading rules (the pure fill model is ``advance_stop`` +
``execution``, reusable with a quote built from a bar): market orders fill at the quote (buy
at the ask, sell at the bid, plus optional ``slippage_bps``); limit orders fill at the quote
once it crosses the limit; stop orders trigger when the quote reaches the stop and then act
as market (stop) or limit (stop_limit) orders; trailing stops follow the best price (``hwm``)
at ``trail_price`` or ``trail_percent`` from it. With ``partial_fills`` a quote's displayed
size is consumed by the orders it fills, so large orders fill over several quotes.
``ioc``/``fok`` are decided on the quote at submission; ``day``/``opg``/``cls`` follow the
session model (``session.py``). Order classes bracket/oco/oto link a parent and its exit legs
(``held`` until the parent fills); a fill of one exit leg or a cancel of any member cancels the
others. Buying power follows ``account.py``.

Every state change is reported to ``listeners`` as a ``TradeEvent`` (the trade_updates stream).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from dataclasses import replace as copy_order
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

from tradingsystem.common.money import CENT, positive
from tradingsystem.common.money import alpaca_str as num
from tradingsystem.sim import account as acct
from tradingsystem.sim.account import AccountConfig
from tradingsystem.sim.session import (
    SessionModel,
    clock,
    day_end_ns,
    recent_days,
    session_open_ns,
    trading_day,
)

# Alpaca's error codes (numeric code + HTTP status are the stable contract).
CODE_INVALID = 40010001
CODE_FORBIDDEN = 40310000
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000

SIDES = ("buy", "sell")
TYPES = ("market", "limit", "stop", "stop_limit", "trailing_stop")
TIFS = ("day", "gtc", "opg", "cls", "ioc", "fok")
CLASSES = ("simple", "bracket", "oco", "oto")
STOP_TYPES = ("stop", "stop_limit", "trailing_stop")
WORKING_STATUSES = ("new", "partially_filled")  # matched against quotes
OPEN_STATUSES = (*WORKING_STATUSES, "held")  # held: an exit leg waiting for its parent's fill
MAX_CID_LEN = 128
DAYTRADE_WINDOW = 5  # trading days counted in daytrade_count


class SimError(Exception):
    """A broker-side refusal, rendered by the REST layer as ``{"code", "message"}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def unsupported(feature: str) -> SimError:
    """What everything the simulator does not model answers: a 422 naming the feature."""
    return SimError(422, CODE_INVALID, f"{feature} is not supported by the simulator")


def rfc3339(ns: int | None) -> str | None:
    if ns is None:
        return None
    dt = datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(microsecond=(ns // 1000) % 1_000_000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class Quote:
    bid: Decimal
    bid_size: int
    ask: Decimal
    ask_size: int

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@dataclass(slots=True)
class Order:
    id: str
    client_order_id: str
    symbol: str
    asset_id: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    created_ns: int
    status: str = "new"
    updated_ns: int = 0
    filled_qty: Decimal = Decimal(0)
    filled_notional: Decimal = Decimal(0)
    filled_ns: int | None = None
    canceled_ns: int | None = None
    failed_ns: int | None = None
    expired_ns: int | None = None
    replaced_ns: int | None = None
    triggered: bool = False  # stop reached (stop/stop_limit/trailing_stop)
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None  # trailing stop: best price seen (highest bid sold, lowest ask bought)
    order_class: str = "simple"
    parent_id: str | None = None  # set on exit legs
    legs: list[str] = field(default_factory=list)  # set on the parent
    replaces: str | None = None
    replaced_by: str | None = None
    expires_ns: int | None = None  # day/cls: the session close; opg: after the first quote of the open
    opens_ns: int | None = None  # opg: the session open it executes at

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_working(self) -> bool:
        return self.status in WORKING_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def filled_avg_price(self) -> Decimal | None:
        if not self.filled_qty:
            return None
        return (self.filled_notional / self.filled_qty).quantize(Decimal("0.0001"))

    def to_json(self, legs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Alpaca's ``Order`` entity (``legs`` rendered by the ledger when nested)."""
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": rfc3339(self.created_ns),
            "updated_at": rfc3339(self.updated_ns or self.created_ns),
            "submitted_at": rfc3339(self.created_ns),
            "filled_at": rfc3339(self.filled_ns),
            "expired_at": rfc3339(self.expired_ns),
            "canceled_at": rfc3339(self.canceled_ns),
            "failed_at": rfc3339(self.failed_ns),
            "replaced_at": rfc3339(self.replaced_ns),
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": self.asset_id,
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": num(self.qty),
            "filled_qty": num(self.filled_qty),
            "filled_avg_price": num(self.filled_avg_price),
            "order_class": self.order_class,
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "time_in_force": self.time_in_force,
            "limit_price": num(self.limit_price),
            "stop_price": num(self.stop_price),
            "status": self.status,
            "extended_hours": False,
            "legs": legs,
            "trail_percent": num(self.trail_percent),
            "trail_price": num(self.trail_price),
            "hwm": num(self.hwm),
        }


@dataclass(slots=True)
class Fill:
    execution_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    ts_ns: int
    cum_qty: Decimal = Decimal(0)
    leaves_qty: Decimal = Decimal(0)
    order_status: str = "filled"

    def to_json(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "qty": num(self.qty),
            "price": num(self.price),
            "timestamp": rfc3339(self.ts_ns),
        }

    def activity(self, account_id: str) -> dict[str, Any]:
        """Alpaca's ``FILL`` account activity (alpaca-py ``TradeActivity``)."""
        return {
            "id": activity_id(self.ts_ns, self.execution_id),
            "account_id": account_id,
            "activity_type": "FILL",
            "transaction_time": rfc3339(self.ts_ns),
            "type": "fill" if self.leaves_qty == 0 else "partial_fill",
            "price": num(self.price),
            "qty": num(self.qty),
            "side": self.side,
            "symbol": self.symbol,
            "leaves_qty": num(self.leaves_qty),
            "order_id": self.order_id,
            "cum_qty": num(self.cum_qty),
            "order_status": self.order_status,
        }


def activity_id(ts_ns: int, execution_id: str) -> str:
    """Alpaca's activity id: a sortable ``YYYYMMDDhhmmssSSS`` time, ``::``, a unique id."""
    dt = datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC)
    return f"{dt:%Y%m%d%H%M%S}{(ts_ns // 1_000_000) % 1000:03d}::{execution_id}"


@dataclass(slots=True)
class Position:
    symbol: str
    qty: Decimal = Decimal(0)  # signed: negative is short
    avg_entry_price: Decimal = Decimal(0)
    realized_pl: Decimal = Decimal(0)

    def apply(self, signed_qty: Decimal, price: Decimal) -> None:
        """Average-cost accounting: adding keeps a weighted average, reducing realizes P&L."""
        old = self.qty
        new = old + signed_qty
        if old == 0 or (old > 0) == (signed_qty > 0):
            self.avg_entry_price = (abs(old) * self.avg_entry_price + abs(signed_qty) * price) / abs(new)
        else:
            closed = min(abs(old), abs(signed_qty))
            direction = 1 if old > 0 else -1
            self.realized_pl += (price - self.avg_entry_price) * closed * direction
            if new == 0:
                self.avg_entry_price = Decimal(0)
            elif (new > 0) != (old > 0):  # crossed through flat: the rest opens at this price
                self.avg_entry_price = price
        self.qty = new


@dataclass(slots=True)
class TradeEvent:
    """One ``trade_updates`` message."""

    event: str
    order: dict[str, Any]
    ts_ns: int
    price: Decimal | None = None
    qty: Decimal | None = None
    position_qty: Decimal | None = None
    execution_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": self.event, "order": self.order, "timestamp": rfc3339(self.ts_ns)}
        if self.execution_id is not None:
            data.update(
                execution_id=self.execution_id,
                price=num(self.price),
                qty=num(self.qty),
                position_qty=num(self.position_qty),
            )
        return data


# --- the fill model: pure functions of (order, quote, config) ---------------------------
@dataclass(frozen=True, slots=True)
class FillConfig:
    partial_fills: bool = False  # a fill takes at most the displayed size still available
    slippage_bps: Decimal = Decimal(0)  # market-type fills move against the trader, whole cents


@dataclass(frozen=True, slots=True)
class StopState:
    triggered: bool
    hwm: Decimal | None
    stop_price: Decimal | None


def trail_stop(
    side: str, hwm: Decimal, trail_price: Decimal | None, trail_percent: Decimal | None
) -> Decimal:
    """The stop a trailing order sits at: ``trail`` away from the best price, in whole cents."""
    if trail_price is not None:
        return hwm - trail_price if side == "sell" else hwm + trail_price
    offset = hwm * (trail_percent or Decimal(0)) / 100
    if side == "sell":
        return (hwm - offset).quantize(CENT, ROUND_DOWN)
    return (hwm + offset).quantize(CENT, ROUND_UP)


def fill_price(buy: bool, touch: Decimal, limit: Decimal | None, slippage_bps: Decimal) -> Decimal | None:
    """The price an order fills at against ``touch``, or ``None`` if its limit is not reached.

    A limit order fills at the touch once it is at or through the limit (never worse than the
    limit); a market order fills at the touch moved against it by ``slippage_bps``, rounded to
    the cent away from the trader. Shared with the backtest (``tradingsystem.backtest``), so a
    backtest fills exactly as the simulator does.
    """
    if limit is not None:
        return None if (touch > limit if buy else touch < limit) else touch
    if not slippage_bps:
        return touch
    slip = touch * slippage_bps / 10_000
    return (touch + slip).quantize(CENT, ROUND_UP) if buy else (touch - slip).quantize(CENT, ROUND_DOWN)


def advance_stop(order: Order, quote: Quote) -> StopState:
    """The order's stop state after seeing ``quote``: trailing ``hwm``/stop moved, trigger reached."""
    buy = order.side == "buy"
    touch = quote.ask if buy else quote.bid
    hwm, stop = order.hwm, order.stop_price
    if order.type == "trailing_stop":
        if hwm is None or (touch < hwm if buy else touch > hwm):
            hwm = touch
        stop = trail_stop(order.side, hwm, order.trail_price, order.trail_percent)
    triggered = order.triggered
    if order.type in STOP_TYPES and not triggered and stop is not None:
        triggered = touch >= stop if buy else touch <= stop
    return StopState(triggered, hwm, stop)


def execution(
    order: Order, quote: Quote, shown: Decimal, config: FillConfig
) -> tuple[Decimal, Decimal] | None:
    """The (qty, price) ``quote`` fills of ``order`` (its stop state already advanced), or None.

    ``shown`` is the displayed size still available on the order's side of the quote.
    """
    if order.type in STOP_TYPES and not order.triggered:
        return None
    buy = order.side == "buy"
    price = fill_price(buy, quote.ask if buy else quote.bid, order.limit_price, config.slippage_bps)
    if price is None:
        return None
    qty = min(order.remaining, shown) if config.partial_fills else order.remaining
    if order.time_in_force == "fok" and qty < order.remaining:
        return None  # all or nothing: the caller cancels it
    return (qty, price) if qty > 0 else None


# --- request parsing ---------------------------------------------------------------------
def _decimal(body: dict[str, Any], key: str, label: str | None = None) -> Decimal | None:
    raw = body.get(key)
    name = label or key
    if raw is None or raw == "":
        return None
    try:
        return positive(raw, name)
    except ValueError as exc:
        raise SimError(422, CODE_INVALID, str(exc)) from None


def _cents(price: Decimal | None, name: str) -> Decimal | None:
    if price is not None and price != price.quantize(CENT):
        raise SimError(
            422, CODE_INVALID, f"{name}: sub-penny increment does not fulfill minimum pricing criteria"
        )
    return price


@dataclass(frozen=True, slots=True)
class Terms:
    """A validated order request (one order; legs are built from the parent's terms)."""

    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    trail_price: Decimal | None
    trail_percent: Decimal | None


def parse_terms(body: dict[str, Any], symbols: Iterable[str], session: SessionModel) -> Terms:
    """Validate one order body (Alpaca POST /v2/orders) into ``Terms``; ``SimError`` 422 otherwise."""
    symbol = str(body.get("symbol") or "").upper()
    if symbol not in symbols:
        raise SimError(422, CODE_INVALID, f'asset "{symbol}" not found')
    side, type_, tif = body.get("side"), body.get("type") or body.get("order_type"), body.get("time_in_force")
    if side not in SIDES:
        raise SimError(422, CODE_INVALID, "invalid side")
    if type_ not in TYPES:
        raise SimError(422, CODE_INVALID, f"invalid order type for the simulator: {type_}")
    if tif not in TIFS:
        raise SimError(422, CODE_INVALID, f"invalid time_in_force for the simulator: {tif}")
    if tif == "opg" and session is not SessionModel.REGULAR:
        raise unsupported(
            "time_in_force opg in the continuous session model (start it with session='regular')"
        )
    if tif in ("opg", "cls") and type_ not in ("market", "limit"):
        raise SimError(422, CODE_INVALID, f"time_in_force {tif} needs a market or limit order")
    if body.get("notional") is not None:
        raise unsupported("notional (dollar-amount) orders")
    if body.get("extended_hours") is True:
        raise unsupported("extended_hours")
    if body.get("position_intent"):
        raise unsupported("position_intent")
    qty = _decimal(body, "qty")
    if qty is None:
        raise SimError(422, CODE_INVALID, "qty is required")
    limit, stop = _decimal(body, "limit_price"), _decimal(body, "stop_price")
    trail_price, trail_percent = _decimal(body, "trail_price"), _decimal(body, "trail_percent")
    needs_limit, needs_stop = type_ in ("limit", "stop_limit"), type_ in ("stop", "stop_limit")
    if needs_limit != (limit is not None):
        raise SimError(422, CODE_INVALID, f"limit_price is {'required' if needs_limit else 'not allowed'}")
    if needs_stop != (stop is not None):
        raise SimError(422, CODE_INVALID, f"stop_price is {'required' if needs_stop else 'not allowed'}")
    if type_ == "trailing_stop":
        if (trail_price is None) == (trail_percent is None):
            raise SimError(
                422, CODE_INVALID, "trailing_stop needs exactly one of trail_price or trail_percent"
            )
        if tif not in ("day", "gtc"):
            raise SimError(422, CODE_INVALID, "trailing_stop time_in_force must be day or gtc")
        if trail_percent is not None and trail_percent >= 100:
            raise SimError(422, CODE_INVALID, "trail_percent must be < 100")
    elif trail_price is not None or trail_percent is not None:
        raise SimError(422, CODE_INVALID, "trail_price/trail_percent are only allowed for trailing_stop")
    return Terms(
        symbol,
        side,
        type_,
        tif,
        qty,
        _cents(limit, "limit_price"),
        _cents(stop, "stop_price"),
        _cents(trail_price, "trail_price"),
        trail_percent,
    )


def _leg_terms(parent: Terms, body: dict[str, Any], kind: str) -> Terms:
    """An exit leg (take_profit: limit; stop_loss: stop or stop_limit) on the opposite side."""
    raw = body.get(kind)
    if not isinstance(raw, dict):
        raise SimError(422, CODE_INVALID, f"{kind} is required")
    exit_side = "sell" if parent.side == "buy" else "buy"
    if kind == "take_profit":
        limit = _cents(_decimal(raw, "limit_price", "take_profit.limit_price"), "take_profit.limit_price")
        if limit is None:
            raise SimError(422, CODE_INVALID, "take_profit.limit_price is required")
        return Terms(
            parent.symbol, exit_side, "limit", parent.time_in_force, parent.qty, limit, None, None, None
        )
    stop = _cents(_decimal(raw, "stop_price", "stop_loss.stop_price"), "stop_loss.stop_price")
    if stop is None:
        raise SimError(422, CODE_INVALID, "stop_loss.stop_price is required")
    limit = _cents(_decimal(raw, "limit_price", "stop_loss.limit_price"), "stop_loss.limit_price")
    type_ = "stop" if limit is None else "stop_limit"
    return Terms(parent.symbol, exit_side, type_, parent.time_in_force, parent.qty, limit, stop, None, None)


# --- the ledger ------------------------------------------------------------------------
@dataclass
class Ledger:
    symbols: list[str]
    initial_cash: Decimal
    asset_ids: dict[str, str]
    partial_fills: bool = False
    slippage_bps: Decimal = Decimal(0)
    now_ns: Callable[[], int] = time.time_ns
    account_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    listeners: list[Callable[[TradeEvent], None]] = field(default_factory=list)
    account: AccountConfig = field(default_factory=AccountConfig)
    session: SessionModel = SessionModel.CONTINUOUS

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.cash = self.initial_cash
        self.positions: dict[str, Position] = {}
        self.orders: dict[str, Order] = {}
        self._live: dict[str, Order] = {}  # every order not yet known to be closed: see ``live``
        self.by_cid: dict[str, Order] = {}
        self.fills: list[Fill] = []
        self.quotes: dict[str, Quote] = {}
        self.shown: dict[str, dict[str, Decimal]] = {}  # displayed size left: symbol -> side -> qty
        self.last_price: dict[str, Decimal] = {}
        now = self.now_ns()
        self.created_ns = now
        self.last_equity = self.initial_cash
        self.next_close_ns = clock(self.session, now).next_close_ns
        self.equity_history: list[tuple[int, Decimal]] = [(now, self.initial_cash)]  # (session close, equity)
        self.daytrades: dict[str, date] = {}  # closing order id -> trading day
        self._opened: dict[str, date] = {}  # symbol -> trading day its position last opened/grew

    def live(self) -> list[Order]:
        """The open orders, oldest first, without scanning the whole history.

        Closed states are final, so an order found closed leaves the index for good.
        """
        for oid in [oid for oid, o in self._live.items() if not o.is_open]:
            del self._live[oid]
        return list(self._live.values())

    @property
    def fill_config(self) -> FillConfig:
        return FillConfig(self.partial_fills, self.slippage_bps)

    # --- queries -------------------------------------------------------------------
    def order(self, order_id: str) -> Order:
        o = self.orders.get(order_id)
        if o is None:
            raise SimError(404, CODE_NOT_FOUND, "order not found")
        return o

    def order_by_cid(self, cid: str) -> Order:
        o = self.by_cid.get(cid)
        if o is None:
            raise SimError(404, CODE_NOT_FOUND, "order not found")
        return o

    def order_json(self, order: Order, nested: bool = False) -> dict[str, Any]:
        legs = [self.orders[i].to_json() for i in order.legs] if nested and order.legs else None
        return order.to_json(legs)

    def mark(self, symbol: str) -> Decimal | None:
        q = self.quotes.get(symbol)
        return q.mid if q is not None else self.last_price.get(symbol)

    def market_value(self, p: Position) -> Decimal:
        return p.qty * (self.mark(p.symbol) or p.avg_entry_price)

    def equity(self) -> Decimal:
        return self.cash + sum((self.market_value(p) for p in self.positions.values()), Decimal(0))

    def open_positions(self) -> list[Position]:
        return [p for p in self.positions.values() if p.qty != 0]

    def gross_market_value(self) -> Decimal:
        return sum((abs(self.market_value(p)) for p in self.open_positions()), Decimal(0))

    def reserving(self, symbol: str, exclude: str | None = None) -> list[Order]:
        """The working orders of ``symbol`` that hold a position or buying power, oldest first.

        The halves of an oco pair and the two exits of a bracket stand for the same shares (only
        one can trade), so each group counts once, by its oldest working member.

        The held exits of a partly filled bracket/oto entry already hold the shares it bought
        (they arm for what filled): each appears as a copy of its qty set to that fill, so other
        closing orders cannot promise the same shares (a cash account would end short).
        """
        out, groups = [], set()
        for o in self.live():
            if o.symbol != symbol or o.id == exclude:
                continue
            if o.status == "held" and o.parent_id is not None:
                filled = self._chain_filled(self.orders[o.parent_id])
                if filled == 0:
                    continue
                o = copy_order(o, qty=filled)  # a snapshot for the check; the leg itself is untouched
            elif not o.is_working:
                continue
            group = self._group_id(o)
            if group is not None:
                if group in groups:
                    continue
                groups.add(group)
            out.append(o)
        return out

    def _group_id(self, o: Order) -> str | None:
        """The id exit orders of one group share (None for an entry or a simple order)."""
        if o.parent_id is not None:
            return o.parent_id
        return o.id if o.order_class == "oco" else None

    def _reserved(self, symbol: str, orders: list[Order]) -> tuple[Decimal, Decimal]:
        pos = self.positions.get(symbol)
        quote = self.quotes.get(symbol)
        ask = quote.ask if quote is not None else self.last_price.get(symbol)
        return acct.reserved(self.account, orders, pos.qty if pos else Decimal(0), ask)

    def buying_power(self) -> Decimal:
        """What a new opening order may still use: the account's power minus open-order reservations."""
        base = acct.base_buying_power(self.account, self.equity(), self.gross_market_value())
        held = sum((self._reserved(s, self.reserving(s))[0] for s in self.symbols), Decimal(0))
        return max(base - held, Decimal(0))

    def daytrade_count(self) -> int:
        """Day trades in the last ``DAYTRADE_WINDOW`` trading days, today included."""
        window = set(recent_days(self.session, trading_day(self.session, self.now_ns()), DAYTRADE_WINDOW))
        return sum(1 for d in self.daytrades.values() if d in window)

    def activities(self) -> list[dict[str, Any]]:
        """FILL activities, newest first (Alpaca's default order)."""
        return [f.activity(self.account_id) for f in reversed(self.fills)]

    # --- commands ------------------------------------------------------------------
    def submit(self, body: dict[str, Any], reject: bool = False) -> Order:
        """Validate and accept an order (Alpaca POST /v2/orders body), then try to match it.

        Returns the (parent) order in its state after matching against the current quote.
        ``reject`` (a fault) accepts the order and then rejects it instead of matching.
        """
        now = self.now_ns()
        self.on_clock(now)
        order_class = body.get("order_class") or "simple"
        if order_class == "mleg":
            raise unsupported("order_class mleg (multi-leg options)")
        if order_class not in CLASSES:
            raise SimError(422, CODE_INVALID, f"invalid order_class {order_class}")
        take_profit = body.get("take_profit")
        if order_class == "oco" and not body.get("limit_price") and isinstance(take_profit, dict):
            body = {**body, "limit_price": take_profit.get("limit_price")}  # the parent IS the take-profit
        terms = parse_terms(body, self.symbols, self.session)
        legs = self._legs_of(order_class, terms, body)
        cid = str(body.get("client_order_id") or uuid.uuid4())
        if len(cid) > MAX_CID_LEN:
            raise SimError(
                422, CODE_INVALID, f"client_order_id must be no more than {MAX_CID_LEN} characters"
            )
        if cid in self.by_cid:
            raise SimError(422, CODE_INVALID, "client_order_id must be unique")
        order = self._new_order(terms, cid, now, order_class)
        self._check_buying_power(order)
        self._add(order)
        leg_status = "new" if order_class == "oco" else "held"
        for leg_terms in legs:
            leg = self._new_order(leg_terms, str(uuid.uuid4()), now, order_class, status=leg_status)
            leg.parent_id = order.id
            order.legs.append(leg.id)
            self._add(leg)
        self._emit_order("new", order, now)
        for leg in (self.orders[i] for i in order.legs):
            if leg.status == "new":  # oco: both halves work at once
                self._emit_order("new", leg, now)
        if reject:
            self.reject(order)
            return order
        self._try(order, now)
        if terms.time_in_force in ("ioc", "fok") and order.is_open:
            self._close(order, "canceled", now)
        return order

    def _legs_of(self, order_class: str, terms: Terms, body: dict[str, Any]) -> list[Terms]:
        if order_class == "simple":
            if body.get("take_profit") or body.get("stop_loss"):
                raise SimError(
                    422, CODE_INVALID, "take_profit/stop_loss need order_class bracket, oco or oto"
                )
            return []
        if terms.time_in_force not in ("day", "gtc"):
            raise SimError(422, CODE_INVALID, f"{order_class} orders need time_in_force day or gtc")
        if order_class == "oco":
            # Alpaca models an OCO as its take-profit limit order with the stop-loss as its leg.
            if terms.type != "limit":
                raise SimError(422, CODE_INVALID, "oco orders must be type limit")
            tp, sl = _leg_terms(terms, body, "take_profit"), _leg_terms(terms, body, "stop_loss")
            flip = "buy" if tp.side == "sell" else "sell"
            return [
                Terms(
                    sl.symbol,
                    flip,
                    sl.type,
                    sl.time_in_force,
                    sl.qty,
                    sl.limit_price,
                    sl.stop_price,
                    None,
                    None,
                )
            ]
        if terms.type not in ("market", "limit"):
            raise SimError(422, CODE_INVALID, f"{order_class} entry orders must be market or limit")
        kinds = [k for k in ("take_profit", "stop_loss") if body.get(k)]
        if order_class == "bracket" and len(kinds) != 2:
            raise SimError(422, CODE_INVALID, "bracket orders need take_profit and stop_loss")
        if order_class == "oto" and len(kinds) != 1:
            raise SimError(422, CODE_INVALID, "oto orders need exactly one of take_profit or stop_loss")
        legs = [_leg_terms(terms, body, k) for k in kinds]
        if len(legs) == 2:
            tp, sl = legs
            assert sl.stop_price is not None and tp.limit_price is not None
            if (terms.side == "buy") != (tp.limit_price > sl.stop_price):
                raise SimError(
                    422,
                    CODE_INVALID,
                    "take_profit.limit_price must be "
                    + ("> stop_loss.stop_price" if terms.side == "buy" else "< stop_loss.stop_price"),
                )
        return legs

    def _new_order(self, t: Terms, cid: str, now: int, order_class: str, status: str = "new") -> Order:
        o = Order(
            id=str(uuid.uuid4()),
            client_order_id=cid,
            symbol=t.symbol,
            asset_id=self.asset_ids[t.symbol],
            side=t.side,
            type=t.type,
            time_in_force=t.time_in_force,
            qty=t.qty,
            limit_price=t.limit_price,
            stop_price=t.stop_price,
            created_ns=now,
            updated_ns=now,
            status=status,
            trail_price=t.trail_price,
            trail_percent=t.trail_percent,
            order_class=order_class,
        )
        self._set_lifetime(o, now)
        quote = self.quotes.get(t.symbol)
        if o.type == "trailing_stop" and quote is not None:
            state = advance_stop(o, quote)
            o.hwm, o.stop_price = state.hwm, state.stop_price
        return o

    def _set_lifetime(self, o: Order, now: int) -> None:
        o.expires_ns = o.opens_ns = None
        if o.time_in_force in ("day", "cls"):
            o.expires_ns = day_end_ns(self.session, now)
        elif o.time_in_force == "opg":
            o.opens_ns = session_open_ns(self.session, now)

    def _add(self, order: Order) -> None:
        self.orders[order.id] = order
        self._live[order.id] = order
        self.by_cid[order.client_order_id] = order

    def _check_buying_power(self, new: Order, replacing: Order | None = None) -> None:
        """Refuse ``new`` (403) if what it opens needs more buying power than is left."""
        symbol = new.symbol
        group = self._group_id(new) if replacing is None else self._group_id(replacing)
        others = [
            o
            for o in self.reserving(symbol, exclude=replacing.id if replacing else None)
            if group is None or self._group_id(o) != group  # its own group stands for the same shares
        ]
        before, _ = self._reserved(symbol, others)
        after, unpriced = self._reserved(symbol, [*others, new])
        pos = self.positions.get(symbol)
        opens = dict((id(o), q) for o, q in acct.opening_qty([*others, new], pos.qty if pos else Decimal(0)))
        opening = opens[id(new)]
        if new.side == "sell" and opening > 0:
            if not self.account.can_short:
                raise SimError(
                    403,
                    CODE_FORBIDDEN,
                    f"insufficient qty available for order (requested: {num(new.remaining)}, "
                    f"available: {num(new.remaining - opening)}); a cash account cannot sell short",
                )
            if symbol in self.account.hard_to_borrow:
                raise SimError(
                    403, CODE_FORBIDDEN, f"asset {symbol} is not easy to borrow: cannot sell short"
                )
        if unpriced > 0:
            raise SimError(
                403,
                CODE_FORBIDDEN,
                f"insufficient buying power: no price for {symbol} yet to value this order; "
                "send a limit order or wait for the first quote",
            )
        if after <= before:
            return
        base = acct.base_buying_power(self.account, self.equity(), self.gross_market_value())
        held = sum((self._reserved(s, self.reserving(s))[0] for s in self.symbols if s != symbol), Decimal(0))
        if held + after > base:
            raise SimError(403, CODE_FORBIDDEN, "insufficient buying power")

    def replace(self, order_id: str, body: dict[str, Any]) -> Order:
        """Alpaca's PATCH /v2/orders/{id}: a new order takes the old one's place, which becomes ``replaced``.

        The new order is for what is left: ``qty`` (default: the old qty) minus what already filled.
        """
        now = self.now_ns()
        self.on_clock(now)
        old = self.order(order_id)
        if not old.is_open:
            raise SimError(422, CODE_UNPROCESSABLE, f"cannot replace order in {old.status} status")
        if not body:
            raise SimError(
                422,
                CODE_INVALID,
                "nothing to replace: send qty, time_in_force, limit_price, stop_price or trail",
            )
        qty = _decimal(body, "qty") or old.qty
        if qty <= old.filled_qty:
            raise SimError(422, CODE_UNPROCESSABLE, "qty must be > filled_qty")
        limit, stop, trail = (
            _cents(_decimal(body, "limit_price"), "limit_price"),
            _cents(_decimal(body, "stop_price"), "stop_price"),
            _decimal(body, "trail"),
        )
        if limit is not None and old.type not in ("limit", "stop_limit"):
            raise SimError(422, CODE_INVALID, f"limit_price is not allowed for a {old.type} order")
        if stop is not None and old.type not in ("stop", "stop_limit"):
            raise SimError(422, CODE_INVALID, f"stop_price is not allowed for a {old.type} order")
        if trail is not None and old.type != "trailing_stop":
            raise SimError(422, CODE_INVALID, "trail is only allowed for a trailing_stop order")
        tif = body.get("time_in_force") or old.time_in_force
        if tif not in TIFS or (old.order_class != "simple" and tif not in ("day", "gtc")):
            raise SimError(422, CODE_INVALID, f"invalid time_in_force {tif}")
        cid = str(body.get("client_order_id") or uuid.uuid4())
        if cid in self.by_cid:
            raise SimError(422, CODE_INVALID, "client_order_id must be unique")
        trail_price = old.trail_price
        trail_percent = old.trail_percent
        if trail is not None:
            if old.trail_price is not None:
                trail_price = _cents(trail, "trail")
            else:
                trail_percent = trail
        terms = Terms(
            old.symbol,
            old.side,
            old.type,
            tif,
            qty - old.filled_qty,
            limit if limit is not None else old.limit_price,
            stop if stop is not None else (old.stop_price if old.type != "trailing_stop" else None),
            trail_price,
            trail_percent,
        )
        new = self._new_order(
            terms, cid, now, old.order_class, status="held" if old.status == "held" else "new"
        )
        new.parent_id, new.legs, new.replaces, new.triggered = old.parent_id, old.legs, old.id, old.triggered
        if old.type == "trailing_stop" and old.hwm is not None:
            new.hwm = old.hwm if new.hwm is None else (min if new.side == "buy" else max)(old.hwm, new.hwm)
            new.stop_price = trail_stop(new.side, new.hwm, new.trail_price, new.trail_percent)
        self._check_buying_power(new, replacing=old)
        old.status, old.replaced_by, old.replaced_ns, old.updated_ns = "replaced", new.id, now, now
        old.legs = []
        self._add(new)
        for leg_id in new.legs:
            self.orders[leg_id].parent_id = new.id
        if new.parent_id is not None:
            parent = self.orders[new.parent_id]
            parent.legs = [new.id if i == old.id else i for i in parent.legs]
        self._emit_order("replaced", old, now)
        self._emit_order("new", new, now)
        self._try(new, now)
        return new

    def cancel(self, order_id: str) -> Order:
        """Cancel an open order and every open member of its bracket/oco/oto group.

        Except a partly filled bracket/oto entry: its exits arm for what filled, so the
        position it opened is never left without them.
        """
        order = self.order(order_id)
        if not order.is_open:
            raise SimError(422, CODE_UNPROCESSABLE, f"order is not cancelable, status {order.status}")
        now = self.now_ns()
        if order.order_class in ("bracket", "oto") and order.parent_id is None and self._chain_filled(order):
            self._close(order, "canceled", now)
            return order
        for o in self._group(order):
            if o.is_open:
                self._close(o, "canceled", now, cascade=False)
        return order

    def cancel_all(self) -> list[Order]:
        now = self.now_ns()
        out = self.live()
        for o in out:
            if o.is_open:
                self._close(o, "canceled", now, cascade=False)
        return out

    def reject(self, order: Order, reason: str = "rejected by simulator fault") -> None:
        """Turn an accepted order into ``rejected`` (asynchronous rejection, as a broker may do)."""
        if order.is_open:
            now = self.now_ns()
            order.status, order.failed_ns, order.updated_ns = "rejected", now, now
            self._emit_order("rejected", order, now)
            self._after_parent_done(order, now)

    def close_position_body(self, symbol: str, qty: Decimal | None) -> dict[str, Any]:
        """The market order that closes (part of) a position."""
        pos = self.positions.get(symbol)
        if pos is None or pos.qty == 0:
            raise SimError(404, CODE_NOT_FOUND, "position not found")
        size = abs(pos.qty) if qty is None else min(qty, abs(pos.qty))
        side = "sell" if pos.qty > 0 else "buy"
        return {"symbol": symbol, "qty": str(size), "side": side, "type": "market", "time_in_force": "day"}

    # --- market and clock events ---------------------------------------------------
    def on_quote(self, symbol: str, quote: Quote) -> None:
        now = self.now_ns()
        self.on_clock(now)
        self.quotes[symbol] = quote
        self.shown[symbol] = {"buy": Decimal(quote.ask_size), "sell": Decimal(quote.bid_size)}
        open_now = self._market_open(now)
        for order in sorted(
            (o for o in self.live() if o.symbol == symbol and o.is_working),
            key=lambda o: o.created_ns,
        ):
            if order.is_working:  # an earlier fill may have canceled its sibling
                self._try(order, now, open_now)

    def on_trade(self, symbol: str, price: Decimal) -> None:
        self.last_price[symbol] = price

    def on_clock(self, now: int) -> None:
        """Run every session close that ``now`` has passed: cls executions, day expiries, last_equity."""
        while now >= self.next_close_ns:
            close = self.next_close_ns
            for o in [o for o in self.live() if o.is_working and o.time_in_force == "cls"]:
                if o.expires_ns is not None and o.expires_ns <= close:
                    quote = self.quotes.get(o.symbol)
                    if quote is not None:
                        self._match(o, quote, close, at_close=True)
            for o in self.live():
                if o.is_open and o.expires_ns is not None and o.expires_ns <= close:
                    self._close(o, "expired", close)
            equity = self.equity()
            self.last_equity = equity
            self.equity_history.append((close, equity))
            self.next_close_ns = clock(self.session, close).next_close_ns

    # --- internals -----------------------------------------------------------------
    def _market_open(self, now: int) -> bool:
        return self.session is SessionModel.CONTINUOUS or clock(self.session, now).is_open

    def _try(self, order: Order, now: int, open_now: bool | None = None) -> None:
        """Match a working order against the current quote if its session lets it trade now."""
        quote = self.quotes.get(order.symbol)
        if quote is None or not order.is_working:
            return
        if order.time_in_force == "opg":
            if order.opens_ns is None or now < order.opens_ns:
                return
            self._match(order, quote, now)
            if order.is_working:  # the opening print was its only chance
                self._close(order, "expired", now)
            return
        if order.time_in_force == "cls" or not (self._market_open(now) if open_now is None else open_now):
            return  # cls waits for the close; nothing trades while the market is closed
        self._match(order, quote, now)

    def _advance(self, order: Order, quote: Quote) -> None:
        state = advance_stop(order, quote)
        order.triggered, order.hwm, order.stop_price = state.triggered, state.hwm, state.stop_price

    def _match(self, order: Order, quote: Quote, now: int, at_close: bool = False) -> None:
        self._advance(order, quote)
        shown = self.shown.get(order.symbol, {}).get(order.side, Decimal(0))
        config = self.fill_config
        if at_close:  # the closing cross is not limited by the displayed quote
            config = FillConfig(False, config.slippage_bps)
        ex = execution(order, quote, shown, config)
        if ex is None:
            return
        qty, price = ex
        if config.partial_fills:
            self.shown[order.symbol][order.side] = shown - qty
        self._fill(order, qty, price, now)

    def _fill(self, order: Order, qty: Decimal, price: Decimal, now: int) -> None:
        signed = qty if order.side == "buy" else -qty
        self.cash -= signed * price
        pos = self.positions.setdefault(order.symbol, Position(order.symbol))
        before = pos.qty
        pos.apply(signed, price)
        self._count_daytrade(order, before, signed, now)
        order.filled_qty += qty
        order.filled_notional += qty * price
        order.updated_ns = now
        done = order.filled_qty == order.qty
        order.status = "filled" if done else "partially_filled"
        if done:
            order.filled_ns = now
        fill = Fill(
            str(uuid.uuid4()),
            order.id,
            order.client_order_id,
            order.symbol,
            order.side,
            qty,
            price,
            now,
            cum_qty=order.filled_qty,
            leaves_qty=order.remaining,
            order_status=order.status,
        )
        self.fills.append(fill)
        self._emit(
            TradeEvent(
                "fill" if done else "partial_fill",
                self.order_json(order, nested=True),
                now,
                price=price,
                qty=qty,
                position_qty=pos.qty,
                execution_id=fill.execution_id,
            )
        )
        if order.parent_id is not None or order.order_class == "oco":
            # one-cancels-other: an exit leg (or an oco's parent) traded, the rest of the group goes
            for sibling in self._group(order):
                if sibling is not order and sibling.is_open:
                    self._close(sibling, "canceled", now, cascade=False)
        elif done:
            self._after_parent_done(order, now)

    def _count_daytrade(self, order: Order, before: Decimal, signed: Decimal, now: int) -> None:
        """A fill that reduces a position opened or added to on the same trading day is a day trade."""
        day = trading_day(self.session, now)
        reduces = before != 0 and (before > 0) != (signed > 0)
        if reduces and self._opened.get(order.symbol) == day:
            self.daytrades.setdefault(order.id, day)
        if not reduces or abs(signed) > abs(before):
            self._opened[order.symbol] = day

    def _chain_filled(self, order: Order) -> Decimal:
        """What ``order`` and the orders it replaced filled together."""
        total = order.filled_qty
        while order.replaces is not None:
            order = self.orders[order.replaces]
            total += order.filled_qty
        return total

    def _group(self, order: Order) -> list[Order]:
        root = self.orders[order.parent_id] if order.parent_id else order
        return [root, *(self.orders[i] for i in root.legs)]

    def _after_parent_done(self, parent: Order, now: int) -> None:
        """A parent left the book: held exit legs activate for what filled, or are canceled.

        An oco's other half goes with it (a fill of it is handled in ``_fill``).
        """
        filled = self._chain_filled(parent)
        for leg in (self.orders[i] for i in parent.legs):
            if parent.order_class == "oco" and leg.is_open:
                self._close(leg, "canceled", now, cascade=False)
            if leg.status != "held":
                continue
            if filled == 0:
                self._close(leg, "canceled", now, cascade=False)
                continue
            leg.qty = filled
            leg.status, leg.updated_ns = "new", now
            self._set_lifetime(leg, now)
            self._emit_order("new", leg, now)

    def _close(self, order: Order, status: str, now: int, cascade: bool = True) -> None:
        """End an open order as ``canceled`` or ``expired``; a parent's held legs follow it."""
        order.status, order.updated_ns = status, now
        if status == "expired":
            order.expired_ns = now
        else:
            order.canceled_ns = now
        self._emit_order(status, order, now)
        if cascade and order.parent_id is None:
            self._after_parent_done(order, now)

    def _emit_order(self, event: str, order: Order, now: int) -> None:
        self._emit(TradeEvent(event, self.order_json(order, nested=True), now))

    def _emit(self, event: TradeEvent) -> None:
        for listener in self.listeners:
            listener(event)

    def snapshot(self) -> dict[str, Any]:
        """Everything a test needs to check a trading service exactly (numbers as strings)."""
        return {
            "cash": num(self.cash),
            "equity": num(self.equity()),
            "initial_cash": num(self.initial_cash),
            "buying_power": num(self.buying_power()),
            "positions": {
                p.symbol: {
                    "qty": num(p.qty),
                    "avg_entry_price": num(p.avg_entry_price),
                    "realized_pl": num(p.realized_pl),
                }
                for p in self.positions.values()
            },
            "orders": [o.to_json() for o in self.orders.values()],
            "fills": [f.to_json() for f in self.fills],
        }
