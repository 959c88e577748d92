"""Buying power as Alpaca computes it, for a cash or a margin account. No I/O.

``buying_power = max(equity - Σ|market value| / multiplier, 0) * multiplier``, minus what the
open orders reserve. With multiplier 1 (every cash account) that is the cash of a long-only
account; with 2 it is Reg-T's 50 % initial margin; with 4 the day-trading multiple (Alpaca
bases that one on yesterday's equity; the simulator uses the current one).

Alpaca's order check (docs "Orders at Alpaca: Buying Power"): only orders that *open* or add
to a position are checked; their value is ``qty * limit price`` for a limit buy,
``qty * ask * (1 + buffer)`` for a market (or stop) buy, and
``qty * max(limit price, ask * (1 + buffer))`` for a short sale. Open buy-long and sell-short
orders reduce the available buying power; sell-long and buy-to-cover orders do not give any
back until they fill. The exits of one bracket/oco/oto group stand for the same shares (only
one can trade), so a group counts once; exits that close a position reserve nothing, and the
shares they hold are not available to other closing orders.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from tradingsystem.common.config import AccountType  # declared with the settings that choose it


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """The simulated account. Bad values raise ``ValueError`` naming the field."""

    type: AccountType = AccountType.MARGIN
    multiplier: int = 2
    market_buffer: Decimal = Decimal("0.03")  # market buys / short sales priced 3 % above the ask
    hard_to_borrow: frozenset[str] = field(default_factory=frozenset)  # margin shorts refused

    def __post_init__(self) -> None:
        if self.multiplier not in (1, 2, 4):
            raise ValueError(f"account.multiplier must be 1, 2 or 4, not {self.multiplier}")
        if self.type is AccountType.CASH and self.multiplier != 1:
            raise ValueError("account.multiplier must be 1 for a cash account")
        if not Decimal(0) <= self.market_buffer < 1:
            raise ValueError("account.market_buffer must be in [0, 1)")

    @property
    def can_short(self) -> bool:
        return self.type is AccountType.MARGIN


class Reserving(Protocol):
    """What the check needs to know of an open order."""

    symbol: str
    side: str
    type: str
    limit_price: Decimal | None
    stop_price: Decimal | None

    @property
    def remaining(self) -> Decimal: ...


def base_buying_power(config: AccountConfig, equity: Decimal, gross_market_value: Decimal) -> Decimal:
    """Buying power before open orders are taken off."""
    return max(equity - gross_market_value / config.multiplier, Decimal(0)) * config.multiplier


def order_price(config: AccountConfig, order: Reserving, ask: Decimal | None) -> Decimal | None:
    """The per-share value Alpaca checks an opening order at; None if no price is known yet."""
    buffered = ask * (1 + config.market_buffer) if ask is not None else None
    if order.side == "buy":
        if order.type in ("limit", "stop_limit"):
            return order.limit_price
        if buffered is None:
            return order.stop_price
        return max(buffered, order.stop_price or Decimal(0))
    if buffered is None:
        return order.limit_price
    return max(order.limit_price or Decimal(0), buffered)


def opening_qty(orders: Iterable[Reserving], position_qty: Decimal) -> list[tuple[Reserving, Decimal]]:
    """Each order's quantity that opens or adds to a position, in the order given.

    The existing position is closed by the earliest orders on the closing side first.
    """
    cover = {"buy": max(-position_qty, Decimal(0)), "sell": max(position_qty, Decimal(0))}
    out = []
    for o in orders:
        closing = min(o.remaining, cover[o.side])
        cover[o.side] -= closing
        out.append((o, o.remaining - closing))
    return out


def reserved(
    config: AccountConfig, orders: Iterable[Reserving], position_qty: Decimal, ask: Decimal | None
) -> tuple[Decimal, Decimal]:
    """(value reserved, opening qty with no price to value it at) for one symbol's orders."""
    total, unpriced = Decimal(0), Decimal(0)
    for o, qty in opening_qty(orders, position_qty):
        if qty <= 0:
            continue
        price = order_price(config, o, ask)
        if price is None:
            unpriced += qty
        else:
            total += qty * price
    return total, unpriced
