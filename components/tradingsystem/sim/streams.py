"""The two websockets: market data (``/v2/{feed}``) and trading updates (``/stream``).

Market data speaks Alpaca's v2 protocol: ``connected`` -> ``auth`` -> ``subscribe`` with
``[{"T": ...}]`` arrays, msgpack when the client sends ``Content-Type: application/msgpack``
(as alpaca-py does; ``t`` is then a msgpack Timestamp) and JSON text otherwise. Each client
has a bounded queue drained by its own writer task; a client that falls behind gets Alpaca's
``407 slow client`` error and is closed, so one slow reader never stalls the others.

Trading updates speak the ``trade_updates`` protocol (``authenticate`` -> ``listen``) and
receive every ledger event as a binary JSON frame, as Alpaca paper does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import msgpack
from aiohttp import WSMsgType, web

from tradingsystem.sim.auth import Credentials
from tradingsystem.sim.ledger import TradeEvent, rfc3339
from tradingsystem.sim.prices import Tick

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10.0
QUEUE_FRAMES = 256  # frames (batches) buffered per client before it counts as slow
CHANNELS = {"t": "trades", "q": "quotes", "b": "bars"}
SUBSCRIBABLE = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")


def tick_message(tick: Tick, msgpack_mode: bool) -> dict[str, Any]:
    """The Alpaca v2 message for a tick (fields and type codes alpaca-py parses)."""
    t: Any = msgpack.Timestamp.from_unix_nano(tick.ts_ns) if msgpack_mode else rfc3339(tick.ts_ns)
    if tick.kind == "t":
        return {
            "T": "t",
            "S": tick.symbol,
            "i": tick.trade_id,
            "x": "V",
            "p": float(tick.price or 0),
            "s": tick.size,
            "c": ["@"],
            "z": "C",
            "t": t,
        }
    if tick.kind == "q":
        return {
            "T": "q",
            "S": tick.symbol,
            "bx": "V",
            "bp": float(tick.bid or 0),
            "bs": tick.bid_size,
            "ax": "V",
            "ap": float(tick.ask or 0),
            "as": tick.ask_size,
            "c": ["R"],
            "z": "C",
            "t": t,
        }
    return {
        "T": "b",
        "S": tick.symbol,
        "o": float(tick.open or 0),
        "h": float(tick.high or 0),
        "l": float(tick.low or 0),
        "c": float(tick.close or 0),
        "v": tick.volume,
        "t": t,
        "n": tick.trade_count,
        "vw": float(tick.vwap) if tick.vwap is not None else None,
    }


def _encode(msgs: list[dict[str, Any]], msgpack_mode: bool) -> bytes | str:
    return msgpack.packb(msgs) if msgpack_mode else json.dumps(msgs)


@dataclass(eq=False)
class DataClient:
    ws: web.WebSocketResponse
    request: web.Request  # kept to drop the TCP connection (fault injection)
    msgpack_mode: bool
    subs: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in SUBSCRIBABLE})
    queue: asyncio.Queue[bytes | str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_FRAMES))
    authenticated: bool = False

    def wants(self, channel: str, symbol: str) -> bool:
        s = self.subs[channel]
        return symbol in s or "*" in s

    def ack(self) -> dict[str, Any]:
        return {"T": "subscription", **{c: sorted(v) for c, v in self.subs.items()}}


class DataStreamHub:
    """All market-data websocket clients; ``publish`` fans a batch of ticks out to them."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.clients: set[DataClient] = set()
        self.messages_sent = 0

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        client = DataClient(ws, request, "msgpack" in request.headers.get("Content-Type", ""))
        writer = asyncio.create_task(self._writer(client))
        try:
            await self._send_now(client, [{"T": "success", "msg": "connected"}])
            await self._serve(client)
        finally:
            self.clients.discard(client)
            if client.queue.full():
                writer.cancel()
            else:
                client.queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await writer
            await ws.close()
        return ws

    async def _serve(self, client: DataClient) -> None:
        ws = client.ws
        loop = asyncio.get_running_loop()
        deadline = loop.time() + AUTH_TIMEOUT_S
        while not ws.closed:
            timeout = None if client.authenticated else max(0.0, deadline - loop.time())
            try:
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:
                await self._send_now(client, [_error(404, "auth timeout")])
                return
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return
            try:
                req = msgpack.unpackb(msg.data) if msg.type == WSMsgType.BINARY else json.loads(msg.data)
            except ValueError:
                await self._send_now(client, [_error(400, "invalid syntax")])
                continue
            if not await self._action(client, req):
                return

    async def _action(self, client: DataClient, req: Any) -> bool:
        """Handle one control message; False closes the connection."""
        action = req.get("action") if isinstance(req, dict) else None
        if action == "auth":
            if client.authenticated:
                await self._send_now(client, [_error(403, "already authenticated")])
                return True
            if not self.credentials.check(req.get("key"), req.get("secret")):
                await self._send_now(client, [_error(402, "auth failed")])
                return False
            client.authenticated = True
            await self._send_now(client, [{"T": "success", "msg": "authenticated"}])
            self.clients.add(client)
            return True
        if action in ("subscribe", "unsubscribe"):
            if not client.authenticated:
                await self._send_now(client, [_error(401, "not authenticated")])
                return True
            for channel in SUBSCRIBABLE:
                symbols = req.get(channel) or []
                if action == "subscribe":
                    client.subs[channel].update(symbols)
                else:
                    client.subs[channel].difference_update(symbols)
            await self._send_now(client, [client.ack()])
            return True
        await self._send_now(client, [_error(400, "invalid syntax")])
        return True

    async def _send_now(self, client: DataClient, msgs: list[dict[str, Any]]) -> None:
        """Control replies go through the same queue so they stay ordered with data."""
        with contextlib.suppress(asyncio.QueueFull):
            client.queue.put_nowait(_encode(msgs, client.msgpack_mode))

    async def _writer(self, client: DataClient) -> None:
        ws = client.ws
        while True:
            frame = await client.queue.get()
            if frame is None or ws.closed:
                return
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)

    def publish(self, ticks: list[Tick]) -> None:
        """Queue one frame per client with the ticks it subscribed to (never blocks)."""
        if not self.clients or not ticks:
            return
        encoded: dict[bool, list[dict[str, Any]]] = {}
        for client in list(self.clients):
            mode = client.msgpack_mode
            if mode not in encoded:
                encoded[mode] = [tick_message(t, mode) for t in ticks]
            msgs = [
                m
                for t, m in zip(ticks, encoded[mode], strict=True)
                if client.wants(CHANNELS[t.kind], t.symbol)
            ]
            if not msgs:
                continue
            try:
                client.queue.put_nowait(_encode(msgs, mode))
                self.messages_sent += len(msgs)
            except asyncio.QueueFull:
                self._slow(client)

    def _slow(self, client: DataClient) -> None:
        self.clients.discard(client)
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(_encode([_error(407, "slow client")], client.msgpack_mode))
        client.queue.put_nowait(None)
        log.warning("data stream client too slow: closing it")

    async def disconnect(self, clean: bool) -> int:
        """Close every client: cleanly (close frame 1000) or by dropping the TCP connection."""
        return await _disconnect([(c.ws, c.request) for c in self.clients], clean)


