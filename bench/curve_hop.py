"""The cost of CurveZMQ on one bus hop: the same Publisher -> Subscriber hop (subscriber in another
process, decode + gap check) with and without Curve, as the services run it (keys from files
written by ``tradingsystem keys``, the ZAP allow-list on the publisher). Latency is measured at a
paced rate, throughput unpaced; each Curve row is also given as a ratio to the plain row of the
same round, measured moments apart, so host load moves both alike.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from bench.pipeline import SYMBOLS, TriangleFeed, _paced_send, free_port, percentiles_us
from bench.table import render
from tradingsystem.common import wire
from tradingsystem.common.bus import Publisher, Subscriber, gen_curve_keypair, load_curve

SERVER, CLIENT = "bench-server", "bench-client"


@dataclass(frozen=True)
class Config:
    rate: int = 5_000  # paced rate for the latency figures (the pipeline's latency target rate)
    paced: int = 25_000
    unpaced: int = 200_000
    rounds: int = 3


QUICK = Config(paced=5_000, unpaced=50_000, rounds=1)


@dataclass
class Hop:
    curve: bool
    rate: int | None
    sent: int
    send_s: float
    received: int
    recv_s: float
    latency_us: tuple[float | str, ...]

    @property
    def publish_per_s(self) -> float:
        return self.sent / self.send_s

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
    count, first, last = 0, 0.0, 0.0
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
    out.put((count, last - first, percentiles_us(latencies)))
    sub.close()


def hop(n: int, rate: int | None, keys_dir: Path | None) -> Hop:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    curve = load_curve(keys_dir, SERVER) if keys_dir else None
    pub = Publisher(endpoint, service="bench-curve", curve=curve, sndhwm=n)
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    args = (endpoint, str(keys_dir) if keys_dir else None, n, ready, out)
    proc = ctx.Process(target=_subscriber, args=args, daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 30
        while not ready.is_set() and time.monotonic() < deadline:
            pub.publish(wire.Heartbeat(service="bench-curve"))
            time.sleep(0.01)
        feed = TriangleFeed(SYMBOLS, 10_000)
        if rate is None:
            t0 = time.perf_counter()
            for _ in range(n):
                pub.publish(feed.next())
            send_s = time.perf_counter() - t0
        else:
            send_s = _paced_send(pub, feed, rate, n)
        count, recv_s, latency_us = out.get(timeout=120)
        return Hop(keys_dir is not None, rate, n, send_s, count, recv_s, latency_us)
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
        pub.close()


def _ratio(curve: float | str, plain: float | str) -> str:
    if isinstance(curve, str) or isinstance(plain, str) or not plain:
        return "-"
    return f"{curve / plain:.2f}x"


def table(rounds: list[tuple[Hop, Hop, Hop, Hop]], rate: int) -> str:
    """Per round: (plain paced, curve paced, plain unpaced, curve unpaced)."""
    rows = []
    for i, (pp, cp, pu, cu) in enumerate(rounds, 1):
        for paced, unpaced, base_p, base_u in ((pp, pu, pp, pu), (cp, cu, pp, pu)):
            rows.append(
                (
                    i,
                    "curve" if paced.curve else "plain",
                    *paced.latency_us[:2],
                    _ratio(paced.latency_us[0], base_p.latency_us[0]),
                    _ratio(paced.latency_us[1], base_p.latency_us[1]),
                    f"{unpaced.decode_per_s:,.0f}",
                    _ratio(unpaced.decode_per_s, base_u.decode_per_s),
                    f"{unpaced.received:,}/{unpaced.sent:,}",
                )
            )
    return render(
        ("round", "bus", "p50 us", "p99 us", "p50 ratio", "p99 ratio", "decode/s", "thru ratio", "received"),
        rows,
        f"one ZeroMQ hop, plain vs CurveZMQ: latency at {rate:,}/s paced, throughput unpaced "
        "(ratios to the plain row of the same round)",
    )


def main(quick: bool = False, cfg: Config | None = None) -> None:
    cfg = cfg or (QUICK if quick else Config())
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="bench-curve-") as tmp:
        keys = Path(tmp)
        for name in (SERVER, CLIENT):
            gen_curve_keypair(keys, name)
        rounds = [
            (
                hop(cfg.paced, cfg.rate, None),
                hop(cfg.paced, cfg.rate, keys),
                hop(cfg.unpaced, None, None),
                hop(cfg.unpaced, None, keys),
            )
            for _ in range(cfg.rounds)
        ]
    print(table(rounds, cfg.rate))
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
