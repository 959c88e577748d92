"""Fixtures: a simulator on a free port (own thread and loop) and alpaca-py clients for it."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alpaca.trading.client import TradingClient

from tradingsystem.sim.auth import DEFAULT_KEY_ID, DEFAULT_SECRET
from tradingsystem_testing import eventually
from tradingsystem_testing.sim import SimulatorThread

SYMBOLS = ["AAPL", "MSFT"]


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SYMBOLS, seed=7, tick_rate=50, bar_every=5) as s:
        eventually(lambda: s.ledger.quotes.keys() >= set(SYMBOLS), "first quotes")
        yield s


@pytest.fixture
def trading(sim: SimulatorThread) -> TradingClient:
    client = TradingClient(DEFAULT_KEY_ID, DEFAULT_SECRET, url_override=sim.base_url)
    client._retry_wait = 0  # the SDK's fixed 3 s retry sleep only slows the tests down
    return client


@contextlib.contextmanager
def running(stream: Any) -> Iterator[None]:
    """Run an alpaca-py stream (blocking ``run()``) in a thread for the duration of the block."""
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stream.stop()
        thread.join(timeout=10)


def collector() -> tuple[queue.Queue[Any], Callable[[Any], Any]]:
    """A queue and an async handler that puts every message it gets into it."""
    q: queue.Queue[Any] = queue.Queue()

    async def handler(msg: Any) -> None:
        q.put(msg)

    return q, handler


def take_until(
    q: queue.Queue[Any], pred: Callable[[Any], bool], what: str, timeout: float = 15.0
) -> list[Any]:
    """Messages from ``q`` up to and including the first that satisfies ``pred``."""
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = q.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(msg)
        if pred(msg):
            return seen
    raise AssertionError(f"timed out waiting for {what}; got {len(seen)} messages")
