"""common/money.py: exact decimals for prices, quantities and P&L."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradingsystem.common.money import alpaca_str, cents, dec, positive


def test_dec_is_the_number_as_written_not_its_binary_float() -> None:
    assert dec(0.1) + dec(0.2) == Decimal("0.3")


def test_cents_rounds_ties_away_from_zero() -> None:
    assert (cents(2.675), cents(Decimal("0.125")), cents(Decimal("-0.125"))) == (
        Decimal("2.68"),
        Decimal("0.13"),
        Decimal("-0.13"),
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [("abc", "invalid qty"), ("0", "qty must be > 0"), ("NaN", "qty must be > 0"), ("-1", "qty must be > 0")],
)
def test_positive_refuses_with_the_field_name(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        positive(raw, "qty")


def test_positive_accepts_strings_and_numbers() -> None:
    assert (positive("1.50", "qty"), positive(3, "qty")) == (Decimal("1.50"), Decimal(3))


def test_alpaca_str_drops_a_zero_fraction_and_trailing_zeros() -> None:
    assert [alpaca_str(Decimal(x)) for x in ("5.0", "5.10", "0.0001")] + [alpaca_str(None)] == [
        "5",
        "5.1",
        "0.0001",
        None,
    ]
