"""The alpaca-py adapter: ``StockDataStream`` with our backoff, connection hooks and stop.

alpaca-py 0.44.0 (pinned) already reconnects inside ``_run_forever`` after any websocket
error, a clean server close included; we plug our ``Backoff`` into that loop (its
``_reconnect_delay`` hook), count reconnects where a connection is (re)established, and
restart ``_run_forever`` ourselves if it ever returns (it does on "insufficient
subscription"). Everything runs on one asyncio loop in one thread, so the handlers can use
the ZeroMQ socket directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from alpaca.data.enums import DataFeed
from alpaca.data.live.stock import StockDataStream

from tradingsystem.common.metrics import RECONNECTS
from tradingsystem.marketdata.backoff import Backoff

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class AlpacaStream(StockDataStream):
    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        feed: str,
        url: str | None,
        backoff: Backoff,
        on_connection: Callable[[bool], None],
    ) -> None:
        super().__init__(
            api_key,
            secret_key,
            raw_data=True,
            feed=DataFeed(feed),
            url_override=url or None,
        )
        self._backoff = backoff
        self._on_connection = on_connection
        self.connects = 0

    def _reconnect_delay(self, retries: int) -> float:
        return self._backoff.delay(retries)

    async def _start_ws(self) -> None:
        await super()._start_ws()
        self.connects += 1
        if self.connects > 1:
            RECONNECTS.inc()
        log.info("stream connected", extra={"fields": {"url": self._endpoint, "connects": self.connects}})
        self._on_connection(True)

    async def close(self) -> None:
        was_open = self._ws is not None
        await super().close()
        if was_open:
            self._on_connection(False)

    async def serve(self, stop: threading.Event, tick: Callable[[], None], tick_every_s: float) -> None:
        """Run until ``stop`` is set; call ``tick`` every ``tick_every_s`` (heartbeats, bar timers)."""
        runner = asyncio.create_task(self._run_until(stop))
        try:
            while not stop.is_set() and not runner.done():
                tick()
                await asyncio.sleep(tick_every_s)
        finally:
            await self.stop_ws()
            # alpaca-py notices the stop between messages; a quiet stream would keep it in
            # recv() for up to 5 s, so cancel it after a short grace period.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner, timeout=0.5)
            await self.close()

    async def _run_until(self, stop: threading.Event) -> None:
        attempt = 0
        while not stop.is_set():
            await self._run_forever()
            if stop.is_set():
                return
            attempt += 1
            delay = self._backoff.delay(attempt)
            log.warning("stream ended; restarting", extra={"fields": {"in_s": round(delay, 2)}})
            await asyncio.sleep(delay)
