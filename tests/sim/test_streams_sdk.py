"""alpaca-py's StockDataStream and TradingStream, unmodified, against the simulator's websockets."""

from __future__ import annotations

import asyncio
import json
import queue
from typing import Any

import aiohttp
import msgpack
from alpaca.data.live import StockDataStream
from alpaca.data.models import Bar, Quote, Trade
from alpaca.trading.client import TradingClient
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest
from alpaca.trading.stream import TradingStream

from tradingsystem.sim.auth import DEFAULT_KEY_ID, DEFAULT_SECRET
from tradingsystem.sim.server import Simulator
from tradingsystem_testing import eventually
from tradingsystem_testing.sim import SimulatorThread

from .conftest import collector, running, take_until


def data_stream(sim: SimulatorThread, q_handler: Any, **subs: bool) -> StockDataStream:
    stream = StockDataStream(DEFAULT_KEY_ID, DEFAULT_SECRET, url_override=f"{sim.ws_base_url}/v2/iex")
    if subs.get("trades", True):
        stream.subscribe_trades(q_handler, "AAPL")
    if subs.get("quotes", True):
        stream.subscribe_quotes(q_handler, "AAPL")
    if subs.get("bars", True):
        stream.subscribe_bars(q_handler, "AAPL")
    return stream


def test_data_stream_delivers_parsed_trades_quotes_and_bars(sim: SimulatorThread) -> None:
    q, handler = collector()
    with running(data_stream(sim, handler)):
        seen = take_until(q, lambda m: isinstance(m, Bar), "a bar")
        seen += take_until(q, lambda m: isinstance(m, Trade), "a trade")
        seen += take_until(q, lambda m: isinstance(m, Quote), "a quote")
    assert {m.symbol for m in seen} == {"AAPL"}
    bar = next(m for m in seen if isinstance(m, Bar))
    assert bar.low <= bar.vwap <= bar.high and bar.trade_count == 5  # bar_every=5 steps
    quote = next(m for m in seen if isinstance(m, Quote))
    assert 0 < quote.bid_price < quote.ask_price and quote.timestamp.tzinfo is not None
    trade = next(m for m in seen if isinstance(m, Trade))
    assert trade.price > 0 and trade.size > 0 and trade.exchange == "V"


def test_malformed_and_out_of_order_ticks_reach_the_client(sim: SimulatorThread) -> None:
    q, handler = collector()
    with running(data_stream(sim, handler, bars=False)):
        take_until(q, lambda m: isinstance(m, Quote), "a first quote")
        sim.faults.update({"malformed_ticks_next": 4})
        # One step of AAPL is a quote then a trade: both come malformed.
        bad = take_until(q, lambda m: isinstance(m, Trade) and m.price < 0, "a negative trade price")
        assert any(isinstance(m, Quote) and m.bid_price > m.ask_price for m in bad)
        last = take_until(q, lambda m: isinstance(m, Trade) and m.price > 0, "a good trade")[-1]
        sim.faults.out_of_order_ticks_next = 1
        late = take_until(q, lambda m: m.timestamp < last.timestamp, "an out-of-order tick")[-1]
    assert (last.timestamp - late.timestamp).total_seconds() > 4


def test_data_stream_reconnects_after_drop_and_after_clean_close(sim: SimulatorThread) -> None:
    q, handler = collector()
    with running(data_stream(sim, handler, quotes=False, bars=False)):
        take_until(q, lambda m: True, "first trade")
        for clean in (False, True):
            assert sim.disconnect("data", clean=clean) == 1
            eventually(lambda: sim.status()["data_clients"] == 1, "the SDK to reconnect", timeout=40)
            while not q.empty():
                q.get_nowait()
            take_until(q, lambda m: isinstance(m, Trade), "trades after reconnect")


