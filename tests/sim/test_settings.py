"""The ``sim`` config section reaches the simulator ``tradingsystem sim`` builds (``from_settings``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.requests import MarketOrderRequest

from tradingsystem.common.config import Settings, load_settings
from tradingsystem.sim.account import AccountType
from tradingsystem.sim.server import from_settings
from tradingsystem.sim.session import SessionModel
from tradingsystem_testing import eventually
from tradingsystem_testing.sim import SimulatorThread


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "TS_CONFIG"):
        monkeypatch.delenv(var, raising=False)


def config(tmp_path: Path, yaml_text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    return path


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[TradingClient]:
    with SimulatorThread(from_settings(settings)) as sim:
        eventually(lambda: sim.ledger.quotes.keys() >= set(settings.symbols), "first quotes")
        client = TradingClient("any-key", "any-secret", url_override=sim.base_url)  # no ALPACA_*: any
        client._retry_wait = 0
        yield client


def test_the_defaults_are_a_continuous_2x_margin_account_starting_now() -> None:
    sim = from_settings(load_settings())
    assert (sim.ledger.account.type, sim.ledger.account.multiplier) == (AccountType.MARGIN, 2)
    assert sim.ledger.account.hard_to_borrow == frozenset() and sim.ledger.session is SessionModel.CONTINUOUS
    assert sim.clock_offset_ns == 0


def test_a_cash_account_from_the_config_file_refuses_a_short_sale(tmp_path: Path) -> None:
    cfg = config(tmp_path, "symbols: [AAPL]\nsim: {port: 0, tick_rate: 50, account_type: cash}\n")
    with serving(load_settings(cfg)) as trading:
        account = trading.get_account()
        assert (account.multiplier, account.shorting_enabled) == ("1", False)
        with pytest.raises(APIError) as exc:
            trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side="sell", time_in_force="day"))
        assert exc.value.status_code == 403 and "insufficient qty available" in exc.value.message


def test_a_regular_session_from_the_environment_is_closed_on_a_saturday(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TS_SIM__SESSION", "regular")
    monkeypatch.setenv("TS_SIM__START_AT", "2026-12-05T15:00:00Z")  # a Saturday
    monkeypatch.setenv("TS_SIM__MULTIPLIER", "4")
    monkeypatch.setenv("TS_SIM__HARD_TO_BORROW", '["MSFT"]')
    with serving(load_settings(symbols=["AAPL", "MSFT"], sim={"port": 0, "tick_rate": 50})) as trading:
        clock = trading.get_clock()
        assert clock.is_open is False
        assert clock.next_open == datetime(2026, 12, 7, 14, 30, tzinfo=UTC)  # Monday 09:30 New York
        assert trading.get_account().multiplier == "4"
        assert trading.get_asset("MSFT").easy_to_borrow is False
