"""Smoke test of the pipeline benchmark in a tiny configuration: it runs end to end against the
real services, produces samples at every measured point and prints its tables.
No timing assertions: the numbers depend on the machine."""

from __future__ import annotations

import itertools

import pytest

from bench import pipeline

pytestmark = pytest.mark.e2e

TINY = pipeline.Config(
    rates=(500,),
    seconds=1.0,
    order_rate=50.0,
    exec_seconds=1.0,
    exec_order_rate=10.0,
    floor_orders=5,
    warmup_s=0.5,
    ladder=(5_000,),
    ladder_seconds=0.5,
    raw_messages=5_000,
    raw_seconds=1.0,
)


def test_latency_collects_samples_at_every_endpoint() -> None:
    results = pipeline.latency(TINY)
    (two,), (three,) = results.two_hop, results.three_hop
    assert two.ticks == three.ticks == 500
    assert two.signals and two.intents
    assert not two.acks  # no execution engine in the 2-hop phase
    assert three.signals and three.intents and three.acks
    assert three.submit[2] > 0  # the execution engine's own histogram saw the orders
    assert all(s > 0 for s in (*two.intents, *three.acks))  # origin_ts was carried through
    assert two.rejections == three.rejections == 0  # the bench limits never bind
    # Every service hop is measured by joining the messages on their keys.
    assert two.signal_hop and two.risk_hop and not two.exec_hop
    assert len(three.exec_hop) == len(three.acks)
    assert len(three.floor) == TINY.floor_orders  # the execution floor, in the same run
    assert results.raw[500].received == 500  # the raw hop at the same tick rate
    table = pipeline.latency_table(results, TINY)
    for endpoint in (
        "raw ZeroMQ hop",
        "signal-bridge hop",
        "risk-manager hop",
        "execution hop",
        "execution floor",
        "tick -> approved order",
        "tick -> submit start",
        "tick -> broker ack",
    ):
        assert endpoint in table


def test_throughput_ladder_and_raw_hop_count_every_message() -> None:
    (step,) = pipeline.throughput(TINY)
    assert step.sent == 2_500
    assert step.received == step.sent and step.gaps == 0  # far below capacity: nothing lost
    assert "market-data PUB -> signal-bridge" in pipeline.throughput_table([step])
    for rate in (None, 5_000):
        hop = pipeline.raw_hop(TINY.raw_messages, rate)
        assert (hop.sent, hop.received, hop.gaps) == (5_000, 5_000, 0)
        assert all(isinstance(p, float) and p > 0 for p in hop.latency_us)
    assert "one raw hop" in pipeline.raw_table([hop])


def test_percentiles_and_histogram_quantile() -> None:
    p50, p99, p999 = pipeline.percentiles_us(list(range(1_000, 1_001_000, 1_000)))
    assert p50 == pytest.approx(500.5) and p99 == pytest.approx(990.01) and p999 == pytest.approx(999.001)
    assert pipeline.percentiles_us([]) == ("-", "-", "-")
    name = f"{pipeline.ORDER_HIST}_bucket"
    before = {f"{name}{{le=0.001}}": 1.0, f"{name}{{le=0.01}}": 1.0, f"{name}{{le=+Inf}}": 1.0}
    after = {f"{name}{{le=0.001}}": 51.0, f"{name}{{le=0.01}}": 101.0, f"{name}{{le=+Inf}}": 101.0}
    assert pipeline.hist_quantile_us(before, after, 0.5) == "<= 1,000"
    assert pipeline.hist_quantile_us(before, after, 0.99) == "<= 10,000"
    assert pipeline.hist_quantile_us(before, before, 0.5) == "-"


def test_triangle_feed_signals_once_per_turn() -> None:
    from tradingsystem.signals.engine import SignalEngine
    from tradingsystem.signals.strategies import StrategyFactory

    feed = pipeline.TriangleFeed(pipeline.SYMBOLS, leg=10)
    engine = SignalEngine(
        pipeline.SYMBOLS, StrategyFactory("ma_crossover", {"fast": 1, "slow": 2, "average": "ema"})
    )
    at = [n for n in range(4 * 200) if engine.on_tick(feed.next()) is not None]
    # 200 ticks per symbol = 20 legs each, a signal at every turn (the first, partial leg of a
    # phase-shifted symbol only sets the state).
    assert 4 * 19 <= len(at) <= 4 * 20
    # The symbols' turns are spread: no two signals in one round of ticks (no burst of orders).
    assert min(b - a for a, b in itertools.pairwise(at)) >= len(pipeline.SYMBOLS)


def test_ingest_ladder_counts_every_tick_through_the_market_data_service() -> None:
    from bench import ingest

    steps = ingest.ladder((250,), 0.5)
    service = next(s for s in steps if s.client == "market-data service")
    ceiling = next(s for s in steps if s.client != "market-data service")
    assert service.sent > 0 and service.lost == 0 and service.dropped == 0  # far below capacity
    assert service.sustained and ceiling.sustained
    assert "market-data ingest" in ingest.table(steps)
