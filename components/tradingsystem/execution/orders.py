"""The local order state machine and idempotent fill accounting.

The broker is the source of truth; the local order only moves forward. Every broker view of
an order (a ``trade_updates`` event, a REST lookup after a timeout, a reconciliation at
start) is applied with :meth:`Order.apply_broker`, which takes the broker's *cumulative*
``filled_qty``/``filled_avg_price``. Keying fills by the cumulative quantity makes them
idempotent: a duplicated or replayed update, or a REST snapshot of fills already seen from
the stream, adds nothing; a snapshot that skips updates (stream down) adds exactly the
missing quantity.

A fill's quantity is the *decimal* difference of the cumulative quantities (never a float
subtraction: 0.3 must stay 0.3). Its price is the fill event's own execution price when the
event carries one for exactly that quantity (``trade_updates`` fill/partial_fill); only a
snapshot that skipped events has its price recovered from the cumulative averages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from tradingsystem.common.wire import (
    ExecRejectReason,
    ExecutionReport,
    OrderIntent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

log = logging.getLogger(__name__)

S = OrderStatus
TERMINAL = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED})
_LIVE_AT_BROKER = frozenset({S.ACCEPTED, S.PARTIALLY_FILLED})

# Allowed moves. PENDING_SUBMIT may jump anywhere: after a lost response, the first thing we
# learn about the order may be that it already filled.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_SUBMIT: frozenset(OrderStatus) - {S.PENDING_SUBMIT},
    S.SUBMITTED: frozenset(OrderStatus) - {S.PENDING_SUBMIT, S.SUBMITTED},
    S.ACCEPTED: _LIVE_AT_BROKER - {S.ACCEPTED} | TERMINAL,
    S.PARTIALLY_FILLED: TERMINAL - {S.REJECTED},
}

# Alpaca order status -> local status (before fills are taken into account).
_BROKER_STATUS: dict[str, OrderStatus] = {
    "pending_new": S.SUBMITTED,
    "new": S.ACCEPTED,
    "accepted": S.ACCEPTED,
    "accepted_for_bidding": S.ACCEPTED,
    "pending_review": S.ACCEPTED,
    "held": S.ACCEPTED,
    "calculated": S.ACCEPTED,
    "stopped": S.ACCEPTED,
    "suspended": S.ACCEPTED,
    "done_for_day": S.ACCEPTED,
    "pending_cancel": S.ACCEPTED,
    "pending_replace": S.ACCEPTED,
    "partially_filled": S.PARTIALLY_FILLED,
    "filled": S.FILLED,
    "canceled": S.CANCELED,
    "replaced": S.CANCELED,
    "expired": S.EXPIRED,
    "rejected": S.REJECTED,
}

# Quantities are floats on the wire (fractional shares); below this they are equal.
QTY_EPS = 1e-9


def _dec(x: float) -> Decimal:
    """The decimal a float was written as (``53.28`` -> ``Decimal('53.28')``)."""
    return Decimal(repr(x))


class IllegalTransition(ValueError):
    pass


def local_status(broker_status: str, filled_qty: float) -> OrderStatus:
    """Map Alpaca's status; an open order with fills is PARTIALLY_FILLED whatever Alpaca calls it."""
    status = _BROKER_STATUS.get(broker_status)
    if status is None:
        raise ValueError(f"unknown broker order status {broker_status!r}")
    if status in (S.SUBMITTED, S.ACCEPTED) and filled_qty > QTY_EPS:
        return S.PARTIALLY_FILLED
    return status


@dataclass(slots=True)
class Fill:
    qty: float
    price: float


