"""Tick -> order latency through the three hops, and market-data -> signal-bridge throughput.

Everything runs as real processes on real TCP loopback ZeroMQ:

* **latency**: this process stands in for market-data: it binds the market-data PUB and sends
  ``wire.Trade`` at a paced rate (1 ms batches), stamping ``origin_ts`` at send. signal-bridge,
  risk-manager, execution-engine and the simulator (the broker) are child processes
  (``tradingsystem.supervisor.Pipeline``). The prices are a triangle wave per symbol and the
  strategy a 1/2 EMA crossover, so every turn of the wave is exactly one signal: the signal rate
  is set independently of the tick rate. This process subscribes to signal-bridge (``Signal``),
  risk-manager (``OrderIntent``) and execution-engine (``ExecutionReport``) and takes
  ``now - origin_ts`` from raw samples; execution's own
  ``tradingsystem_tick_to_order_latency_seconds`` (tick -> submit start) is read from /metrics.
  Two phases: *2 hops* (no execution engine yet, ``order_rate`` orders/s: enough samples for a
  p999), then *3 hops* (execution engine started, ``exec_order_rate`` orders/s: it persists
  every order with an fsync and submits serially over REST, so it takes far fewer).
* **throughput**: ticks offered to a lone signal-bridge at increasing rates; its /metrics
  counters (received, sequence gaps) tell how many arrived. Plus one raw hop:
  Publisher -> Subscriber (decode only) in a child process, paced (latency) and unpaced (capacity).

Bench-only settings (documented in docs/benchmarks.md): limits far above anything the bench
reaches, execution rate limit raised (the default 200/min would be the whole story), the
simulator's REST rate limit off, services logging at WARNING (one INFO line per signal at
hundreds of signals/s measures logging, not the pipeline).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from bench.table import render
from tradingsystem.common import wire
from tradingsystem.common.bus import Publisher, Subscriber
from tradingsystem.common.config import Settings
from tradingsystem.common.services import PIPELINE
from tradingsystem.supervisor import Pipeline, get_json, scrape, settings_yaml, total
from tradingsystem_testing import eventually, free_port

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN"]
TICK_STEP = 1e-5  # relative price step of the triangle wave: far inside the risk price band
ORDER_HIST = "tradingsystem_tick_to_order_latency_seconds"
STALL_S = 0.5  # a subscriber that takes nothing for this long has lost the rest


@dataclass(frozen=True)
class Config:
    rates: tuple[int, ...] = (1_000, 5_000, 10_000)
    seconds: float = 10.0  # measured time per rate
    order_rate: float = 300.0  # signals (= approved orders) per second, at every tick rate
    exec_order_rate: float = 20.0  # with the execution engine (it submits serially over REST)
    warmup_s: float = 1.0
    ladder: tuple[int, ...] = (10_000, 20_000, 30_000, 40_000, 50_000, 75_000, 100_000, 150_000)
    ladder_seconds: float = 2.0
    raw_messages: int = 200_000


QUICK = Config(seconds=3.0, ladder=(10_000, 30_000, 100_000), ladder_seconds=1.0, raw_messages=50_000)


# --- helpers --------------------------------------------------------------------------------
def percentiles_us(samples_ns: list[int]) -> tuple[float | str, ...]:
    """p50, p99, p999 in microseconds from raw samples (linear interpolation)."""
    if not samples_ns:
        return ("-", "-", "-")
    p = np.percentile(np.asarray(samples_ns, dtype=np.float64), [50, 99, 99.9]) / 1e3
    return float(p[0]), float(p[1]), float(p[2])


def hist_quantile_us(before: dict[str, float], after: dict[str, float], q: float) -> str:
    """Upper bucket bound holding quantile ``q`` of the observations between two scrapes."""
    buckets = []
    for key, value in after.items():
        if key.startswith(f"{ORDER_HIST}_bucket{{"):
            bound = float(key.split("le=", 1)[1].rstrip("}"))
            buckets.append((bound, value - before.get(key, 0.0)))
    buckets.sort()
    count = buckets[-1][1] if buckets else 0.0
    if count <= 0:
        return "-"
    for le, cum in buckets:
        if cum >= q * count:
            return "> 5 s" if le == float("inf") else f"<= {le * 1e6:,.0f}"
    return "-"


class TriangleFeed:
    """Trades round-robin over the symbols; each symbol's price rises for ``leg`` of its ticks,
    then falls for ``leg``: a fast=1/slow=2 EMA crossover signals at every turn, so one signal
    per ``leg`` ticks overall."""

    def __init__(self, symbols: list[str], leg: int) -> None:
        self.symbols = symbols
        self.leg = max(2, leg)
        self._n = 0

    def next(self) -> wire.Trade:
        i, k = divmod(self._n, len(self.symbols))
        self._n += 1
        pos = i % (2 * self.leg)
        level = pos if pos < self.leg else 2 * self.leg - pos
        now = time.time_ns()
        price = (100.0 + 10 * k) * (1 + TICK_STEP * level)
        return wire.Trade(symbol=self.symbols[k], price=price, size=1.0, exch_ts=now, origin_ts=now)


def bench_settings(workdir: Path) -> Settings:
    bus = {svc.section: f"tcp://127.0.0.1:{free_port()}" for svc in PIPELINE}
    return Settings.model_validate(
        {
            "mode": "sim",
            "symbols": SYMBOLS,
            "log_level": "WARNING",
            "bus": bus,
            "signals": {
                "http_port": free_port(),
                "strategy": "ma_crossover",
                "params": {"fast": 1, "slow": 2, "average": "ema"},
            },
            "risk": {
                "http_port": free_port(),
                "control_port": free_port(),
                "sizing": "fixed",
                "order_qty": 1,
                "max_order_qty": 1e6,
                "max_order_notional": 1e12,
                "max_position_qty": 1e9,
                "max_gross_exposure": 1e15,
                "max_open_positions": 1000,
                "daily_loss_limit": 1e15,
                "max_orders_per_minute": 10_000_000,
                "reconcile_on_start": False,
                "state_path": str(workdir / "risk.sqlite"),
            },
            "execution": {
                "http_port": free_port(),
                "db_path": str(workdir / "execution.sqlite"),
                "rate_limit_per_min": 10_000_000,
            },
            "sim": {"port": free_port(), "tick_rate": 1.0},
        }
    )


def _post_json(url: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


@contextlib.contextmanager
def _pipeline(settings: Settings, workdir: Path) -> Iterator[Pipeline]:
    """Child processes started with ``_start``; all stopped on exit, Ctrl-C included.
    ``workdir`` (config, logs, order store) is kept only if something failed."""
    pipe = Pipeline(settings, workdir=workdir)
    pipe.config_path.write_text(settings_yaml(settings))
    try:
        yield pipe
    finally:
        pipe.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def _start(pipe: Pipeline, name: str, feed_pub: Publisher) -> None:
    pipe.start_process(name)
    if name == "signal-bridge":
        _wait_signal_bridge(pipe, feed_pub)
    else:
        pipe.wait_ready(name)
    if name == "sim":  # the broker's 200/min REST limit is not what is measured
        _post_json(pipe.url("sim", "/_sim/faults"), {"rate_limit_per_min": 0})


def _wait_signal_bridge(pipe: Pipeline, pub: Publisher, timeout: float = 30.0) -> None:
    """signal-bridge is ready once it hears its upstream: keep heartbeating until then."""

    def ready() -> bool:
        proc = pipe.procs["signal-bridge"]
        if proc.poll() is not None:
            raise RuntimeError(f"signal-bridge exited with {proc.returncode}; see {pipe.workdir}")
        return get_json(pipe.url("signal-bridge", "/readyz"), timeout=1.0)[0] == 200

    eventually(
        ready,
        f"signal-bridge ready (see {pipe.workdir})",
        timeout=timeout,
        tick=lambda: pub.heartbeat(every=0.05),
    )


# --- latency ----------------------------------------------------------------------------------
@dataclass
class RateResult:
    rate: int
    ticks: int = 0
    seconds: float = 0.0
    signals: list[int] = field(default_factory=list)  # tick -> signal (ns)
    intents: list[int] = field(default_factory=list)  # tick -> approved order
    acks: list[int] = field(default_factory=list)  # tick -> first execution report
    rejections: int = 0
    submit: tuple[str, str, int] = ("-", "-", 0)  # execution's histogram: p50, p99, count


class LatencyBench:
    """Paced tick source plus the collectors, all in one thread (no GIL sharing)."""

    def __init__(self, pub: Publisher, settings: Settings) -> None:
        self.pub = pub
        bus = settings.bus
        self.subs = [
            Subscriber(bus.signals, [wire.TOPIC_SIGNAL]),
            Subscriber(bus.risk, [wire.TOPIC_ORDER, wire.TOPIC_REJECT]),
            Subscriber(bus.execution, [wire.TOPIC_EXEC]),
        ]
        self.poller = zmq.Poller()
        for sub in self.subs:
            self.poller.register(sub.sock, zmq.POLLIN)
        self._by_sock = {sub.sock: sub for sub in self.subs}
        self._acked: set[str] = set()
        self._intent_cids: set[str] = set()

    def close(self) -> None:
        for sub in self.subs:
            sub.close()

    def run(self, rate: int, seconds: float, order_rate: float, *, acks: bool) -> RateResult:
        """Send ``rate`` ticks/s for ``seconds``; then drain (until every order is acked if ``acks``)."""
        res = RateResult(rate)
        self._intent_cids.clear()  # only this run's orders are waited for
        feed = TriangleFeed(SYMBOLS, round(rate / order_rate))
        n_total = int(rate * seconds)
        t0 = time.perf_counter()
        while res.ticks < n_total:
            due = min(n_total, int((time.perf_counter() - t0) * rate) + 1)
            while res.ticks < due:
                self.pub.publish(feed.next())
                res.ticks += 1
            self.pub.heartbeat(every=0.5)
            self._collect(res, timeout_ms=1)
        res.seconds = time.perf_counter() - t0
        deadline = time.monotonic() + 15.0
        quiet_until = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if self._collect(res, timeout_ms=50):
                quiet_until = time.monotonic() + 0.5
            elif time.monotonic() > quiet_until and (not acks or self._intent_cids <= self._acked):
                break
            self.pub.heartbeat(every=0.5)
        return res

    def _collect(self, res: RateResult, timeout_ms: int) -> int:
        got = 0
        for sock, _ in self.poller.poll(timeout_ms):
            sub = self._by_sock[sock]
            while True:
                try:
                    msg = sub.recv(zmq.NOBLOCK).msg
                except zmq.Again:
                    break
                now = time.time_ns()
                got += 1
                if isinstance(msg, wire.Signal):
                    res.signals.append(now - msg.origin_ts)
                elif isinstance(msg, wire.OrderIntent):
                    res.intents.append(now - msg.origin_ts)
                    self._intent_cids.add(msg.client_order_id)
                elif isinstance(msg, wire.Rejection):
                    res.rejections += 1
                elif isinstance(msg, wire.ExecutionReport) and msg.client_order_id not in self._acked:
                    self._acked.add(msg.client_order_id)
                    res.acks.append(now - msg.origin_ts)
        return got


@dataclass
class LatencyResults:
    two_hop: list[RateResult]  # signal-bridge + risk-manager only, many orders
    three_hop: list[RateResult]  # plus execution-engine and the broker, fewer orders


def latency(cfg: Config) -> LatencyResults:
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    settings = bench_settings(workdir)
    pub = Publisher(settings.bus.bind_endpoint(settings.bus.market_data), service="bench-feed")
    try:
        with _pipeline(settings, workdir) as pipe:
            for name in ("sim", "risk-manager", "signal-bridge"):
                _start(pipe, name, pub)
            bench = LatencyBench(pub, settings)
            try:
                # Warm-up: connects every subscriber (slow joiner), fills the strategies' averages.
                bench.run(min(cfg.rates), cfg.warmup_s, cfg.order_rate, acks=False)
                two = [bench.run(r, cfg.seconds, cfg.order_rate, acks=False) for r in cfg.rates]
                # The two-hop phase approved orders with no execution-engine to take them; the
                # risk manager keeps them reserved and would replay them to the engine (it loses
                # no approved intent). They are not part of this measurement: start it afresh.
                pipe.stop_process("risk-manager")
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{settings.risk.state_path}{suffix}").unlink(missing_ok=True)
                _start(pipe, "risk-manager", pub)
                _start(pipe, "execution-engine", pub)
                bench.run(min(cfg.rates), cfg.warmup_s, cfg.exec_order_rate, acks=True)
                exec_metrics = pipe.url("execution-engine", "/metrics")
                three = []
                for rate in cfg.rates:
                    before = scrape(exec_metrics)
                    res = bench.run(rate, cfg.seconds, cfg.exec_order_rate, acks=True)
                    after = scrape(exec_metrics)
                    count = total(after, f"{ORDER_HIST}_count") - total(before, f"{ORDER_HIST}_count")
                    res.submit = (
                        hist_quantile_us(before, after, 0.5),
                        hist_quantile_us(before, after, 0.99),
                        int(count),
                    )
                    three.append(res)
                return LatencyResults(two, three)
            finally:
                bench.close()
    finally:
        pub.close()


def latency_table(results: LatencyResults, cfg: Config) -> str:
    rows: list[tuple[object, ...]] = []
    for phase, runs in (("2 hops", results.two_hop), ("3 hops", results.three_hop)):
        for r in runs:
            head = (f"{r.rate:,}", f"{r.ticks / r.seconds:,.0f}", phase)
            rows.append((*head, "tick -> signal", len(r.signals), *percentiles_us(r.signals)))
            rows.append(("", "", "", "tick -> approved order", len(r.intents), *percentiles_us(r.intents)))
            if phase == "3 hops":
                p50, p99, n = r.submit
                rows.append(("", "", "", "tick -> submit start (histogram)", n, p50, p99, "-"))
                rows.append(("", "", "", "tick -> broker ack", len(r.acks), *percentiles_us(r.acks)))
    rejections = sum(r.rejections for r in (*results.two_hop, *results.three_hop))
    return render(
        ("ticks/s", "sent/s", "phase", "endpoint", "samples", "p50 us", "p99 us", "p999 us"),
        rows,
        f"tick -> order latency, {cfg.seconds:g} s per rate; 2 hops: ~{cfg.order_rate:g} orders/s, "
        f"no execution engine; 3 hops: ~{cfg.exec_order_rate:g} orders/s to the simulated broker "
        f"(risk rejections: {rejections})",
    )


# --- throughput -------------------------------------------------------------------------------
@dataclass
class LadderStep:
    offered: int
    sent: int
    send_s: float
    received: int
    gaps: int
    drain_s: float

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def sent_rate(self) -> float:
        return self.sent / self.send_s

    @property
    def sustained(self) -> bool:
        # Zero loss, and kept up: the backlog after the last send cleared within 10 % of the run.
        return self.lost == 0 and self.gaps == 0 and self.drain_s <= 0.1 * self.send_s + 0.1


def _paced_send(pub: Publisher, feed: TriangleFeed, rate: int, n: int) -> float:
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


def throughput(cfg: Config) -> list[LadderStep]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    settings = bench_settings(workdir)
    pub = Publisher(settings.bus.bind_endpoint(settings.bus.market_data), service="bench-feed")
    feed = TriangleFeed(SYMBOLS, 10_000)  # few signals: measure the tick path
    steps: list[LadderStep] = []
    try:
        with _pipeline(settings, workdir) as pipe:
            _start(pipe, "signal-bridge", pub)
            url = pipe.url("signal-bridge", "/metrics")

            def counts() -> tuple[int, int]:
                m = scrape(url)
                received = total(m, "tradingsystem_messages_received_total", topic="trade")
                return int(received), int(total(m, "tradingsystem_sequence_gap_messages_total"))

            failures = 0
            for rate in cfg.ladder:
                r0, g0 = counts()
                n = int(rate * cfg.ladder_seconds)
                send_s = _paced_send(pub, feed, rate, n)
                t_end = time.perf_counter()
                # Poll until all arrived, or nothing more arrived for STALL_S (the rest is lost).
                last, progress_at = -1, t_end
                while True:
                    received, gaps = counts()
                    now = time.perf_counter()
                    drain_s = now - t_end
                    if received != last:
                        last, progress_at = received, now
                    if received - r0 >= n or now - progress_at > STALL_S or drain_s > 10.0:
                        break
                    time.sleep(0.02)
                step = LadderStep(rate, n, send_s, received - r0, gaps - g0, drain_s)
                steps.append(step)
                failures = 0 if step.sustained else failures + 1
                if failures >= 2:
                    break
                pub.heartbeat(every=0.0)
    finally:
        pub.close()
    return steps


def throughput_table(steps: list[LadderStep]) -> str:
    # The publisher (Python) may not reach the offered rate: what counts is what it sent.
    ok = [min(s.offered, s.sent_rate) for s in steps if s.sustained]
    rows = [
        (
            f"{s.offered:,}/s",
            f"{s.sent_rate:,.0f}",
            s.sent,
            s.received,
            s.lost,
            s.gaps,
            f"{s.drain_s:.2f}",
            "yes" if s.sustained else "no",
        )
        for s in steps
    ]
    return render(
        ("offered", "sent/s", "sent", "received", "lost", "seq gaps", "drain s", "sustained"),
        rows,
        "market-data PUB -> signal-bridge process (strategy on), "
        f"max sustained with zero loss: {max(ok):,.0f}/s"
        if ok
        else "market-data PUB -> signal-bridge: no rate sustained",
    )


def _raw_subscriber(endpoint: str, n: int, ready: Any, out: Any) -> None:
    sub = Subscriber(endpoint, [wire.TOPIC_TRADE, wire.TOPIC_HEARTBEAT])
    while not sub.sock.poll(100):  # heartbeats prove the subscription is live
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


@dataclass
class RawHop:
    rate: int | None  # None: unpaced
    sent: int
    send_s: float
    received: int
    gaps: int
    recv_s: float
    latency_us: tuple[float | str, ...]


def raw_hop(n: int, rate: int | None = None) -> RawHop:
    """Publisher -> Subscriber (decode + gap check only) in another process."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint, service="bench-raw", sndhwm=n)
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_raw_subscriber, args=(endpoint, n, ready, out), daemon=True)
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
            send_s = _paced_send(pub, feed, rate, n)
        count, gaps, recv_s, latency_us = out.get(timeout=60)
        return RawHop(rate, n, send_s, count, gaps, recv_s, latency_us)
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
        pub.close()


