"""market-data ingest: the simulator's websocket -> the market-data service -> its PUB socket.

Each step starts a fresh simulator in this process (its asyncio loop in a thread) streaming a
quote and a trade per symbol per step, and the market-data service as a child process
subscribed to both (``tradingsystem market-data``, as ``tradingsystem run`` starts it). After
``seconds`` the simulator stops generating; once the service's counters settle, what it sent
is compared with what the service published on its PUB socket
(``tradingsystem_messages_published_total``). A step is *sustained* when nothing was lost or
dropped and the stream was never closed as a slow client (``407``, which Alpaca also does).

The ceiling it is compared with, in the same run: the bare alpaca-py client
(``StockDataStream(raw_data=True)`` with a handler that only counts), from
``bench.sim_throughput``, at the same steps.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.sim_throughput import SYMBOLS, measure_sdk
from bench.table import render
from tradingsystem.common.config import Settings
from tradingsystem.supervisor import Pipeline, scrape, settings_yaml, total
from tradingsystem_testing import free_port
from tradingsystem_testing.sim import SimulatorThread

SERVICE = "market-data"
SETTLE_S = 0.5  # counters unchanged this long: the service has taken everything it will


@dataclass(frozen=True)
class Step:
    client: str
    offered: float  # ticks/s the simulator was asked for
    sent: int  # messages the simulator queued to the client
    seconds: float
    rate: float  # ticks/s the client took while the simulator streamed
    received: int  # published on the service's PUB (the bare client: handled)
    dropped: int  # rejected by validation (none expected: the ticks are valid)
    status: str  # "ok", or how the client fell behind

    @property
    def lost(self) -> int:
        return self.sent - self.received - self.dropped

    @property
    def sustained(self) -> bool:
        return self.status == "ok" and self.lost == 0 and self.dropped == 0


def _settings(sim_port: int) -> Settings:
    return Settings.model_validate(
        {
            "mode": "sim",
            "symbols": SYMBOLS,
            "log_level": "WARNING",
            "bus": {"market_data": f"tcp://127.0.0.1:{free_port()}"},
            "market_data": {"http_port": free_port(), "trades": True, "quotes": True, "bars": False},
            "sim": {"port": sim_port},
        }
    )


def service_step(steps_per_s: int, seconds: float) -> Step:
    """One step of the ladder through the market-data service process."""
    port = free_port()
    sim = SimulatorThread(SYMBOLS, seed=1, port=port, tick_rate=steps_per_s, bar_every=10**9)
    sim.start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    settings = _settings(port)
    pipe = Pipeline(settings, workdir=workdir)
    pipe.config_path.write_text(settings_yaml(settings))
    try:
        pipe.start_process(SERVICE)
        pipe.wait_ready(SERVICE)
        url = pipe.url(SERVICE, "/metrics")
        t0, sent0 = time.perf_counter(), sim.data.messages_sent
        time.sleep(seconds)
        sim.call(sim._ticker.cancel)  # stop generating; what is queued still goes out
        streamed_s, sent = time.perf_counter() - t0, sim.data.messages_sent
        last, settled_at = -1.0, time.monotonic()
        while time.monotonic() - settled_at < SETTLE_S:
            m1 = scrape(url)
            published = total(m1, "tradingsystem_messages_published_total", service=SERVICE)
            if published != last:
                last, settled_at = published, time.monotonic()
            time.sleep(0.05)

        # Totals since the service started: every message the simulator sent it must be out.
        published_data = sum(
            int(total(m1, "tradingsystem_messages_published_total", service=SERVICE, topic=k))
            for k in ("trade", "quote")
        )
        reconnects = int(total(m1, "tradingsystem_marketdata_reconnects_total"))
        step = Step(
            "market-data service",
            steps_per_s * len(SYMBOLS) * 2,
            sent,
            streamed_s,
            (sent - sent0) / streamed_s,
            published_data,
            int(total(m1, "tradingsystem_messages_dropped_total", service=SERVICE)),
            f"closed as slow, {reconnects} reconnect(s)" if reconnects else "ok",
        )
    finally:
        pipe.stop()
        sim.stop()
    shutil.rmtree(workdir, ignore_errors=True)  # kept (with the service's log) if the step failed
    return step


def sdk_step(steps_per_s: int, seconds: float) -> Step:
    """The same step to a bare alpaca-py client that only counts (the ceiling)."""
    offered, sent_per_s, got_per_s, status = measure_sdk(steps_per_s, seconds)
    sent, got = round(sent_per_s * seconds), round(got_per_s * seconds)
    # The client counts over a window while the simulator keeps streaming: "lost" only by status.
    sent = got if status == "ok" else sent
    return Step("alpaca-py client (ceiling)", offered, sent, seconds, got_per_s, got, 0, status)


def ladder(steps: tuple[int, ...], seconds: float) -> list[Step]:
    """Both clients at each rate until each has failed twice in a row."""
    out: list[Step] = []
    for measure in (sdk_step, service_step):
        failures = 0
        for s in steps:
            step = measure(s, seconds)
            out.append(step)
            failures = 0 if step.sustained else failures + 1
            if failures >= 2:
                break
    return out


def best(steps: list[Step], client: str) -> float:
    return max((s.rate for s in steps if s.client == client and s.sustained), default=0.0)


def table(steps: list[Step]) -> str:
    service, ceiling = best(steps, "market-data service"), best(steps, "alpaca-py client (ceiling)")
    ratio = f"{service / ceiling:.2f}x" if ceiling else "-"
    rows = [
        (
            s.client,
            f"{s.offered:,.0f}",
            s.sent,
            s.received,
            s.lost,
            s.dropped,
            f"{s.rate:,.0f}",
            s.status,
            "yes" if s.sustained else "no",
        )
        for s in steps
    ]
    return render(
        (
            "client",
            "offered ticks/s",
            "sent",
            "published",
            "lost",
            "dropped",
            "ticks/s",
            "status",
            "sustained",
        ),
        rows,
        f"market-data ingest, simulator websocket -> PUB ({len(SYMBOLS)} symbols, trades+quotes): "
        f"max sustained with zero loss {service:,.0f} ticks/s; bare alpaca-py client {ceiling:,.0f} "
        f"ticks/s; ratio {ratio}",
    )