def _error(code: int, msg: str) -> dict[str, Any]:
    return {"T": "error", "code": code, "msg": msg}


async def _disconnect(sockets: list[tuple[web.WebSocketResponse, web.Request]], clean: bool) -> int:
    for ws, request in sockets:
        if clean:
            await ws.close(code=1000, message=b"simulator closed the stream")
        elif request.transport is not None:
            request.transport.abort()
    return len(sockets)


class TradingStreamHub:
    """``trade_updates`` websocket clients; ``publish`` sends one ledger event to all listeners."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.listeners: dict[web.WebSocketResponse, web.Request] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        authorized = False
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    req = json.loads(msg.data)
                except ValueError:
                    await _send_json(ws, {"stream": "error", "data": {"error_message": "invalid syntax"}})
                    continue
                action, data = req.get("action"), req.get("data") or {}
                if action in ("authenticate", "auth"):
                    authorized = self.credentials.check(data.get("key_id"), data.get("secret_key"))
                    status = "authorized" if authorized else "unauthorized"
                    await _send_json(
                        ws, {"stream": "authorization", "data": {"status": status, "action": "authenticate"}}
                    )
                    if not authorized:
                        break
                elif action == "listen" and authorized:
                    streams = [s for s in data.get("streams", []) if s == "trade_updates"]
                    if streams:
                        self.listeners[ws] = request
                    else:
                        self.listeners.pop(ws, None)
                    await _send_json(ws, {"stream": "listening", "data": {"streams": streams}})
                else:
                    await _send_json(
                        ws, {"stream": "authorization", "data": {"status": "unauthorized", "action": action}}
                    )
        finally:
            self.listeners.pop(ws, None)
            await ws.close()
        return ws

    def publish(self, event: TradeEvent) -> None:
        """Called synchronously by the ledger; the sends run as tasks in event order per socket."""
        if not self.listeners:
            return
        frame = json.dumps({"stream": "trade_updates", "data": event.to_json()}).encode()
        for ws in list(self.listeners):
            task = asyncio.get_running_loop().create_task(_send_frame(ws, frame))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def disconnect(self, clean: bool) -> int:
        return await _disconnect(list(self.listeners.items()), clean)


async def _send_json(ws: web.WebSocketResponse, obj: dict[str, Any]) -> None:
    await ws.send_bytes(json.dumps(obj).encode())


async def _send_frame(ws: web.WebSocketResponse, frame: bytes) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        if not ws.closed:
            await ws.send_bytes(frame)
