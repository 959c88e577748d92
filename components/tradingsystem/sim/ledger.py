"""The simulated broker account: cash, positions, orders, fills, and order matching.

Pure and synchronous (no I/O, no asyncio) so it is unit-testable and so the server can apply
a REST call or a quote atomically. All money is ``Decimal``: quotes are in cents, so cash,
fills and cost bases are exact and a trading service's books can be compared to the cent.

Matching follows Alpaca's paper-trading rules: market orders fill at the quote (buy at the
ask, sell at the bid, plus optional ``slippage_bps``); limit orders fill at the quote once it
crosses the limit; stop orders trigger when the quote reaches the stop and then act as market
(stop) or limit (stop_limit) orders. With ``partial_fills`` a fill takes at most the displayed
size, so large orders fill over several quotes. ``ioc``/``fok`` are decided on the quote at
submission; ``day`` orders never expire because the simulated market never closes.

Every state change is reported to ``listeners`` as a ``TradeEvent`` (the trade_updates stream).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

from tradingsystem.common.money import CENT, positive
from tradingsystem.common.money import alpaca_str as num

# Alpaca's error codes (numeric code + HTTP status are the stable contract).
CODE_INVALID = 40010001
CODE_FORBIDDEN = 40310000
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000

SIDES = ("buy", "sell")
TYPES = ("market", "limit", "stop", "stop_limit")
TIFS = ("day", "gtc", "ioc", "fok")
OPEN_STATUSES = ("new", "partially_filled")  # the only open states the simulator produces
MAX_CID_LEN = 128


class SimError(Exception):
    """A broker-side refusal, rendered by the REST layer as ``{"code", "message"}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


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
    triggered: bool = False  # stop reached (stop/stop_limit)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def filled_avg_price(self) -> Decimal | None:
        if not self.filled_qty:
            return None
        return (self.filled_notional / self.filled_qty).quantize(Decimal("0.0001"))

    def to_json(self) -> dict[str, Any]:
        """Alpaca's ``Order`` entity."""
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": rfc3339(self.created_ns),
            "updated_at": rfc3339(self.updated_ns or self.created_ns),
            "submitted_at": rfc3339(self.created_ns),
            "filled_at": rfc3339(self.filled_ns),
            "expired_at": None,
            "canceled_at": rfc3339(self.canceled_ns),
            "failed_at": rfc3339(self.failed_ns),
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": self.asset_id,
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": num(self.qty),
            "filled_qty": num(self.filled_qty),
            "filled_avg_price": num(self.filled_avg_price),
            "order_class": "simple",
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "time_in_force": self.time_in_force,
            "limit_price": num(self.limit_price),
            "stop_price": num(self.stop_price),
            "status": self.status,
            "extended_hours": False,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
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