async def raw_session(
    url: str, msgpack_mode: bool
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()
    headers = {"Content-Type": "application/msgpack"} if msgpack_mode else {}
    ws = await session.ws_connect(url, headers=headers)
    return session, ws


async def recv(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    msg = await ws.receive(timeout=5)
    if msg.type == aiohttp.WSMsgType.BINARY:
        return msgpack.unpackb(msg.data)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_json_protocol_handshake_errors_and_subscription_ack() -> None:
    sim = Simulator(["AAPL", "MSFT"], seed=1, tick_rate=50)
    port = await sim.start()
    session, ws = await raw_session(f"ws://127.0.0.1:{port}/v2/sip", msgpack_mode=False)
    try:
        assert await recv(ws) == [{"T": "success", "msg": "connected"}]
        await ws.send_str(json.dumps({"action": "subscribe", "trades": ["AAPL"]}))
        assert (await recv(ws))[0] == {"T": "error", "code": 401, "msg": "not authenticated"}
        await ws.send_str("not json")
        assert (await recv(ws))[0]["code"] == 400
        await ws.send_str(json.dumps({"action": "auth", "key": DEFAULT_KEY_ID, "secret": DEFAULT_SECRET}))
        assert await recv(ws) == [{"T": "success", "msg": "authenticated"}]
        await ws.send_str(json.dumps({"action": "auth", "key": DEFAULT_KEY_ID, "secret": DEFAULT_SECRET}))
        assert (await recv(ws))[0]["code"] == 403
        await ws.send_str(json.dumps({"action": "subscribe", "trades": ["AAPL"], "quotes": ["MSFT"]}))
        ack = (await recv(ws))[0]
        assert ack["T"] == "subscription" and ack["trades"] == ["AAPL"] and ack["quotes"] == ["MSFT"]
        kinds: set[tuple[str, str]] = set()
        for _ in range(50):
            for m in await recv(ws):
                kinds.add((m["T"], m["S"]))
                assert isinstance(m["t"], str) and m["t"].endswith("Z")
            if len(kinds) == 2:
                break
        assert kinds == {("t", "AAPL"), ("q", "MSFT")}
        await sim.disconnect("data", clean=True)
        closing = await ws.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1000
    finally:
        await session.close()
        await sim.stop()


async def test_msgpack_auth_failure_is_402_then_close() -> None:
    sim = Simulator(["AAPL"], seed=1)
    port = await sim.start()
    session, ws = await raw_session(f"ws://127.0.0.1:{port}/v2/iex", msgpack_mode=True)
    try:
        assert await recv(ws) == [{"T": "success", "msg": "connected"}]
        await ws.send_bytes(msgpack.packb({"action": "auth", "key": "SIMKEY", "secret": "nope"}))
        assert await recv(ws) == [{"T": "error", "code": 402, "msg": "auth failed"}]
        assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    finally:
        await session.close()
        await sim.stop()


def trade_updates(sim: SimulatorThread) -> tuple[TradingStream, queue.Queue[Any]]:
    q, handler = collector()
    stream = TradingStream(DEFAULT_KEY_ID, DEFAULT_SECRET, url_override=f"{sim.ws_base_url}/stream")
    stream.subscribe_trade_updates(handler)
    return stream, q


def listening(sim: SimulatorThread) -> bool:
    return sim.status()["trading_clients"] == 1


def test_trade_updates_new_fill_canceled_and_rejected(trading: TradingClient, sim: SimulatorThread) -> None:
    stream, q = trade_updates(sim)
    with running(stream):
        eventually(lambda: listening(sim), "trade_updates listener")
        trading.submit_order(
            MarketOrderRequest(symbol="AAPL", qty=3, side="buy", time_in_force="day", client_order_id="m1")
        )
        events = take_until(q, lambda u: u.event == "fill", "fill")
        assert [u.event for u in events] == ["new", "fill"]
        fill = events[-1]
        ledger_fill = sim.call(lambda: sim.ledger.fills[-1])
        assert fill.order.client_order_id == "m1" and fill.qty == 3 and fill.position_qty == 3
        assert str(fill.execution_id) == ledger_fill.execution_id and fill.price == float(ledger_fill.price)

        resting = trading.submit_order(
            LimitOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="gtc", limit_price=1)
        )
        trading.cancel_order_by_id(resting.id)
        assert [u.event for u in take_until(q, lambda u: u.event == "canceled", "cancel")] == [
            "new",
            "canceled",
        ]

        sim.faults.reject_next = 1
        trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side="buy", time_in_force="day"))
        rejected = take_until(q, lambda u: u.event == "rejected", "rejection")
        assert [u.event for u in rejected] == ["new", "rejected"]
        assert rejected[-1].order.status == "rejected"


