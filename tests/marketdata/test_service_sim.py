"""market-data against the Alpaca-compatible simulator, over a real websocket and a real ZMQ SUB.

Only Alpaca's servers are replaced (by our simulator); alpaca-py, validation and the bus are real.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import msgpack
import pytest
from prometheus_client import REGISTRY

from tradingsystem.broker import data_stream_url
from tradingsystem.common import wire
from tradingsystem.common.bus import Subscriber
from tradingsystem.common.config import BusSettings, MarketDataSettings, Settings, SimSettings
from tradingsystem.common.runtime import Health
from tradingsystem.marketdata.service import SERVICE, MarketDataService
from tradingsystem_testing import eventually, free_port
from tradingsystem_testing.sim import SimulatorThread

SYMBOLS = ["AAPL", "MSFT"]
INVALID = ("bad_price", "crossed_quote", "bad_bar")


def dropped(reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "tradingsystem_messages_dropped_total", {"service": SERVICE, "reason": reason}
        )
        or 0.0
    )


def reconnects() -> float:
    return REGISTRY.get_sample_value("tradingsystem_marketdata_reconnects_total") or 0.0


class Tap:
    """Everything the service publishes, with a bounded wait."""

    def __init__(self, endpoint: str) -> None:
        self.sub = Subscriber(endpoint, [b""])
        self.got: list[wire.Msg] = []

    def drain_until(self, cond: Callable[[], bool], timeout: float = 15.0) -> None:
        eventually(cond, "the condition", timeout=timeout, every=0, tick=self._drain)

    def _drain(self) -> None:
        if self.sub.sock.poll(50):
            while self.sub.sock.poll(0):
                self.got.append(self.sub.recv().msg)

    def ticks(self) -> list[wire.Trade | wire.Quote | wire.Bar]:
        return [m for m in self.got if isinstance(m, wire.Trade | wire.Quote | wire.Bar)]


@pytest.fixture
def pipeline() -> Iterator[tuple[SimulatorThread, MarketDataService, Tap]]:
    with SimulatorThread(SYMBOLS, tick_rate=50, bar_every=20) as sim:
        settings = Settings(
            symbols=SYMBOLS,
            sim=SimSettings(port=sim.port),
            bus=BusSettings(market_data=f"tcp://127.0.0.1:{free_port()}", heartbeat_interval_s=0.2),
            market_data=MarketDataSettings(reconnect_min_s=0.05, reconnect_max_s=0.2),
        )
        assert data_stream_url(settings) == f"ws://127.0.0.1:{sim.port}/v2/iex"
        tap = Tap(settings.bus.market_data)
        svc = MarketDataService(settings, Health(SERVICE)).start()
        try:
            yield sim, svc, tap
        finally:
            svc.stop()
            tap.sub.close()
        assert svc._thread is not None and not svc._thread.is_alive()


def test_streams_validated_ticks_and_drops_injected_bad_ones(
    pipeline: tuple[SimulatorThread, MarketDataService, Tap],
) -> None:
    sim, svc, tap = pipeline
    tap.drain_until(lambda: svc.health.ready and len({type(t) for t in tap.ticks()}) == 3)
    for t in tap.ticks():
        assert t.symbol in SYMBOLS and t.origin_ts > 0 and t.seq > 0
    assert any(isinstance(m, wire.Heartbeat) and m.service == SERVICE for m in tap.got)

    before = {r: dropped(r) for r in INVALID}
    ooo = dropped("out_of_order")
    tap.got.clear()
    sim.faults.malformed_ticks_next = 12
    tap.drain_until(lambda: sum(dropped(r) - before[r] for r in INVALID) >= 12)
    sim.faults.out_of_order_ticks_next = 4
    tap.drain_until(lambda: dropped("out_of_order") - ooo >= 4)
    tap.drain_until(lambda: len(tap.ticks()) > 50)  # and the good ticks keep flowing

    assert sum(dropped(r) - before[r] for r in INVALID) == 12
    assert dropped("out_of_order") - ooo == 4
    for t in tap.ticks():  # nothing invalid was forwarded
        if isinstance(t, wire.Trade):
            assert t.price > 0
        elif isinstance(t, wire.Quote):
            assert 0 < t.bid <= t.ask
        else:
            assert t.low <= min(t.open, t.close) <= max(t.open, t.close) <= t.high


def test_a_frame_with_bad_fields_still_delivers_the_valid_ticks_after_them(
    pipeline: tuple[SimulatorThread, MarketDataService, Tap],
) -> None:
    sim, svc, tap = pipeline
    tap.drain_until(lambda: svc.health.ready and len(tap.ticks()) > 0)
    reasons = ("malformed", "bad_price")
    before = {r: dropped(r) for r in reasons}
    now = time.time_ns()
    t = msgpack.Timestamp.from_unix_nano(now)
    bar = {"T": "b", "S": "AAPL", "o": 10.0, "h": 11.0, "l": 9.0, "c": 10.5, "t": t}
    frame = [  # one websocket frame, written by hand onto the simulator's live data connection
        {"T": "t", "S": "AAPL", "i": [1], "p": 10.0, "s": 1, "t": t},  # unhashable trade id
        {**bar, "v": 1, "vw": math.nan},
        {**bar, "v": 2, "n": math.nan},
        {"T": "t", "S": "AAPL", "i": 987_654_321, "p": 10.0, "s": 4321, "t": t},
        {**bar, "v": 4321, "vw": 10.2, "n": 7},
    ]
    assert sim.call(lambda: [c.send(frame) for c in list(sim.data.clients)]) == [True]

    def markers() -> list[wire.Trade | wire.Bar]:
        trades = [m for m in tap.ticks() if isinstance(m, wire.Trade) and m.size == 4321]
        return [*trades, *(m for m in tap.ticks() if isinstance(m, wire.Bar) and m.volume == 4321)]

    tap.drain_until(lambda: len(markers()) == 2)
    assert [type(m) for m in markers()] == [wire.Trade, wire.Bar] and markers()[1].vwap == 10.2
    assert {r: dropped(r) - before[r] for r in reasons} == {"malformed": 2, "bad_price": 1}


@pytest.mark.parametrize("clean", [True, False], ids=["clean-close", "tcp-drop"])
def test_reconnects_after_the_server_closes_the_stream(
    pipeline: tuple[SimulatorThread, MarketDataService, Tap], clean: bool
) -> None:
    sim, svc, tap = pipeline
    tap.drain_until(lambda: svc.health.ready and len(tap.ticks()) > 0)
    n0 = reconnects()
    assert sim.disconnect("data", clean=clean) == 1
    tap.drain_until(lambda: reconnects() >= n0 + 1)
    tap.got.clear()
    tap.drain_until(lambda: svc.health.ready and len(tap.ticks()) > 20)
    assert reconnects() == n0 + 1
    assert sim.status()["data_clients"] == 1


def test_rejected_keys_keep_it_unready_and_secrets_out_of_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "WRONG-SECRET-d41d8cd9"
    with SimulatorThread(SYMBOLS, tick_rate=50) as sim:
        settings = Settings(
            symbols=SYMBOLS,
            sim=SimSettings(port=sim.port),
            alpaca={"api_key": "SIMKEY", "secret_key": secret},
            bus=BusSettings(market_data=f"tcp://127.0.0.1:{free_port()}", heartbeat_interval_s=0.2),
            market_data=MarketDataSettings(reconnect_min_s=0.05, reconnect_max_s=0.2),
        )
        tap = Tap(settings.bus.market_data)
        caplog.set_level("DEBUG")
        svc = MarketDataService(settings, Health(SERVICE)).start()
        try:
            # Heartbeats flow (the service is alive) while auth keeps failing and it retries.
            tap.drain_until(lambda: sum(isinstance(m, wire.Heartbeat) for m in tap.got) >= 3)
            tap.drain_until(lambda: caplog.text.count("auth failed") >= 2)
            assert not svc.health.ready
            assert tap.ticks() == []
            assert all(m.state == "disconnected" for m in tap.got if isinstance(m, wire.Heartbeat))
        finally:
            svc.stop()
            tap.sub.close()
    assert secret not in caplog.text
    assert secret not in repr(settings)
