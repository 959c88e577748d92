"""Ticks per second the simulator streams to one market-data subscriber.

"target" is the configured rate, "sent" what the simulator actually queued (lower once
generation itself saturates), "received" what the subscriber decoded. The simulator runs in
this process; the subscriber runs in a separate process (so the two
do not share a GIL) and counts the data messages it receives over a fixed window. Each row
offers a higher tick rate; the simulator closes a subscriber that falls more than
``QUEUE_FRAMES`` frames behind with ``407 slow client``, so the highest row without a drop
is the sustainable rate. Two subscribers are measured: a raw aiohttp msgpack client (the
simulator's ceiling) and alpaca-py's ``StockDataStream`` with ``raw_data=True`` (what a
service built on the SDK can take).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import threading
import time
from typing import Any

from bench.table import render
from tradingsystem.sim.auth import DEFAULT_KEY_ID, DEFAULT_SECRET
from tradingsystem.sim.server import Simulator

SYMBOLS = ["AAPL", "MSFT", "AMZN", "GOOG"]


def _raw_client(url: str, seconds: float) -> tuple[int, str]:
    import aiohttp
    import msgpack

    async def main() -> tuple[int, str]:
        count, status = 0, "ok"
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(url, headers={"Content-Type": "application/msgpack"})
            await ws.receive()
            await ws.send_bytes(
                msgpack.packb({"action": "auth", "key": DEFAULT_KEY_ID, "secret": DEFAULT_SECRET})
            )
            await ws.receive()
            await ws.send_bytes(msgpack.packb({"action": "subscribe", "trades": ["*"], "quotes": ["*"]}))
            await ws.receive()
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                try:
                    msg = await ws.receive(timeout=left)
                except TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.BINARY:
                    status = "closed"
                    break
                batch = msgpack.unpackb(msg.data)
                if batch and batch[0].get("T") == "error":
                    status = f"dropped ({batch[0]['code']})"
                    break
                count += len(batch)
        return count, status

    return asyncio.run(main())


def _sdk_client(url: str, seconds: float) -> tuple[int, str]:
    from alpaca.data.live import StockDataStream

    count = 0

    class SlowClientDrops(logging.Handler):
        """The SDK only logs a 407 and reconnects; count those to report the drop."""

        n = 0

        def emit(self, record: logging.LogRecord) -> None:
            self.n += "slow client" in record.getMessage()

    drops = SlowClientDrops()
    sdk_log = logging.getLogger("alpaca")
    sdk_log.addHandler(drops)
    sdk_log.propagate = False

    async def handler(_: Any) -> None:
        nonlocal count
        count += 1

    stream = StockDataStream(DEFAULT_KEY_ID, DEFAULT_SECRET, raw_data=True, url_override=url)
    stream.subscribe_trades(handler, "*")
    stream.subscribe_quotes(handler, "*")
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while count == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    start = count
    time.sleep(seconds)
    got = count - start
    stream.stop()
    thread.join(timeout=5)
    return got, f"dropped (407) x{drops.n}, reconnected" if drops.n else "ok"


def _child(kind: str, url: str, seconds: float, out: Any) -> None:
    out.send((_raw_client if kind == "raw" else _sdk_client)(url, seconds))


def _measure(kind: str, steps_per_s: float, seconds: float) -> tuple[float, float, float, str]:
    ctx = mp.get_context("spawn")

    async def main() -> tuple[int, str, int]:
        sim = Simulator(SYMBOLS, seed=1, tick_rate=steps_per_s, bar_every=10**9)
        port = await sim.start()
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(kind, f"ws://127.0.0.1:{port}/v2/iex", seconds, child))
        proc.start()
        while not parent.poll():
            await asyncio.sleep(0.05)
        count, status = parent.recv()
        proc.join()
        sent = sim.data.messages_sent
        await sim.stop()
        return count, status, sent

    count, status, sent = asyncio.run(main())
    offered = steps_per_s * len(SYMBOLS) * 2  # a quote and a trade per symbol per step
    return offered, sent / seconds, count / seconds, status


def measure_sdk(steps_per_s: float, seconds: float) -> tuple[float, float, float, str]:
    """alpaca-py's client at ``steps_per_s``: offered, sent/s, received/s, status (``ok``)."""
    return _measure("sdk", steps_per_s, seconds)


def main(quick: bool = False) -> None:
    seconds = 2.0 if quick else 5.0
    rates = (250, 2_500, 10_000) if quick else (250, 2_500, 5_000, 10_000, 25_000, 100_000)
    logging.getLogger("tradingsystem.sim").setLevel(logging.ERROR)  # the expected slow-client warnings
    rows = []
    best: dict[str, float] = {}
    for kind in ("raw", "sdk"):
        name = "aiohttp msgpack" if kind == "raw" else "alpaca-py raw_data"
        for r in rates:
            offered, sent, got, status = _measure(kind, r, seconds)
            rows.append((name, f"{offered:,.0f}", f"{sent:,.0f}", f"{got:,.0f}", status))
            if status == "ok":
                best[name] = max(best.get(name, 0.0), got)
    print(
        render(
            ["subscriber", "target ticks/s", "sent ticks/s", "received ticks/s", "subscriber"],
            rows,
            title=f"simulator -> one subscriber, {len(SYMBOLS)} symbols, trades+quotes, {seconds:.0f}s windows",
        )
    )
    for name, value in best.items():
        print(f"max ticks/s received without a slow-client drop, {name}: {value:,.0f}")


if __name__ == "__main__":
    main()
