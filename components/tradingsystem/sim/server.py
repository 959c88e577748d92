"""The Alpaca-compatible simulator: one aiohttp app on one port, in-process or as a process.

One base URL serves every alpaca-py client (``P`` is the bound port)::

    TradingClient(KEY, SECRET, url_override="http://127.0.0.1:P")
    StockHistoricalDataClient(KEY, SECRET, url_override="http://127.0.0.1:P")
    StockDataStream(KEY, SECRET, url_override="ws://127.0.0.1:P/v2/iex")   # or /v2/sip
    TradingStream(KEY, SECRET, url_override="ws://127.0.0.1:P/stream")

Keys default to ``SIMKEY`` / ``SIMSECRET`` (``tradingsystem.sim.auth``); pass
``Credentials(None, None)`` to accept any non-empty key pair.

In async tests::

    sim = Simulator(["AAPL"], seed=1, tick_rate=50)
    port = await sim.start()          # port 0 (the default) picks a free port
    ...  sim.ledger.cash, sim.ledger.positions, sim.faults.http_429_next = 2 ...
    await sim.stop()

In sync tests, ``tradingsystem_testing.sim.SimulatorThread`` runs it on its own event loop in a
daemon thread (the test harness, not shipped).

Over HTTP (no auth): ``GET /_sim/ledger``, ``GET|POST /_sim/faults``, ``POST /_sim/reset``,
``POST /_sim/disconnect {"stream": "data|trading|all", "mode": "drop|close"}``, ``GET /_sim/status``,
``POST /_sim/clock {"advance_s": N}`` or ``{"to": "next_open|next_close"}`` (the simulated clock
only moves forward; from a sync test use ``sim.call(sim.advance_clock, seconds)``).

Ticks: every ``1/tick_rate`` s each symbol advances one step (a quote, a trade, and every
``bar_every`` steps a bar). If the loop falls behind it catches up in batches of up to
``MAX_STEPS_PER_WAKE`` steps per frame, which is what lets a single subscriber be fed at
the simulator's full speed (see ``bench/sim_throughput.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from tradingsystem.common.config import Settings
from tradingsystem.common.runtime import setup_logging
from tradingsystem.sim import rest
from tradingsystem.sim.account import AccountConfig
from tradingsystem.sim.auth import Credentials
from tradingsystem.sim.faults import Faults, RateLimiter
from tradingsystem.sim.ledger import Ledger, Quote
from tradingsystem.sim.prices import (
    ReplayMarket,
    SyntheticMarket,
    Tick,
    history_bars,
    start_price,
)
from tradingsystem.sim.session import SessionModel
from tradingsystem.sim.streams import CHANNELS, DataStreamHub, TradingStreamHub

log = logging.getLogger(__name__)

MAX_STEPS_PER_WAKE = 200
HISTORY_BARS = 2_000  # per symbol and timeframe; enough to warm any indicator
OUT_OF_ORDER_NS = 5_000_000_000


class Simulator:
    """Market, broker and both streams behind one aiohttp application."""

    def __init__(
        self,
        symbols: list[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 42,
        tick_rate: float = 20.0,
        bar_every: int = 60,
        initial_cash: float | Decimal = 100_000,
        replay_path: Path | None = None,
        credentials: Credentials | None = None,
        faults: Faults | None = None,
        partial_fills: bool = False,
        slippage_bps: float = 0.0,
        account: AccountConfig | None = None,
        session: SessionModel | str = SessionModel.CONTINUOUS,
        start_at: datetime | None = None,
    ) -> None:
        self.symbols = list(symbols)
        self.host, self.port = host, port
        self.seed, self.tick_rate, self.bar_every = seed, tick_rate, bar_every
        self.replay_path = replay_path
        self.credentials = credentials or Credentials()
        self.faults = faults or Faults()
        self.limiter = RateLimiter()
        # The simulated clock: wall time shifted by an offset (``start_at``, ``advance_clock``).
        self.clock_offset_ns = 0 if start_at is None else int(start_at.timestamp() * 1e9) - time.time_ns()
        self.start_ns = self.now_ns()
        # Asset ids are stable per (seed, symbol) so restarts keep the same ids.
        asset_ids = {s: str(uuid.uuid5(uuid.NAMESPACE_URL, f"sim/{seed}/{s}")) for s in self.symbols}
        self.ledger = Ledger(
            self.symbols,
            Decimal(str(initial_cash)),
            asset_ids,
            partial_fills=partial_fills,
            slippage_bps=Decimal(str(slippage_bps)),
            now_ns=self.now_ns,
            account=account or AccountConfig(),
            session=SessionModel(session),
        )
        self._seed_prices()
        self.data = DataStreamHub(self.credentials)
        self.trading = TradingStreamHub(self.credentials)
        self.ledger.listeners.append(self.trading.publish)
        self.latest: dict[tuple[str, str], Tick] = {}
        self.steps = 0
        self._history: dict[tuple[str, int], list[Tick]] = {}
        self._market = self._new_market()
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None

    def now_ns(self) -> int:
        return time.time_ns() + self.clock_offset_ns

    def advance_clock(self, seconds: float) -> None:
        """Move the simulated clock forward (session closes it passes run at once)."""
        if seconds < 0:
            raise ValueError("the simulated clock only moves forward")
        self.clock_offset_ns += int(seconds * 1e9)
        self.ledger.on_clock(self.now_ns())

    def _seed_prices(self) -> None:
        """The previous close (where the history ends) prices market orders sent before the first quote."""
        if self.replay_path is None:
            for s in self.symbols:
                self.ledger.last_price.setdefault(s, start_price(self.seed, s))

    def _new_market(self) -> SyntheticMarket | ReplayMarket:
        if self.replay_path is not None:
            return ReplayMarket(self.replay_path, per_step=len(self.symbols))
        return SyntheticMarket(self.symbols, self.seed, self.bar_every)

    # --- lifecycle -----------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[rest.alpaca_middleware])
        app[rest.SIM] = self
        app.router.add_get("/v2/iex", self.data.handle)
        app.router.add_get("/v2/sip", self.data.handle)
        app.router.add_get("/stream", self.trading.handle)
        rest.add_routes(app)
        return app

    async def start(self) -> int:
        """Bind, start ticking, return the bound port."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # the only way to learn the port chosen for port 0
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._ticker = asyncio.create_task(self._tick_loop(), name="sim-ticks")
        log.info("simulator serving %s (symbols %s)", self.base_url, ",".join(self.symbols))
        return self.port

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.disconnect("all", clean=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # --- control -------------------------------------------------------------------
    def reset(self) -> None:
        """Fresh account and price path (same seed), no faults; connections stay open."""
        self.ledger.reset()
        self._seed_prices()
        for f in dataclasses.fields(Faults):
            setattr(self.faults, f.name, f.default)
        self.latest.clear()
        self.steps = 0
        self._market = self._new_market()

    async def disconnect(self, stream: str, clean: bool) -> int:
        """Close the ``data``, ``trading`` or ``all`` websockets, cleanly or by dropping TCP."""
        n = 0
        if stream in ("data", "all"):
            n += await self.data.disconnect(clean)
        if stream in ("trading", "all"):
            n += await self.trading.disconnect(clean)
        return n

    def status(self) -> dict[str, Any]:
        return {
            "url": self.base_url,
            "symbols": self.symbols,
            "steps": self.steps,
            "messages_sent": self.data.messages_sent,
            "data_clients": len(self.data.clients),
            "trading_clients": len(self.trading.listeners),
            "replay_done": self._market.exhausted,
        }

    def history(self, symbol: str, minutes: int) -> list[Tick]:
        """Bars before the simulator started, ending at the live start price."""
        key = (symbol, minutes)
        if key not in self._history:
            self._history[key] = history_bars(
                symbol, self.seed, start_price(self.seed, symbol), self.start_ns, HISTORY_BARS, minutes
            )
        return self._history[key]

    # --- ticks ---------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        t0, done = loop.time(), 0
        while not self._market.exhausted:
            due = int((loop.time() - t0) * self.tick_rate) - done
            steps = min(due, MAX_STEPS_PER_WAKE)
            if steps > 0:
                batch: list[Tick] = []
                for _ in range(steps):
                    batch.extend(self._market.step(self.now_ns()))
                done += steps
                self.steps += steps
                self._apply(batch)
                self.data.publish(self._with_faults(batch))
                if due > MAX_STEPS_PER_WAKE:
                    # Behind schedule: drop the backlog rather than bursting forever.
                    t0, done = loop.time(), 0
            # Sleep until the next step is due; when behind, just yield so writers can send.
            await asyncio.sleep(max(0.0, (done + 1) / self.tick_rate - (loop.time() - t0)))

    def _apply(self, batch: list[Tick]) -> None:
        """Feed the true (unfaulted) ticks to the broker: it fills at the real quote."""
        for tick in batch:
            self.latest[(CHANNELS[tick.kind], tick.symbol)] = tick
            if tick.kind == "q" and tick.bid is not None and tick.ask is not None:
                self.ledger.on_quote(
                    tick.symbol, Quote(tick.bid, tick.bid_size or 0, tick.ask, tick.ask_size or 0)
                )
            elif tick.kind == "t" and tick.price is not None:
                self.ledger.on_trade(tick.symbol, tick.price)

    def _with_faults(self, batch: list[Tick]) -> list[Tick]:
        faults = self.faults
        if not (faults.malformed_ticks_next or faults.out_of_order_ticks_next):
            return batch
        out = []
        for tick in batch:
            if faults.take("malformed_ticks_next"):
                tick = malformed(tick)
            if faults.take("out_of_order_ticks_next"):
                tick = dataclasses.replace(tick, ts_ns=tick.ts_ns - OUT_OF_ORDER_NS)
            out.append(tick)
        return out


def malformed(tick: Tick) -> Tick:
    """A tick that parses but is invalid: negative trade price, crossed quote, bar high < low."""
    if tick.kind == "t":
        return dataclasses.replace(tick, price=-(tick.price or Decimal(1)))
    if tick.kind == "q":
        return dataclasses.replace(tick, bid=tick.ask, ask=tick.bid)
    return dataclasses.replace(tick, high=tick.low, low=tick.high)


def from_settings(settings: Settings) -> Simulator:
    """The simulator ``tradingsystem sim`` runs: keys from ALPACA_* if set, else accept any."""
    a = settings.alpaca
    creds = (
        Credentials(a.api_key.get_secret_value(), a.secret_key.get_secret_value())
        if a.api_key is not None and a.secret_key is not None
        else Credentials(None, None)
    )
    s = settings.sim
    return Simulator(
        settings.symbols,
        host=s.host,
        port=s.port,
        seed=s.seed,
        tick_rate=s.tick_rate,
        initial_cash=s.initial_cash,
        replay_path=s.replay_path,
        credentials=creds,
        account=AccountConfig(
            type=s.account_type,
            multiplier=s.effective_multiplier,
            hard_to_borrow=frozenset(s.hard_to_borrow),
        ),
        session=s.session,
        start_at=s.start_at,
    )


def run(settings: Settings) -> int:
    """``tradingsystem sim``: serve until SIGINT/SIGTERM."""
    setup_logging(settings.log_level, settings.log_format, "sim")
    sim = from_settings(settings)
    if sim.credentials.accept_any:
        log.info("no ALPACA_API_KEY configured: accepting any key pair")

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await sim.start()
        await stop.wait()
        await sim.stop()

    try:
        asyncio.run(_main())
    except OSError as exc:
        log.error("simulator cannot start: %s", exc)
        return 1
    return 0
