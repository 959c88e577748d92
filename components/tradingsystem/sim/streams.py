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
QUEUE_FRAMES = 256  # frames (batches) buffered per data client before it counts as slow
TRADING_QUEUE_FRAMES = 10_000  # trade updates are few but must not be lost
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


class Outbox:
    """One connection's bounded, ordered send queue, drained by its own writer task.

    Producers never block: ``put`` returns False when the client is too far behind.
    """

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, size: int) -> None:
        self.ws = ws
        self.request = request  # kept to drop the TCP connection (fault injection)
        self.queue: asyncio.Queue[bytes | str | None] = asyncio.Queue(size)
        self.task = asyncio.create_task(self._drain())

    def put(self, frame: bytes | str) -> bool:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    async def _drain(self) -> None:
        ws = self.ws
        while (frame := await self.queue.get()) is not None and not ws.closed:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        await ws.close()  # also ends the reader side when the writer gave up on a slow client

    def replace_with_last(self, frame: bytes | str) -> None:
        """Discard what is queued, send ``frame``, then close (the slow-client path)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(frame)
        self.queue.put_nowait(None)

    async def close(self) -> None:
        """Flush what is queued, then close the websocket."""
        if not self.put_end():
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self.task
        await self.ws.close()

    def put_end(self) -> bool:
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            return False
        return True

    async def disconnect(self, clean: bool) -> None:
        """Close cleanly (close frame 1000) or drop the TCP connection without a close frame."""
        if clean:
            await self.ws.close(code=1000, message=b"simulator closed the stream")
        elif self.request.transport is not None:
            self.request.transport.abort()


@dataclass(eq=False)
class DataClient:
    out: Outbox
    msgpack_mode: bool
    subs: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in SUBSCRIBABLE})
    authenticated: bool = False

    def send(self, msgs: list[dict[str, Any]]) -> bool:
        return self.out.put(_encode(msgs, self.msgpack_mode))

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
        client = DataClient(
            Outbox(ws, request, QUEUE_FRAMES), "msgpack" in request.headers.get("Content-Type", "")
        )
        try:
            client.send([{"T": "success", "msg": "connected"}])
            await self._serve(client)
        finally:
            self.clients.discard(client)
            await client.out.close()
        return ws

    async def _serve(self, client: DataClient) -> None:
        ws = client.out.ws
        loop = asyncio.get_running_loop()
        deadline = loop.time() + AUTH_TIMEOUT_S
        while not ws.closed:
            timeout = None if client.authenticated else max(0.0, deadline - loop.time())
            try:
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:
                client.send([_error(404, "auth timeout")])
                return
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return
            try:
                req = msgpack.unpackb(msg.data) if msg.type == WSMsgType.BINARY else json.loads(msg.data)
            except ValueError:
                client.send([_error(400, "invalid syntax")])
                continue
            if not self._action(client, req):
                return

    def _action(self, client: DataClient, req: Any) -> bool:
        """Handle one control message; False closes the connection."""
        action = req.get("action") if isinstance(req, dict) else None
        if action == "auth":
            if client.authenticated:
                client.send([_error(403, "already authenticated")])
                return True
            if not self.credentials.check(req.get("key"), req.get("secret")):
                client.send([_error(402, "auth failed")])
                return False
            client.authenticated = True
            client.send([{"T": "success", "msg": "authenticated"}])
            self.clients.add(client)
            return True
        if action in ("subscribe", "unsubscribe"):
            if not client.authenticated:
                client.send([_error(401, "not authenticated")])
                return True
            for channel in SUBSCRIBABLE:
                symbols = req.get(channel) or []
                if action == "subscribe":
                    client.subs[channel].update(symbols)
                else:
                    client.subs[channel].difference_update(symbols)
            client.send([client.ack()])
            return True
        client.send([_error(400, "invalid syntax")])
        return True

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
            if client.send(msgs):
                self.messages_sent += len(msgs)
            else:
                self.clients.discard(client)
                client.out.replace_with_last(_encode([_error(407, "slow client")], mode))
                log.warning("data stream client too slow: closing it")

    async def disconnect(self, clean: bool) -> int:
        """Close every client: cleanly (close frame 1000) or by dropping the TCP connection."""
        clients, self.clients = self.clients, set()  # gone from now on, even before the close completes
        for c in clients:
            await c.out.disconnect(clean)
        return len(clients)


def _error(code: int, msg: str) -> dict[str, Any]:
    return {"T": "error", "code": code, "msg": msg}


class TradingStreamHub:
    """``trade_updates`` websocket clients; ``publish`` sends one ledger event to all listeners."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.listeners: dict[web.WebSocketResponse, Outbox] = {}

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        out = Outbox(ws, request, TRADING_QUEUE_FRAMES)
        authorized = False
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    req = json.loads(msg.data)
                except ValueError:
                    out.put(_json({"stream": "error", "data": {"error_message": "invalid syntax"}}))
                    continue
                action, data = req.get("action"), req.get("data") or {}
                if action in ("authenticate", "auth"):
                    authorized = self.credentials.check(data.get("key_id"), data.get("secret_key"))
                    status = "authorized" if authorized else "unauthorized"
                    out.put(
                        _json(
                            {"stream": "authorization", "data": {"status": status, "action": "authenticate"}}
                        )
                    )
                    if not authorized:
                        break
                elif action == "listen" and authorized:
                    streams = [s for s in data.get("streams", []) if s == "trade_updates"]
                    if streams:
                        self.listeners[ws] = out
                    else:
                        self.listeners.pop(ws, None)
                    out.put(_json({"stream": "listening", "data": {"streams": streams}}))
                else:
                    out.put(
                        _json(
                            {"stream": "authorization", "data": {"status": "unauthorized", "action": action}}
                        )
                    )
        finally:
            self.listeners.pop(ws, None)
            await out.close()
        return ws

    def publish(self, event: TradeEvent) -> None:
        """Called synchronously by the ledger; each socket's outbox keeps events in order."""
        if not self.listeners:
            return
        frame = _json({"stream": "trade_updates", "data": event.to_json()})
        for ws, out in list(self.listeners.items()):
            if not out.put(frame):
                self.listeners.pop(ws, None)
                out.replace_with_last(_json({"stream": "error", "data": {"error_message": "slow client"}}))
                log.warning("trade_updates client too slow: closing it")

    async def disconnect(self, clean: bool) -> int:
        listeners, self.listeners = self.listeners, {}
        for out in listeners.values():
            await out.disconnect(clean)
        return len(listeners)


def _json(obj: dict[str, Any]) -> bytes:
    """Alpaca paper sends trade_updates as binary frames holding JSON."""
    return json.dumps(obj).encode()
