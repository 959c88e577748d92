"""Price sources (determinism, shape, replay) and the fault/rate-limit state."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import pytest

from tradingsystem.common.money import CENT
from tradingsystem.sim.faults import Faults, RateLimiter
from tradingsystem.sim.prices import ReplayMarket, SyntheticMarket, history_bars, start_price


def run(seed: int, steps: int = 200) -> list[tuple[str, str, object, object]]:
    market = SyntheticMarket(["AAPL", "MSFT"], seed, bar_every=10)
    out = []
    for i in range(steps):
        for t in market.step(i):
            out.append((t.kind, t.symbol, t.price or t.bid, t.size or t.ask))
    return out


def test_synthetic_prices_depend_only_on_the_seed() -> None:
    assert run(1) == run(1)
    assert run(1) != run(2)


def test_synthetic_ticks_are_well_formed_cents() -> None:
    market = SyntheticMarket(["AAPL"], 5, bar_every=4)
    ticks = [t for i in range(400) for t in market.step(i)]
    quotes = [t for t in ticks if t.kind == "q"]
    trades = [t for t in ticks if t.kind == "t"]
    bars = [t for t in ticks if t.kind == "b"]
    assert len(quotes) == len(trades) == 400 and len(bars) == 100
    for q in quotes:
        assert q.bid is not None and q.ask is not None
        assert q.bid < q.ask and q.bid == q.bid.quantize(CENT) and q.ask == q.ask.quantize(CENT)
    for t in trades:
        assert t.price is not None and t.price == t.price.quantize(CENT) and t.size
    assert [t.trade_id for t in trades] == list(range(1, 401))
    for b in bars:
        assert b.low is not None and b.high is not None and b.vwap is not None
        assert b.low <= b.open <= b.high and b.low <= b.vwap <= b.high and b.trade_count == 4


def test_history_ends_at_the_live_start_price_on_completed_periods() -> None:
    end_ns = 1_700_000_123 * 10**9
    bars = history_bars("AAPL", 9, start_price(9, "AAPL"), end_ns, 50, 5)
    assert len(bars) == 50 and bars[-1].close == start_price(9, "AAPL")
    step = 5 * 60 * 10**9
    assert bars[-1].ts_ns + step <= end_ns and all(b.ts_ns % step == 0 for b in bars)
    assert all(b.ts_ns - a.ts_ns == step for a, b in itertools.pairwise(bars))


def test_replay_reads_alpaca_field_names(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    path.write_text(
        "T,S,t,p,s,bp,bs,ap,as,o,h,l,c,v,n,vw\n"
        "q,AAPL,2024-01-02T14:30:00.000001Z,,,189.99,300,190.01,200,,,,,,,\n"
        "t,AAPL,1704205800000002000,190.00,100,,,,,,,,,,,\n"
        "b,AAPL,2024-01-02T14:31:00Z,,,,,,,189.5,190.5,189.0,190.0,12000,87,189.9\n"
    )
    market = ReplayMarket(path, per_step=2)
    first, second = market.step(0), market.step(0)
    assert market.exhausted and market.step(0) == []
    q, t = first
    assert (q.bid, q.ask_size, q.ts_ns) == (Decimal("189.99"), 200, 1704205800000001000)
    assert (t.price, t.size, t.ts_ns) == (Decimal("190.00"), 100, 1704205800000002000)
    assert second[0].vwap == Decimal("189.9") and second[0].trade_count == 87


def test_replay_rejects_unknown_record_types(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("T,S,t\nx,AAPL,1\n")
    with pytest.raises(ValueError, match="unknown record types"):
        ReplayMarket(path)


def test_fault_counters_count_down_and_updates_are_validated() -> None:
    faults = Faults()
    faults.update({"http_429_next": 2, "latency_s": 0.5})
    assert [faults.take("http_429_next") for _ in range(3)] == [True, True, False]
    for bad in ({"nope": 1}, {"http_429_next": -1}, {"latency_s": "slow"}, {"reject_next": True}):
        with pytest.raises(ValueError):
            faults.update(bad)
    assert faults.latency_s == 0.5


def test_rate_limiter_windows_are_per_key_and_per_minute() -> None:
    limiter = RateLimiter()
    results = [limiter.hit("k", 2, now=120.0 + i)[0] for i in range(3)]
    assert results == [True, True, False]
    assert limiter.hit("other", 2, now=125.0)[0]
    allowed, headers = limiter.hit("k", 2, now=180.0)
    assert allowed and headers == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": "240",
    }