def _decimal(body: dict[str, Any], key: str) -> Decimal | None:
    raw = body.get(key)
    if raw is None or raw == "":
        return None
    try:
        return positive(raw, key)
    except ValueError as exc:
        raise SimError(422, CODE_INVALID, str(exc)) from None


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

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.cash = self.initial_cash
        self.positions: dict[str, Position] = {}
        self.orders: dict[str, Order] = {}
        self.by_cid: dict[str, Order] = {}
        self.fills: list[Fill] = []
        self.quotes: dict[str, Quote] = {}
        self.last_price: dict[str, Decimal] = {}

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

    def mark(self, symbol: str) -> Decimal | None:
        q = self.quotes.get(symbol)
        return q.mid if q is not None else self.last_price.get(symbol)

    def equity(self) -> Decimal:
        value = self.cash
        for p in self.positions.values():
            mark = self.mark(p.symbol) or p.avg_entry_price
            value += p.qty * mark
        return value

    def open_positions(self) -> list[Position]:
        return [p for p in self.positions.values() if p.qty != 0]

    # --- commands ------------------------------------------------------------------
    def submit(self, body: dict[str, Any], reject: bool = False) -> Order:
        """Validate and accept an order (Alpaca POST /v2/orders body), then try to match it.

        Returns the order in its state after matching against the current quote. ``reject``
        (a fault) accepts the order and then rejects it instead of matching.
        """
        now = self.now_ns()
        symbol = str(body.get("symbol") or "").upper()
        if symbol not in self.symbols:
            raise SimError(422, CODE_INVALID, f'asset "{symbol}" not found')
        side, type_, tif = body.get("side"), body.get("type"), body.get("time_in_force")
        if side not in SIDES:
            raise SimError(422, CODE_INVALID, "invalid side")
        if type_ not in TYPES:
            raise SimError(422, CODE_INVALID, f"invalid order type for the simulator: {type_}")
        if tif not in TIFS:
            raise SimError(422, CODE_INVALID, f"invalid time_in_force for the simulator: {tif}")
        if body.get("order_class") not in (None, "", "simple"):
            raise SimError(422, CODE_INVALID, "only simple orders are supported by the simulator")
        if body.get("notional") is not None:
            raise SimError(422, CODE_INVALID, "notional orders are not supported by the simulator")
        qty = _decimal(body, "qty")
        if qty is None:
            raise SimError(422, CODE_INVALID, "qty is required")
        limit, stop = _decimal(body, "limit_price"), _decimal(body, "stop_price")
        needs_limit, needs_stop = type_ in ("limit", "stop_limit"), type_ in ("stop", "stop_limit")
        if needs_limit != (limit is not None):
            raise SimError(
                422, CODE_INVALID, f"limit_price is {'required' if needs_limit else 'not allowed'}"
            )
        if needs_stop != (stop is not None):
            raise SimError(422, CODE_INVALID, f"stop_price is {'required' if needs_stop else 'not allowed'}")
        for price in (limit, stop):
            if price is not None and price != price.quantize(CENT):
                raise SimError(
                    422, CODE_INVALID, "sub-penny increment does not fulfill minimum pricing criteria"
                )
        cid = str(body.get("client_order_id") or uuid.uuid4())
        if len(cid) > MAX_CID_LEN:
            raise SimError(
                422, CODE_INVALID, f"client_order_id must be no more than {MAX_CID_LEN} characters"
            )
        if cid in self.by_cid:
            raise SimError(422, CODE_INVALID, "client_order_id must be unique")
        if side == "buy":
            quote = self.quotes.get(symbol)
            est = limit or (quote.ask if quote else None) or self.last_price.get(symbol) or Decimal(0)
            if qty * est > self.cash:
                raise SimError(403, CODE_FORBIDDEN, "insufficient buying power")
        order = Order(
            id=str(uuid.uuid4()),
            client_order_id=cid,
            symbol=symbol,
            asset_id=self.asset_ids[symbol],
            side=side,
            type=type_,
            time_in_force=tif,
            qty=qty,
            limit_price=limit,
            stop_price=stop,
            created_ns=now,
            updated_ns=now,
        )
        self.orders[order.id] = order
        self.by_cid[cid] = order
        self._emit(TradeEvent("new", order.to_json(), now))
        if reject:
            self.reject(order)
            return order
        quote = self.quotes.get(symbol)
        if quote is not None:
            self._match(order, quote, now)
        if tif in ("ioc", "fok") and order.is_open:
            self._cancel(order, now)
        return order

    def cancel(self, order_id: str) -> Order:
        order = self.order(order_id)
        if not order.is_open:
            raise SimError(422, CODE_UNPROCESSABLE, f"order is not cancelable, status {order.status}")
        self._cancel(order, self.now_ns())
        return order

    def cancel_all(self) -> list[Order]:
        now = self.now_ns()
        out = [o for o in self.orders.values() if o.is_open]
        for o in out:
            self._cancel(o, now)
        return out

    def reject(self, order: Order, reason: str = "rejected by simulator fault") -> None:
        """Turn an accepted order into ``rejected`` (asynchronous rejection, as a broker may do)."""
        if order.is_open:
            now = self.now_ns()
            order.status, order.failed_ns, order.updated_ns = "rejected", now, now
            self._emit(TradeEvent("rejected", order.to_json(), now))

    def close_position_body(self, symbol: str, qty: Decimal | None) -> dict[str, Any]:
        """The market order that closes (part of) a position."""
        pos = self.positions.get(symbol)
        if pos is None or pos.qty == 0:
            raise SimError(404, CODE_NOT_FOUND, "position not found")
        size = abs(pos.qty) if qty is None else min(qty, abs(pos.qty))
        side = "sell" if pos.qty > 0 else "buy"
        return {"symbol": symbol, "qty": str(size), "side": side, "type": "market", "time_in_force": "day"}

    # --- market events -------------------------------------------------------------
    def on_quote(self, symbol: str, quote: Quote) -> None:
        self.quotes[symbol] = quote
        now = self.now_ns()
        for order in [o for o in self.orders.values() if o.symbol == symbol and o.is_open]:
            self._match(order, quote, now)

    def on_trade(self, symbol: str, price: Decimal) -> None:
        self.last_price[symbol] = price

    # --- internals -----------------------------------------------------------------
    def _match(self, order: Order, quote: Quote, now: int) -> None:
        buy = order.side == "buy"
        touch = quote.ask if buy else quote.bid
        if order.stop_price is not None and not order.triggered:
            if (buy and touch < order.stop_price) or (not buy and touch > order.stop_price):
                return
            order.triggered = True
        if order.limit_price is not None and (
            (buy and touch > order.limit_price) or (not buy and touch < order.limit_price)
        ):
            return
        price = touch
        if order.limit_price is None and self.slippage_bps:
            slip = touch * self.slippage_bps / 10_000
            price = (
                (touch + slip).quantize(CENT, ROUND_UP) if buy else (touch - slip).quantize(CENT, ROUND_DOWN)
            )
        shown = Decimal(quote.ask_size if buy else quote.bid_size)
        qty = min(order.remaining, shown) if self.partial_fills else order.remaining
        if order.time_in_force == "fok" and qty < order.remaining:
            return  # all or nothing: the caller cancels it
        if qty > 0:
            self._fill(order, qty, price, now)

    def _fill(self, order: Order, qty: Decimal, price: Decimal, now: int) -> None:
        signed = qty if order.side == "buy" else -qty
        self.cash -= signed * price
        pos = self.positions.setdefault(order.symbol, Position(order.symbol))
        pos.apply(signed, price)
        order.filled_qty += qty
        order.filled_notional += qty * price
        order.updated_ns = now
        done = order.filled_qty == order.qty
        order.status = "filled" if done else "partially_filled"
        if done:
            order.filled_ns = now
        fill = Fill(
            str(uuid.uuid4()), order.id, order.client_order_id, order.symbol, order.side, qty, price, now
        )
        self.fills.append(fill)
        self._emit(
            TradeEvent(
                "fill" if done else "partial_fill",
                order.to_json(),
                now,
                price=price,
                qty=qty,
                position_qty=pos.qty,
                execution_id=fill.execution_id,
            )
        )

    def _cancel(self, order: Order, now: int) -> None:
        order.status, order.canceled_ns, order.updated_ns = "canceled", now, now
        self._emit(TradeEvent("canceled", order.to_json(), now))

    def _emit(self, event: TradeEvent) -> None:
        for listener in self.listeners:
            listener(event)

    def snapshot(self) -> dict[str, Any]:
        """Everything a test needs to check a trading service exactly (numbers as strings)."""
        return {
            "cash": num(self.cash),
            "equity": num(self.equity()),
            "initial_cash": num(self.initial_cash),
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
