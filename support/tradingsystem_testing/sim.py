"""The simulator for synchronous tests and benchmarks: a ``Simulator`` on its own event loop in a
daemon thread.

    with SimulatorThread(["AAPL"], seed=1) as sim:
        client = TradingClient("SIMKEY", "SIMSECRET", url_override=sim.base_url)
        sim.call(sim.ledger.snapshot)       # run a function on the simulator's loop
        sim.faults.order_504_next = 1       # plain attribute writes are safe from any thread
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tradingsystem.sim.server import Simulator

T = TypeVar("T")


class SimulatorThread:
    """A ``Simulator`` on its own event loop in a daemon thread, for synchronous code.

    Use as a context manager; attributes (``ledger``, ``faults``, ``base_url``, ...) are the
    simulator's. Mutating the ledger must go through ``call`` (runs on the simulator's loop);
    setting fault counters directly is fine.
    """

    def __init__(self, symbols: list[str] | Simulator, **kwargs: Any) -> None:
        """``Simulator(symbols, **kwargs)``, or a simulator already built (``server.from_settings``)."""
        self.sim = symbols if isinstance(symbols, Simulator) else Simulator(symbols, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulator", daemon=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sim, name)

    def start(self) -> SimulatorThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        with contextlib.suppress(concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(self.sim.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the simulator's loop and return its result."""

        async def _run() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(_run(), self._loop).result(timeout=10)

    def disconnect(self, stream: str = "all", clean: bool = False) -> int:
        return asyncio.run_coroutine_threadsafe(self.sim.disconnect(stream, clean), self._loop).result(10)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