def raw_table(hops: list[RawHop]) -> str:
    rows = [
        (
            f"{h.rate:,}/s" if h.rate else "unpaced",
            h.sent,
            f"{h.sent / h.send_s:,.0f}",
            h.received,
            h.gaps,
            f"{h.received / h.recv_s:,.0f}" if h.recv_s > 0 else "-",
            *(h.latency_us if h.rate else ("-", "-", "-")),  # unpaced latency is queueing
        )
        for h in hops
    ]
    return render(
        (
            "offered",
            "messages",
            "publish/s",
            "received",
            "seq gaps",
            "decode/s",
            "p50 us",
            "p99 us",
            "p999 us",
        ),
        rows,
        "one raw hop: Publisher -> Subscriber in another process, decode only (target >= 100k/s)",
    )


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(quick: bool = False, cfg: Config | None = None) -> None:
    cfg = cfg or (QUICK if quick else Config())
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the child processes are stopped.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        # Other work on the host moves the tails a lot on 2 vCPUs: say how busy it was.
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        print(latency_table(latency(cfg), cfg))
        print()
        print(throughput_table(throughput(cfg)))
        print()
        paced = min(cfg.raw_messages, 5 * max(cfg.rates))  # 5 s at the top tick rate
        print(raw_table([raw_hop(paced, max(cfg.rates)), raw_hop(cfg.raw_messages)]))
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
