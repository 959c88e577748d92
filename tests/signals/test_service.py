"""signal-bridge in-process over real ZeroMQ: ticks in on a PUB, signals out on its PUB."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tradingsystem.common import wire
from tradingsystem.common.bus import Publisher, Subscriber
from tradingsystem.common.config import BusSettings, ConfigError, Settings, SignalSettings
from tradingsystem.common.runtime import Health, HttpEndpoint
from tradingsystem.signals.engine import SignalEngine
from tradingsystem.signals.features import FEATURE_NAMES
from tradingsystem.signals.service import SERVICE, SignalService, build_engine
from tradingsystem_testing import eventually, free_port


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def settings(port: Callable[[], int], **signals: object) -> Settings:
    return Settings(
        symbols=["AAPL"],
        bus=BusSettings(
            market_data=f"tcp://127.0.0.1:{port()}",
            signals=f"tcp://127.0.0.1:{port()}",
            heartbeat_interval_s=0.2,
        ),
        signals=SignalSettings(strategy="ma_crossover", params={"fast": 3, "slow": 8}, **signals),
    )


@pytest.fixture
def running() -> Iterator[tuple[Settings, Publisher, Subscriber, SignalService]]:
    s = settings(free_port)
    md = Publisher(s.bus.market_data, service="market-data")
    svc = SignalService(s, Health(SERVICE)).start()
    out = Subscriber(s.bus.signals, [b"signal.", b"hb"])
    try:
        yield s, md, out, svc
    finally:
        svc.stop()
        out.close()
        md.close()


def test_ticks_in_signals_out(running: tuple[Settings, Publisher, Subscriber, SignalService]) -> None:
    _, md, out, svc = running
    # Ready only once market data is heard from (heartbeats count).
    assert not svc.health.ready
    eventually(lambda: svc.health.ready, "readiness", tick=lambda: md.heartbeat(every=0.05))
    # Its own heartbeats prove the output side is connected before the ticks go out.
    eventually(lambda: out.sock.poll(0) != 0, "its heartbeat", tick=lambda: md.heartbeat(every=0.05))

    emitted = metric("tradingsystem_signals_total", strategy="ma_crossover", action="buy")
    prices = [100.0 - i for i in range(30)] + [71.0 + i for i in range(30)]
    for i, p in enumerate(prices):
        md.publish(wire.Trade(symbol="AAPL", price=p, size=1, exch_ts=i, origin_ts=10_000 + i))

    signals: list[wire.Signal] = []
    deadline = time.monotonic() + 10
    while not signals and time.monotonic() < deadline:
        if out.sock.poll(100):
            r = out.recv()
            if isinstance(r.msg, wire.Signal):
                signals.append(r.msg)
    assert len(signals) == 1
    sig = signals[0]
    assert (sig.symbol, sig.action, sig.strategy) == ("AAPL", wire.Action.BUY, "ma_crossover")
    assert 0 < sig.strength <= 1 and sig.seq == 1 and sig.ts > 0
    assert prices[sig.origin_ts - 10_000] == sig.price and sig.origin_ts - 10_000 >= 30
    assert set(sig.features) == {"ma_fast", "ma_slow", "ma_spread_pct"}  # no model: the strategy's own
    assert metric("tradingsystem_signals_total", strategy="ma_crossover", action="buy") == emitted + 1


def first_signal(engine: SignalEngine) -> wire.Signal:
    for i, p in enumerate([100.0 - i for i in range(30)] + [71.0 + i for i in range(30)]):
        sig = engine.on_tick(wire.Trade(symbol="AAPL", price=p, size=1, exch_ts=i))
        if sig is not None:
            return sig
    raise AssertionError("no signal")


def test_the_common_feature_set_is_sent_when_asked_for_and_decides_nothing() -> None:
    plain = first_signal(build_engine(settings(free_port)))
    full = first_signal(build_engine(settings(free_port, publish_features=True)))
    assert set(full.features) == {*plain.features, *FEATURE_NAMES}
    assert (full.action, full.price, full.strength) == (plain.action, plain.price, plain.strength)


def test_malformed_payloads_and_gaps_are_counted(
    running: tuple[Settings, Publisher, Subscriber, SignalService],
) -> None:
    _, md, _, svc = running
    malformed0 = metric("tradingsystem_messages_dropped_total", service=SERVICE, reason="malformed")
    gaps0 = metric("tradingsystem_sequence_gap_messages_total", service=SERVICE, topic="trade")
    in0 = metric("tradingsystem_messages_received_total", service=SERVICE, topic="trade")
    eventually(lambda: svc.health.ready, "readiness", tick=lambda: md.heartbeat(every=0.05))

    md.sock.send_multipart([b"trade.AAPL", b"\x93garbage"])
    md.publish(wire.Trade(symbol="AAPL", price=1, size=1, exch_ts=1))
    md._seq[b"trade.AAPL"] += 3  # as if three trades were lost upstream
    md.publish(wire.Trade(symbol="AAPL", price=1, size=1, exch_ts=2))

    eventually(
        lambda: metric("tradingsystem_messages_received_total", service=SERVICE, topic="trade") >= in0 + 2,
        "two trades received",
    )
    assert (
        metric("tradingsystem_messages_dropped_total", service=SERVICE, reason="malformed") == malformed0 + 1
    )
    assert metric("tradingsystem_sequence_gap_messages_total", service=SERVICE, topic="trade") == gaps0 + 3
    assert REGISTRY.get_sample_value(
        "tradingsystem_hop_latency_seconds_count", {"service": SERVICE, "topic": "trade"}
    )


def test_a_restarted_market_data_publisher_is_counted(
    running: tuple[Settings, Publisher, Subscriber, SignalService],
) -> None:
    _, md, _, svc = running
    restarts = ("tradingsystem_publisher_restarts_total", {"service": SERVICE, "publisher": "market-data"})
    eventually(lambda: svc.health.ready, "readiness", tick=lambda: md.heartbeat(every=0.05))
    before = metric(restarts[0], **restarts[1])
    md.epoch += 1  # what a replaced market-data pod looks like on the wire
    eventually(
        lambda: metric(restarts[0], **restarts[1]) == before + 1,
        "the new epoch counted",
        tick=lambda: md.heartbeat(every=0.05),
    )


def test_readiness_over_http_follows_upstream() -> None:
    s = settings(free_port)
    health = Health(SERVICE)
    http = HttpEndpoint("127.0.0.1", 0, health).start()
    svc = SignalService(s, health).start()
    md = Publisher(s.bus.market_data, service="market-data")

    def readyz() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http.port}/readyz", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    try:
        assert readyz() == 503
        eventually(lambda: readyz() == 200, "/readyz 200", tick=lambda: md.heartbeat(every=0.05))
        md.close()  # market data goes silent -> not ready again
        eventually(lambda: readyz() == 503, "/readyz 503")
        with urllib.request.urlopen(f"http://127.0.0.1:{http.port}/healthz", timeout=2) as r:
            assert json.loads(r.read()) == {"live": True}
    finally:
        svc.stop()
        http.stop()


def test_bad_strategy_config_fails_at_start_naming_the_field(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"signals\.params\.slow"):
        SignalService(
            settings(free_port).model_copy(update={"signals": SignalSettings(params={"slow": "x"})})
        )
    with pytest.raises(ConfigError, match="unknown strategy"):
        SignalService(settings(free_port).model_copy(update={"signals": SignalSettings(strategy="magic")}))
    bad = tmp_path / "m.json"
    bad.write_text('{"format": "linear/1", "features": ["nope"], "weights": [1]}')
    with pytest.raises(ConfigError, match="unknown features"):
        SignalService(settings(free_port).model_copy(update={"signals": SignalSettings(model_path=bad)}))
