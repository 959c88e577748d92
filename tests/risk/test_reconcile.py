"""Start-up reconciliation against the simulator (the stand-in for Alpaca's servers)."""

from __future__ import annotations

import threading
from decimal import Decimal

from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from tradingsystem.broker import credentials
from tradingsystem.common.config import Settings
from tradingsystem.common.money import dec
from tradingsystem.risk.positions import PositionBook
from tradingsystem.risk.reconcile import BrokerPosition, alpaca_positions, fetch_with_retry, parse_position
from tradingsystem_testing import eventually
from tradingsystem_testing.sim import SimulatorThread


def test_positions_are_read_from_the_broker_in_sim_mode() -> None:
    with SimulatorThread(["AAPL", "MSFT"], seed=3, tick_rate=50) as sim:
        eventually(lambda: sim.ledger.quotes.keys() >= {"AAPL", "MSFT"}, "quotes for both symbols")
        settings = Settings(symbols=["AAPL", "MSFT"], sim={"port": sim.port})
        client = TradingClient(*credentials(settings), url_override=settings.sim_base_url())
        for symbol, side, qty in (
            ("AAPL", OrderSide.BUY, 3),
            ("AAPL", OrderSide.BUY, 4),
            ("MSFT", OrderSide.SELL, 2),
        ):
            client.submit_order(
                MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY)
            )
        eventually(lambda: len(sim.ledger.fills) >= 3, "three fills")

        rows = fetch_with_retry(alpaca_positions(settings), threading.Event(), attempts=2)
        assert rows is not None
        got = {r.symbol: r for r in rows}
        ledger = sim.call(lambda: {s: (p.qty, p.avg_entry_price) for s, p in sim.ledger.positions.items()})
        assert got["AAPL"].qty == 7 and got["MSFT"].qty == -2
        for symbol, (qty, avg) in ledger.items():
            assert dec(got[symbol].qty) == qty
            # Alpaca (and the simulator) report the average entry price to 4 decimals.
            assert dec(got[symbol].avg_entry_price) == avg.quantize(Decimal("0.0001"))

        book = PositionBook()
        for r in rows:
            book.seed(r.symbol, dec(r.qty), dec(r.avg_entry_price))
        assert book.qty("MSFT") == -2


def test_broker_rows_and_retry() -> None:
    assert parse_position({"symbol": "MSFT", "qty": "7", "side": "short", "avg_entry_price": "410.5"}) == (
        BrokerPosition("MSFT", -7.0, 410.5)
    )
    calls: list[int] = []

    def flaky() -> list[BrokerPosition]:
        calls.append(1)
        if len(calls) < 2:
            raise ConnectionError("refused")
        return []

    assert fetch_with_retry(flaky, threading.Event(), attempts=3, first_delay_s=0.01) == []

    def down() -> list[BrokerPosition]:
        raise ConnectionError("refused")

    assert fetch_with_retry(down, threading.Event(), attempts=2, first_delay_s=0.01) is None
