"""Exact decimal money: the one set of helpers for prices, quantities and P&L. No I/O.

Floats arrive on the wire and in the configuration; every sum that must match a broker's
ledger is done in ``Decimal``, built from the float's shortest repr (``dec(0.1)`` is exactly
``0.1``, not the binary ``0.1000000000000000055...``). Alpaca sends and expects numbers as
strings (``alpaca_str``).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

ZERO = Decimal(0)
CENT = Decimal("0.01")


def dec(x: float | int | str | Decimal) -> Decimal:
    """The decimal a number was written as (``0.1`` -> ``Decimal('0.1')``)."""
    return Decimal(str(x))


def cents(x: float | Decimal) -> Decimal:
    """Rounded to the cent, ties away from zero (as a price is quoted)."""
    return dec(x).quantize(CENT, rounding=ROUND_HALF_UP)


def positive(raw: object, name: str) -> Decimal:
    """A finite decimal > 0 parsed from a string or number; ``ValueError`` names ``name``."""
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise ValueError(f"invalid {name}") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be > 0")
    return value


def alpaca_str(d: Decimal | None) -> str | None:
    """Alpaca's number form: a string, integral values without a fraction ("5", not "5.0")."""
    if d is None:
        return None
    return str(d.quantize(Decimal(1))) if d == d.to_integral_value() else str(d.normalize())
