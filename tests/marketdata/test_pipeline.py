"""Raw Alpaca messages through conversion, validation and aggregation: what is emitted, what is counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
from prometheus_client import REGISTRY

from tradingsystem.common import wire
from tradingsystem.common.config import ConfigError, MarketDataSettings, Settings, SimSettings, load_settings
from tradingsystem.marketdata.pipeline import SERVICE, TickPipeline

S = 1_000_000_000
NOW = 1_700_000_000 * S


def dropped(reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "tradingsystem_messages_dropped_total", {"service": SERVICE, "reason": reason}
        )
        or 0.0
    )


def ts(ns: int) -> msgpack.Timestamp:
    return msgpack.Timestamp.from_unix_nano(ns)


def pipeline(**md: Any) -> tuple[TickPipeline, list[tuple[wire.Msg, str]]]:
    out: list[tuple[wire.Msg, str]] = []
    settings = Settings(symbols=["AAPL"], market_data=MarketDataSettings(**md))
    return TickPipeline(settings, lambda m, k: out.append((m, k))), out


def test_malformed_messages_are_counted_and_never_emitted() -> None:
    p, out = pipeline()
    before = dropped("malformed")
    p.on_trade({"T": "t", "S": "AAPL", "p": "abc", "s": 1, "t": ts(NOW)}, NOW)
    p.on_trade({"T": "t", "S": "AAPL", "s": 1, "t": ts(NOW)}, NOW)
    p.on_quote({"T": "q", "S": "AAPL", "bp": 1.0, "bs": 1, "ap": 1.1, "as": 1, "t": "yesterday"}, NOW)
    p.on_bar({"T": "b", "S": "AAPL", "o": None, "h": 1, "l": 1, "c": 1, "v": 1, "t": ts(NOW)}, NOW)
    assert out == []
    assert dropped("malformed") == before + 4


def test_invalid_ticks_are_counted_by_reason_and_valid_ones_emitted_with_receive_time() -> None:
    p, out = pipeline()
    crossed, bad_price = dropped("crossed_quote"), dropped("bad_price")
    p.on_quote({"T": "q", "S": "AAPL", "bp": 1.2, "bs": 1, "ap": 1.1, "as": 1, "t": ts(NOW)}, NOW)
    p.on_trade({"T": "t", "S": "AAPL", "i": 1, "p": -5.0, "s": 1, "t": ts(NOW)}, NOW)
    p.on_trade({"T": "t", "S": "AAPL", "i": 2, "p": 5.0, "s": 1, "t": ts(NOW)}, NOW + 7)
    assert dropped("crossed_quote") == crossed + 1 and dropped("bad_price") == bad_price + 1
    ((msg, kind),) = out
    assert kind == "trade" and isinstance(msg, wire.Trade)
    assert (msg.price, msg.exch_ts, msg.origin_ts) == (5.0, NOW, NOW + 7)


def test_aggregation_emits_bars_from_trades_and_by_timer() -> None:
    p, out = pipeline(bar_interval_s=1, trades=False)
    for i, price in enumerate((10.0, 11.0, 9.0)):
        p.on_trade({"S": "AAPL", "i": i, "p": price, "s": 2, "t": ts(NOW + i * S // 4)}, NOW)
    assert out == []  # trades not forwarded (trades=False), bar still open
    p.on_trade({"S": "AAPL", "i": 9, "p": 12.0, "s": 1, "t": ts(NOW + S)}, NOW + S)
    ((bar, kind),) = out
    assert kind == "bar" and isinstance(bar, wire.Bar)
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.start_ts) == (10, 11, 9, 9, 6, NOW)
    p.on_timer(NOW + 2 * S)
    assert isinstance(out[-1][0], wire.Bar) and out[-1][0].start_ts == NOW + S and len(out) == 2


def test_settings_that_would_subscribe_nothing_fail_at_start() -> None:
    with pytest.raises(ConfigError, match=r"market_data: .*at least one of trades, quotes, bars"):
        load_settings(market_data={"trades": False, "quotes": False, "bars": False})
    with pytest.raises(ConfigError, match="reconnect_min_s"):
        load_settings(market_data={"reconnect_min_s": 5, "reconnect_max_s": 1})


def test_sim_replay_accepts_recorded_timestamps(tmp_path: Path) -> None:
    out: list[tuple[wire.Msg, str]] = []
    settings = Settings(symbols=["AAPL"], sim=SimSettings(replay_path=tmp_path / "ticks.csv"))
    p = TickPipeline(settings, lambda m, k: out.append((m, k)))
    p.on_trade({"S": "AAPL", "i": 1, "p": 5.0, "s": 1, "t": ts(NOW)}, NOW + 86_400 * S)
    assert len(out) == 1


class Exploding(dict[str, Any]):
    """A message whose every field lookup fails in a way no converter anticipates."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")


def test_one_bad_message_in_a_frame_costs_only_itself_and_is_counted_by_reason() -> None:
    p, out = pipeline()
    reasons = ("malformed", "bad_price", "bad_size", "internal_error")
    before = {r: dropped(r) for r in reasons}
    bar = {"T": "b", "S": "AAPL", "o": 10.0, "h": 11.0, "l": 9.0, "c": 10.5, "v": 100}
    frame: list[tuple[Any, dict[str, Any]]] = [
        (p.on_trade, {"T": "t", "S": "AAPL", "i": 1, "p": 10.0, "s": 1, "t": ts(NOW)}),
        (p.on_trade, {"T": "t", "S": "AAPL", "i": [2], "p": 10.0, "s": 1, "t": ts(NOW)}),  # unhashable id
        (p.on_bar, {**bar, "t": ts(NOW - 60 * S), "vw": float("nan")}),
        (p.on_bar, {**bar, "t": ts(NOW - 59 * S), "n": float("nan")}),
        (p.on_bar, {**bar, "t": ts(NOW - 58 * S), "n": -4}),
        (p.on_quote, Exploding(T="q", S="AAPL")),
        (p.on_trade, {"T": "t", "S": "AAPL", "i": 3, "p": 10.1, "s": 1, "t": ts(NOW)}),
        (p.on_bar, {**bar, "t": ts(NOW - 57 * S), "vw": 10.2, "n": 7}),
    ]
    for handler, msg in frame:  # as alpaca-py dispatches a frame: one handler call per message
        handler(msg, NOW)
    assert [(type(m).__name__, k) for m, k in out] == [("Trade", "trade"), ("Trade", "trade"), ("Bar", "bar")]
    assert {r: dropped(r) - before[r] for r in reasons} == {
        "malformed": 2,
        "bad_price": 1,
        "bad_size": 1,
        "internal_error": 1,
    }