@dataclass(slots=True)
class Order:
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: float | None = None
    origin_ts: int = 0
    created_ns: int = 0
    status: OrderStatus = S.PENDING_SUBMIT
    broker_order_id: str | None = None
    filled_qty: float = 0.0
    avg_fill_price: float | None = None
    reason: str = ""
    approved_ts: int = 0  # risk approval time (ns); 0 = unknown, then created_ns counts
    reject: ExecRejectReason | None = None  # why it ended REJECTED (not persisted: in the report)

    @classmethod
    def from_intent(cls, intent: OrderIntent, created_ns: int) -> Order:
        return cls(
            client_order_id=intent.client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            qty=intent.qty,
            order_type=intent.order_type,
            time_in_force=intent.time_in_force,
            limit_price=intent.limit_price,
            origin_ts=intent.origin_ts,
            created_ns=created_ns,
            approved_ts=intent.approved_ts,
        )

    def age_ns(self, now_ns: int) -> int:
        """Time since the risk manager approved it (or since this engine first stored it)."""
        return now_ns - (self.approved_ts or self.created_ns)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def signed_filled(self) -> float:
        return self.filled_qty if self.side is Side.BUY else -self.filled_qty

    def transition(self, new: OrderStatus, reason: str = "") -> None:
        if new not in TRANSITIONS.get(self.status, frozenset()):
            raise IllegalTransition(f"{self.client_order_id}: {self.status} -> {new}")
        self.status = new
        if reason:
            self.reason = reason

    def apply_broker(
        self,
        broker_status: str,
        filled_qty: float,
        filled_avg_price: float | None,
        broker_order_id: str | None = None,
        execution: tuple[Decimal, Decimal] | None = None,
    ) -> tuple[bool, Fill | None]:
        """Apply one broker view of this order; returns (changed, new fill or None).

        Fills are derived from the growth of the cumulative quantity, so re-applying the same
        view is a no-op. A terminal status whose new fills come without an average price is
        not taken (see below). A status the machine does not allow (e.g. ``canceled`` after
        ``filled``, an out-of-order stream event) is logged and ignored; the fills are still
        taken, because a cumulative quantity never lies about money that moved.
        """
        changed = False
        if broker_order_id and broker_order_id != self.broker_order_id:
            self.broker_order_id = broker_order_id
            changed = True
        fill = self._take_fills(filled_qty, filled_avg_price, execution)
        new = local_status(broker_status, self.filled_qty)
        if new in TERMINAL and filled_qty > self.filled_qty + QTY_EPS:
            # Fills without an average price cannot be taken. A terminal order is never looked
            # at again, so it stays open until a later view (reconciliation) brings the price.
            log.warning(
                "order %s: broker says %s with %s filled but no average price; kept open",
                self.client_order_id,
                broker_status,
                filled_qty,
            )
        elif new != self.status and not (new is S.PARTIALLY_FILLED and self.status is S.PARTIALLY_FILLED):
            try:
                self.transition(new)
                changed = True
            except IllegalTransition as exc:
                log.warning("ignored broker update: %s", exc)
        return changed or fill is not None, fill

    def _take_fills(
        self, cum_qty: float, cum_avg: float | None, execution: tuple[Decimal, Decimal] | None = None
    ) -> Fill | None:
        if cum_qty <= self.filled_qty + QTY_EPS or cum_avg is None:
            return None
        delta_dec = _dec(cum_qty) - _dec(self.filled_qty)
        delta = float(delta_dec)
        if execution is not None and execution[0] == delta_dec:
            # Exactly the event's fill: its own execution price, digit for digit.
            self.filled_qty = cum_qty
            self.avg_fill_price = cum_avg
            return Fill(delta, float(execution[1]))
        # Price of just this fill, recovered from the change in cumulative notional. In
        # decimals, not floats: a first fill must come out as exactly the broker's price
        # (float 5 * 53.28 / 5 is 53.279999999999994), or positions and P&L downstream drift
        # from the broker's books.
        prev_notional = _dec(self.filled_qty) * _dec(self.avg_fill_price or 0.0)
        price = float(
            (_dec(cum_qty) * _dec(cum_avg) - prev_notional) / (_dec(cum_qty) - _dec(self.filled_qty))
        )
        self.filled_qty = cum_qty
        self.avg_fill_price = cum_avg
        return Fill(delta, price)

    def report(self, fill: Fill | None = None) -> ExecutionReport:
        return ExecutionReport(
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            status=self.status,
            qty=self.qty,
            filled_qty=self.filled_qty,
            avg_fill_price=self.avg_fill_price,
            last_fill_qty=fill.qty if fill else 0.0,
            last_fill_price=fill.price if fill else None,
            broker_order_id=self.broker_order_id,
            reason=self.reason,
            origin_ts=self.origin_ts,
            reject=self.reject,
        )
