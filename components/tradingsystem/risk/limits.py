"""The configured limits in exact decimals, and the sliding-window order-rate limiter."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tradingsystem.common.config import RiskSettings
from tradingsystem.common.money import dec
from tradingsystem.common.window import SlidingWindow

WINDOW_NS = 60 * 1_000_000_000  # orders-per-minute window


@dataclass(frozen=True, slots=True)
class Limits:
    max_order_qty: Decimal
    max_order_notional: Decimal
    max_position_qty: Decimal
    max_gross_exposure: Decimal
    max_open_positions: int
    daily_loss_limit: Decimal
    reducing_at_loss: Decimal  # absolute loss at which REDUCING is entered
    max_orders_per_minute: int
    price_band: Decimal  # fraction of the reference price, e.g. 0.05

    @classmethod
    def from_settings(cls, rs: RiskSettings) -> Limits:
        loss = dec(rs.daily_loss_limit)
        return cls(
            max_order_qty=dec(rs.max_order_qty),
            max_order_notional=dec(rs.max_order_notional),
            max_position_qty=dec(rs.max_position_qty),
            max_gross_exposure=dec(rs.max_gross_exposure),
            max_open_positions=rs.max_open_positions,
            daily_loss_limit=loss,
            reducing_at_loss=loss * dec(rs.reducing_at_loss_fraction),
            max_orders_per_minute=rs.max_orders_per_minute,
            price_band=dec(rs.price_band_pct) / 100,
        )

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.__slots__}


class OrderRate(SlidingWindow):
    """At most ``limit`` orders in any window of ``window_ns`` (sliding, not bucketed:
    a burst straddling a minute boundary cannot double the rate)."""

    def __init__(self, limit: int, window_ns: int = WINDOW_NS) -> None:
        super().__init__(limit, window_ns)
