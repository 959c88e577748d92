"""One raw ZeroMQ hop: the floor every service hop is compared with.

``Publisher`` -> ``Subscriber`` in another process (so the two do not share a GIL), decode and
gap check only, optionally over CurveZMQ as the services run it. Paced (``rate``): latency
``receive time - ts`` per message; unpaced: capacity (decoded messages per second). Used by
``bench.pipeline`` (the floor of its table) and ``bench.curve_hop`` (plain vs Curve).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from tradingsystem.common import wire
from tradingsystem.common.bus import Publisher, Subscriber, load_curve
from tradingsystem_testing import free_port

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN"]
TICK_STEP = 1e-5  # relative price step of the triangle wave: far inside the risk price band
SERVER, CLIENT = "bench-server", "bench-client"  # Curve key names (``gen_curve_keypair``)


def percentiles_us(samples_ns: list[int]) -> tuple[float | str, ...]:
    """p50, p99, p999 in microseconds from raw samples (linear interpolation)."""
    if not samples_ns:
        return ("-", "-", "-")
    p = np.percentile(np.asarray(samples_ns, dtype=np.float64), [50, 99, 99.9]) / 1e3
    return float(p[0]), float(p[1]), float(p[2])


class TriangleFeed:
    """Trades round-robin over the symbols; each symbol's price rises for ``leg`` of its ticks,
    then falls for ``leg``: a fast=1/slow=2 EMA crossover signals at every turn, so one signal
    per ``leg`` ticks overall. The symbols' waves are phase-shifted evenly, so their turns (the
    orders) are spread over time instead of arriving as one burst per turn."""

    def __init__(self, symbols: list[str], leg: int) -> None:
        self.symbols = symbols
        self.leg = max(2, leg)
        self._n = 0
        # A symbol turns every ``leg`` of its ticks (top and bottom): spread the turns over that.
        self._phase = [round(self.leg * k / len(symbols)) for k in range(len(symbols))]

    def next(self) -> wire.Trade:
        i, k = divmod(self._n, len(self.symbols))
        self._n += 1
        pos = (i + self._phase[k]) % (2 * self.leg)
        level = pos if pos < self.leg else 2 * self.leg - pos
        now = time.time_ns()
        price = (100.0 + 10 * k) * (1 + TICK_STEP * level)
        return wire.Trade(symbol=self.symbols[k], price=price, size=1.0, exch_ts=now, origin_ts=now)


def paced_send(pub: Publisher, feed: TriangleFeed, rate: int, n: int) -> float:
    """Publish ``n`` ticks at ``rate``/s (1 ms batches); returns the seconds it took."""
    t0 = time.perf_counter()
    sent = 0
    while sent < n:
        due = min(n, int((time.perf_counter() - t0) * rate) + 1)
        while sent < due:
            pub.publish(feed.next())
            sent += 1
        left = (sent / rate) - (time.perf_counter() - t0)
        if left > 0:
            time.sleep(min(left, 0.001))
    return time.perf_counter() - t0


@dataclass
class RawHop:
    curve: bool
    rate: int | None  # None: unpaced
    sent: int
    send_s: float
    received: int
    gaps: int
    recv_s: float
    latency_us: tuple[float | str, ...]  # p50, p99, p999 (paced only meaningful)

    @property
    def decode_per_s(self) -> float:
        return self.received / self.recv_s if self.recv_s > 0 else 0.0


def _subscriber(endpoint: str, keys_dir: str | None, n: int, ready: Any, out: Any) -> None:
    curve = load_curve(Path(keys_dir), CLIENT, server=SERVER) if keys_dir else None
    sub = Subscriber(endpoint, [wire.TOPIC_TRADE, wire.TOPIC_HEARTBEAT], curve=curve)
    while not sub.sock.poll(100):  # a heartbeat proves the handshake and subscription are done
        pass
    sub.recv()
    ready.set()
    count = gaps = 0
    first = last = 0.0
    latencies: list[int] = []
    while count < n:
        try:
            r = sub.recv(zmq.NOBLOCK)
        except zmq.Again:
            if not sub.sock.poll(2000):
                break
            continue
        if isinstance(r.msg, wire.Trade):
            latencies.append(time.time_ns() - r.msg.ts)
            last = time.perf_counter()
            first = first or last
            count += 1
            gaps += r.gap
    out.put((count, gaps, last - first, percentiles_us(latencies)))
    sub.close()


def raw_hop(n: int, rate: int | None = None, keys_dir: Path | None = None) -> RawHop:
    """``n`` trades over one hop to a subscriber process; ``keys_dir``: over CurveZMQ."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    curve = load_curve(keys_dir, SERVER) if keys_dir else None
    # Room for the heartbeats still queued from the wait below, or the last trades would drop.
    pub = Publisher(endpoint, service="bench-raw", curve=curve, sndhwm=n + 10_000)
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    args = (endpoint, str(keys_dir) if keys_dir else None, n, ready, out)
    proc = ctx.Process(target=_subscriber, args=args, daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 30
        while not ready.is_set() and time.monotonic() < deadline:
            pub.publish(wire.Heartbeat(service="bench-raw"))
            time.sleep(0.01)
        feed = TriangleFeed(SYMBOLS, 10_000)
        if rate is None:
            t0 = time.perf_counter()
            for _ in range(n):
                pub.publish(feed.next())
            send_s = time.perf_counter() - t0
        else:
            send_s = paced_send(pub, feed, rate, n)
        count, gaps, recv_s, latency_us = out.get(timeout=120)
        return RawHop(keys_dir is not None, rate, n, send_s, count, gaps, recv_s, latency_us)
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
        pub.close()
