"""Tick -> order latency through the three hops against its floors, market-data ingest, and
market-data -> signal-bridge throughput.

Everything runs as real processes on real TCP loopback ZeroMQ:

* **latency**: this process stands in for market-data: it binds the market-data PUB and sends
  ``wire.Trade`` at a paced rate (1 ms batches), stamping ``origin_ts`` at send. signal-bridge,
  risk-manager, execution-engine and the simulator (the broker) are child processes
  (``tradingsystem.supervisor.Pipeline``). The prices are a triangle wave per symbol and the
  strategy a 1/2 EMA crossover, so every turn of the wave is exactly one signal: the signal rate
  is set independently of the tick rate. This process subscribes to signal-bridge (``Signal``),
  risk-manager (``OrderIntent``) and execution-engine (``ExecutionReport``) and takes
  ``now - origin_ts`` from raw samples (end to end: one more hop, to this process), the
  approved order's own send stamp minus ``origin_ts`` (the two service hops) and, per service
  hop, the difference of the publishers' send stamps (``ts``), joined by (symbol, origin_ts)
  and client_order_id.
  Two phases: *2 hops* (no execution engine yet, ``order_rate`` orders/s), then *3 hops*
  (execution engine started, ``exec_order_rate`` orders/s: it makes every order durable with
  an fsync and submits serially over REST, so it takes fewer).
* **floors, same run**: the raw hop (``bench.hop``: Publisher -> Subscriber process, decode
  only) paced at each tick rate; every hop is given as a ratio to it. The execution floor
  (``ExecutionFloor``): a bare alpaca-py ``submit_order`` round trip to the same simulator plus
  one fsync of a WAL frame on the same file system, in a child process *during* each 3-hop
  phase (same host and simulator load as the engine).
* **market-data ingest** (``bench.ingest``): simulator websocket -> market-data process -> PUB,
  zero loss, against the bare alpaca-py client's ceiling at the same rates.
* **throughput**: ticks offered to a lone signal-bridge at increasing rates; its /metrics
  counters (received, sequence gaps) tell how many arrived. Plus the raw hop's capacity
  (unpaced).

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

import zmq
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from bench import ingest
from bench.hop import SYMBOLS, RawHop, TriangleFeed, paced_send, percentiles_us, raw_hop
from bench.table import render
from tradingsystem.broker import credentials, trading_url
from tradingsystem.common import wire
from tradingsystem.common.bus import Publisher, Subscriber
from tradingsystem.common.config import Settings
from tradingsystem.common.services import PIPELINE
from tradingsystem.supervisor import Pipeline, get_json, scrape, settings_yaml, total
from tradingsystem_testing import eventually, free_port

ORDER_HIST = "tradingsystem_tick_to_order_latency_seconds"
STALL_S = 0.5  # a subscriber that takes nothing for this long has lost the rest


@dataclass(frozen=True)
class Config:
    rates: tuple[int, ...] = (1_000, 5_000, 10_000)
    seconds: float = 8.0  # measured time per rate, 2 hops
    order_rate: float = 300.0  # signals (= approved orders) per second, at every tick rate
    exec_seconds: float = 40.0  # measured time per rate, 3 hops: ~4,800 samples in all
    exec_order_rate: float = 40.0  # with the execution engine (it submits serially over REST)
    floor_orders: int = 200  # bare submit + fsync round trips per rate (the execution floor)
    warmup_s: float = 1.0
    ladder: tuple[int, ...] = (10_000, 30_000, 50_000, 75_000, 100_000, 150_000)
    ladder_seconds: float = 2.0
    raw_messages: int = 200_000
    raw_seconds: float = 3.0  # paced raw hop per tick rate (the floor of the latency table)
    # market-data ingest: simulator steps/s (a quote and a trade per symbol per step)
    ingest_steps: tuple[int, ...] = (2_500, 5_000, 10_000, 15_000)
    ingest_seconds: float = 2.0


QUICK = Config(
    rates=(5_000,),
    seconds=2.0,
    exec_seconds=2.0,
    floor_orders=40,
    warmup_s=0.5,
    ladder=(10_000,),
    ladder_seconds=1.0,
    raw_messages=50_000,
    raw_seconds=1.0,
    ingest_steps=(5_000,),
    ingest_seconds=1.0,
)


# --- helpers --------------------------------------------------------------------------------
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
    signals: list[int] = field(default_factory=list)  # tick -> signal received here (ns)
    intents: list[int] = field(default_factory=list)  # tick -> approved order received here
    # tick sent -> approved order published (the risk-manager's send stamp): the 2 service hops
    # without the third, the delivery to a subscriber (this process), which ``intents`` adds.
    approved: list[int] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)  # tick -> first execution report received here
    # Per service hop, from the publishers' own send stamps (``ts``): tick sent -> signal
    # published, signal published -> intent published, intent published -> report published.
    signal_hop: list[int] = field(default_factory=list)
    risk_hop: list[int] = field(default_factory=list)
    exec_hop: list[int] = field(default_factory=list)
    floor: list[int] = field(default_factory=list)  # execution floor: bare submit + one fsync
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
        self._signal_ts: dict[tuple[str, int], int] = {}  # (symbol, origin_ts) -> signal's ts
        self._intent_ts: dict[str, int] = {}  # cid -> intent's ts

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
        deadline = time.monotonic() + 30.0
        quiet_until = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if self._collect(res, timeout_ms=50):
                quiet_until = time.monotonic() + 0.5
            elif time.monotonic() > quiet_until and (not acks or self._intent_cids <= self._acked):
                break
            self.pub.heartbeat(every=0.5)
        self._signal_ts.clear()
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
                    res.signal_hop.append(msg.ts - msg.origin_ts)
                    self._signal_ts[(msg.symbol, msg.origin_ts)] = msg.ts
                elif isinstance(msg, wire.OrderIntent):
                    res.intents.append(now - msg.origin_ts)
                    res.approved.append(msg.ts - msg.origin_ts)
                    self._intent_cids.add(msg.client_order_id)
                    self._intent_ts[msg.client_order_id] = msg.ts
                    signal_ts = self._signal_ts.pop((msg.symbol, msg.origin_ts), None)
                    if signal_ts is not None:
                        res.risk_hop.append(msg.ts - signal_ts)
                elif isinstance(msg, wire.Rejection):
                    res.rejections += 1
                elif isinstance(msg, wire.ExecutionReport) and msg.client_order_id not in self._acked:
                    self._acked.add(msg.client_order_id)
                    res.acks.append(now - msg.origin_ts)
                    intent_ts = self._intent_ts.pop(msg.client_order_id, None)
                    if intent_ts is not None:
                        res.exec_hop.append(msg.ts - intent_ts)
        return got


class ExecutionFloor:
    """What the execution hop cannot go below: a bare alpaca-py ``submit_order`` round trip to
    the same simulator, plus one fsync of a WAL frame's size on the order store's file system
    (the engine makes an order durable before it may reach the broker)."""

    FRAME = 4096 + 24  # one SQLite page plus its WAL frame header

    def __init__(self, url: str | None, key: str, secret: str, path: Path) -> None:
        self.client = TradingClient(key, secret, raw_data=True, url_override=url)
        self.path = path
        self._n = 0

    def measure(self, n: int, rate: float) -> list[int]:
        """``n`` orders (buy/sell alternating) at ``rate``/s; ns per fsync + round trip."""
        samples: list[int] = []
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            start = time.perf_counter()
            for i in range(n):
                wait = start + i / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                self._n += 1
                req = MarketOrderRequest(
                    symbol=SYMBOLS[i % len(SYMBOLS)],
                    qty=1,
                    side=OrderSide.BUY if self._n % 2 else OrderSide.SELL,
                    time_in_force=TimeInForce.DAY,
                    client_order_id=f"bench-floor-{os.getpid()}-{self._n}",
                )
                t0 = time.perf_counter_ns()
                os.write(fd, b"\0" * self.FRAME)
                os.fsync(fd)
                with contextlib.suppress(APIError):  # a refusal is a round trip all the same
                    self.client.submit_order(req)
                samples.append(time.perf_counter_ns() - t0)
        finally:
            os.close(fd)
        return samples


def _floor_main(args: tuple[Any, ...], n: int, rate: float, ready: Any, go: Any, out: Any) -> None:
    floor = ExecutionFloor(*args)
    floor.measure(5, rate)  # warm: imports, connection
    ready.set()
    go.wait(60)
    out.put(floor.measure(n, rate))


class FloorProcess:
    """``ExecutionFloor`` in a child process, measuring *while* a 3-hop phase runs, so the floor
    sees the same host and simulator load as the engine (measured alone, its round trip was
    faster than the engine's under the tick load, which flattered neither)."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self._args = (trading_url(settings), *credentials(settings), workdir / "floor.fsync")

    def start(self, n: int, rate: float) -> None:
        ctx = mp.get_context("spawn")
        self._ready, self._go, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(
            target=_floor_main, args=(self._args, n, rate, self._ready, self._go, self._out), daemon=True
        )
        self._proc.start()
        if not self._ready.wait(60):
            raise RuntimeError("the execution-floor process did not start")

    def go(self) -> None:
        self._go.set()

    def result(self, timeout: float) -> list[int]:
        try:
            samples: list[int] = self._out.get(timeout=timeout)
            return samples
        finally:
            self._proc.join(timeout=5)
            if self._proc.is_alive():
                self._proc.kill()


@dataclass
class LatencyResults:
    two_hop: list[RateResult]  # signal-bridge + risk-manager only, many orders
    three_hop: list[RateResult]  # plus execution-engine and the broker, fewer orders
    raw: dict[int, RawHop] = field(default_factory=dict)  # the floor, per tick rate


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
                for suffix in ("", "-wal", "-shm", "-reserved"):
                    Path(f"{settings.risk.state_path}{suffix}").unlink(missing_ok=True)
                _start(pipe, "risk-manager", pub)
                _start(pipe, "execution-engine", pub)
                floor = FloorProcess(settings, workdir)
                bench.run(min(cfg.rates), cfg.warmup_s, cfg.exec_order_rate, acks=True)
                exec_metrics = pipe.url("execution-engine", "/metrics")
                three = []
                for rate in cfg.rates:
                    # The floor is measured in parallel, spread over the phase.
                    floor.start(cfg.floor_orders, cfg.floor_orders / cfg.exec_seconds)
                    before = scrape(exec_metrics)
                    floor.go()
                    res = bench.run(rate, cfg.exec_seconds, cfg.exec_order_rate, acks=True)
                    after = scrape(exec_metrics)
                    res.floor = floor.result(timeout=cfg.exec_seconds + 60)
                    count = total(after, f"{ORDER_HIST}_count") - total(before, f"{ORDER_HIST}_count")
                    res.submit = (
                        hist_quantile_us(before, after, 0.5),
                        hist_quantile_us(before, after, 0.99),
                        int(count),
                    )
                    three.append(res)
            finally:
                bench.close()
    finally:
        pub.close()
    # The floor of every hop, at each tick rate: the hop alone, right after the pipeline stopped.
    raw = {rate: raw_hop(min(cfg.raw_messages, int(rate * cfg.raw_seconds)), rate) for rate in cfg.rates}
    return LatencyResults(two, three, raw)


def _ratio(value: float | str, floor: float | str) -> str:
    if isinstance(value, str) or isinstance(floor, str) or floor <= 0:
        return "-"
    return f"{value / floor:.1f}x"


def _minus(value: float | str, floor: float | str) -> str:
    if isinstance(value, str) or isinstance(floor, str):
        return "-"
    return f"{value - floor:,.0f}"


def _row(
    phase: str,
    path: str,
    hops: object,
    samples: list[int],
    raw_p: tuple[float | str, ...],
    floor: list[int] | None = None,
) -> tuple[object, ...]:
    p = percentiles_us(samples)
    f = percentiles_us(floor) if floor is not None else ("-", "-", "-")
    return (
        "",
        phase,
        path,
        hops,
        len(samples),
        *p,
        _ratio(p[0], raw_p[0]),
        _ratio(p[1], raw_p[1]),
        _minus(p[0], f[0]) if floor is not None else "",
        _minus(p[1], f[1]) if floor is not None else "",
    )


HEADERS = (
    "ticks/s",
    "phase",
    "path",
    "hops",
    "samples",
    "p50 us",
    "p99 us",
    "p999 us",
    "p50 x raw",
    "p99 x raw",
    "p50 - exec floor",
    "p99 - exec floor",
)


def latency_table(results: LatencyResults, cfg: Config) -> str:
    """One table: per tick rate the raw hop (floor), each service hop and the end-to-end paths,
    each as a ratio to the raw hop; the execution rows also minus the execution floor."""
    rows: list[tuple[object, ...]] = []
    three_by_rate = {r.rate: r for r in results.three_hop}
    for two in results.two_hop:
        raw = results.raw.get(two.rate)
        raw_p = raw.latency_us if raw is not None else ("-", "-", "-")
        raw_n = raw.received if raw is not None else 0
        rows.append(
            (
                f"{two.rate:,}",
                "floor",
                "raw ZeroMQ hop (decode only)",
                1,
                raw_n,
                *raw_p,
                "1.0x",
                "1.0x",
                "",
                "",
            )
        )
        three = three_by_rate.get(two.rate)
        for phase, r in (("2 hops", two), ("3 hops", three)):
            if r is None:
                continue
            rows += [
                _row(phase, "tick -> signal published (signal-bridge hop)", 1, r.signal_hop, raw_p),
                _row("", "signal -> intent published (risk-manager hop)", 1, r.risk_hop, raw_p),
                _row("", "tick -> approved order published (2 service hops)", 2, r.approved, raw_p),
                _row("", "tick -> approved order received (end to end)", 3, r.intents, raw_p),
            ]
        if three is None:
            continue
        p50, p99, n = three.submit
        rows += [
            _row("", "execution floor: alpaca-py submit_order + 1 fsync", "-", three.floor, raw_p),
            _row("", "intent -> report published (execution hop)", 1, three.exec_hop, raw_p, three.floor),
            ("", "", "tick -> submit start (engine histogram)", 3, n, p50, p99, "-", "", "", "", ""),
            _row("", "tick -> broker ack received (end to end)", 4, three.acks, raw_p, three.floor),
        ]
    if len(results.three_hop) > 1:  # every 3-hop sample, all tick rates together

        def pooled(attr: str) -> list[int]:
            return [x for r in results.three_hop for x in getattr(r, attr)]

        floor = pooled("floor")
        rows += [
            (
                "all",
                "3 hops",
                "execution floor: alpaca-py submit_order + 1 fsync",
                "-",
                len(floor),
                *percentiles_us(floor),
                "",
                "",
                "",
                "",
            ),
            _row("", "intent -> report published (execution hop)", 1, pooled("exec_hop"), ("-",) * 3, floor),
            _row("", "tick -> broker ack received (end to end)", 4, pooled("acks"), ("-",) * 3, floor),
        ]
    rejections = sum(r.rejections for r in (*results.two_hop, *results.three_hop))
    return render(
        HEADERS,
        rows,
        f"tick -> order latency against its floors; 2 hops: {cfg.seconds:g} s per rate at "
        f"~{cfg.order_rate:g} orders/s, no execution engine; 3 hops: {cfg.exec_seconds:g} s per rate at "
        f"~{cfg.exec_order_rate:g} orders/s to the simulated broker (risk rejections: {rejections}). "
        "'hops': ZeroMQ hops on the path; 'x raw': ratio to the raw hop at the same tick rate",
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
                send_s = paced_send(pub, feed, rate, n)
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


def raw_table(hops: list[RawHop]) -> str:
    rows = [
        (
            f"{h.rate:,}/s" if h.rate else "unpaced",
            h.sent,
            f"{h.sent / h.send_s:,.0f}",
            h.received,
            h.gaps,
            f"{h.decode_per_s:,.0f}" if h.recv_s > 0 else "-",
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
        print(raw_table([raw_hop(cfg.raw_messages)]))  # capacity; its paced latency is above
        print()
        print(ingest.table(ingest.ladder(cfg.ingest_steps, cfg.ingest_seconds)))
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