def test_partial_fills_arrive_as_partial_fill_events() -> None:
    with SimulatorThread(["AAPL"], seed=3, tick_rate=50, partial_fills=True, initial_cash=1_000_000) as sim:
        eventually(lambda: "AAPL" in sim.ledger.quotes, "a quote")
        trading = TradingClient(DEFAULT_KEY_ID, DEFAULT_SECRET, url_override=sim.base_url)
        stream, q = trade_updates(sim)
        with running(stream):
            eventually(lambda: listening(sim), "trade_updates listener")
            trading.submit_order(MarketOrderRequest(symbol="AAPL", qty=1500, side="buy", time_in_force="gtc"))
            events = take_until(q, lambda u: u.event == "fill", "the final fill", timeout=30)
        parts = [u for u in events if u.event == "partial_fill"]
        assert len(parts) >= 1  # displayed ask sizes are at most 1000, so 1500 needs several quotes
        assert sum(u.qty for u in events if u.qty) == 1500
        assert events[-1].position_qty == 1500


def test_trading_stream_reconnects_after_a_drop(trading: TradingClient, sim: SimulatorThread) -> None:
    stream, q = trade_updates(sim)
    with running(stream):
        eventually(lambda: listening(sim), "trade_updates listener")
        assert sim.disconnect("trading", clean=False) == 1
        eventually(lambda: listening(sim), "the SDK to reconnect", timeout=40)
        trading.submit_order(MarketOrderRequest(symbol="MSFT", qty=1, side="sell", time_in_force="day"))
        take_until(q, lambda u: u.event == "fill", "fill after reconnect")


async def test_trading_stream_protocol_and_wrong_keys() -> None:
    sim = Simulator(["AAPL"], seed=1)
    port = await sim.start()
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(f"ws://127.0.0.1:{port}/stream")
        auth = {"action": "authenticate", "data": {"key_id": DEFAULT_KEY_ID, "secret_key": "wrong"}}
        await ws.send_str(json.dumps(auth))
        assert json.loads((await ws.receive(timeout=5)).data)["data"]["status"] == "unauthorized"
        assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

        ws = await session.ws_connect(f"ws://127.0.0.1:{port}/stream")
        auth["data"]["secret_key"] = DEFAULT_SECRET
        await ws.send_str(json.dumps(auth))
        reply = await ws.receive(timeout=5)
        assert reply.type == aiohttp.WSMsgType.BINARY  # Alpaca paper sends binary frames
        assert json.loads(reply.data) == {
            "stream": "authorization",
            "data": {"status": "authorized", "action": "authenticate"},
        }
        await ws.send_str(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert json.loads((await ws.receive(timeout=5)).data) == {
            "stream": "listening",
            "data": {"streams": ["trade_updates"]},
        }
        assert len(sim.trading.listeners) == 1
    finally:
        await session.close()
        await sim.stop()


async def test_a_client_that_stops_reading_gets_407_slow_client() -> None:
    sim = Simulator(["AAPL", "MSFT"], seed=1, tick_rate=20_000)
    port = await sim.start()
    session, ws = await raw_session(f"ws://127.0.0.1:{port}/v2/iex", msgpack_mode=True)
    try:
        await recv(ws)
        await ws.send_bytes(
            msgpack.packb({"action": "auth", "key": DEFAULT_KEY_ID, "secret": DEFAULT_SECRET})
        )
        await recv(ws)
        await ws.send_bytes(msgpack.packb({"action": "subscribe", "trades": ["*"], "quotes": ["*"]}))
        await recv(ws)
        for _ in range(600):  # stop reading until the simulator gives up on us (bounded: 60 s)
            if not sim.data.clients:
                break
            await asyncio.sleep(0.1)
        assert not sim.data.clients
        last: list[dict[str, Any]] = []
        for _ in range(100_000):
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            last = msgpack.unpackb(msg.data)
        assert last == [{"T": "error", "code": 407, "msg": "slow client"}]
    finally:
        await session.close()
        await sim.stop()
