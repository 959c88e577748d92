"""REST routes: Alpaca trading (``/v2/...``), historical data (``/v2/stocks/...``) and the
simulator's own control API (``/_sim/...``, no auth, loopback only).

Responses use Alpaca's shapes: numbers as strings, errors as ``{"code", "message"}``, 403 for
bad keys, 422 for invalid or duplicate orders, 404 for unknown ids, 429 with ``X-RateLimit-*``
headers, 204 for a single cancel and 207 for bulk cancels/closes. The ``/v2`` middleware also
applies the REST faults (latency, 429 bursts, 5xx) before the handler runs.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tradingsystem.sim.ledger import CODE_INVALID, CODE_NOT_FOUND, Position, SimError, num, rfc3339
from tradingsystem.sim.prices import Tick
from tradingsystem.sim.streams import tick_message

if TYPE_CHECKING:
    from tradingsystem.sim.server import Simulator

SIM: web.AppKey[Simulator] = web.AppKey("simulator")
WS_PATHS = ("/v2/iex", "/v2/sip", "/stream")
MAX_PAGE = 10_000
TIMEFRAME_RE = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W)$")
TIMEFRAME_MINUTES = {"Min": 1, "T": 1, "Hour": 60, "H": 60, "Day": 1440, "D": 1440, "Week": 10080, "W": 10080}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: int | None, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message} if code is None else {"code": code, "message": message}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def alpaca_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Auth, faults and rate limit for ``/v2`` REST; SimError -> Alpaca error body."""
    path = request.path
    if not path.startswith("/v2/") or path in WS_PATHS:
        return await handler(request)
    sim = request.app[SIM]
    faults = sim.faults
    if faults.latency_s:
        await asyncio.sleep(faults.latency_s)
    key_id = request.headers.get("APCA-API-KEY-ID")
    if not sim.credentials.check(key_id, request.headers.get("APCA-API-SECRET-KEY")):
        return error(403, 40310000, "forbidden")
    allowed, headers = sim.limiter.hit(key_id or "", faults.rate_limit_per_min)
    if faults.take("http_429_next") or not allowed:
        return error(429, 42910000, "rate limit exceeded", headers)
    if faults.take("http_5xx_next"):
        return error(faults.http_5xx_status, 50010000, "internal server error", headers)
    try:
        response = await handler(request)
    except SimError as exc:
        return error(exc.status, exc.code, exc.message, headers)
    response.headers.update(headers)
    return response


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise SimError(422, CODE_INVALID, "request body format is invalid") from None
    if not isinstance(body, dict):
        raise SimError(422, CODE_INVALID, "request body format is invalid")
    return body


# --- trading -------------------------------------------------------------------------
async def get_account(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    ledger = sim.ledger
    long_mv = sum(
        (p.qty * (ledger.mark(p.symbol) or p.avg_entry_price) for p in ledger.open_positions() if p.qty > 0),
        Decimal(0),
    )
    short_mv = sum(
        (p.qty * (ledger.mark(p.symbol) or p.avg_entry_price) for p in ledger.open_positions() if p.qty < 0),
        Decimal(0),
    )
    cash = num(ledger.cash.quantize(Decimal("0.01")))
    buying_power = num(max(ledger.cash, Decimal(0)).quantize(Decimal("0.01")))
    equity = num(ledger.equity().quantize(Decimal("0.01")))
    return web.json_response(
        {
            "id": ledger.account_id,
            "account_number": "SIM000001",
            "status": "ACTIVE",
            "crypto_status": "INACTIVE",
            "currency": "USD",
            "cash": cash,
            "buying_power": buying_power,
            "regt_buying_power": buying_power,
            "daytrading_buying_power": buying_power,
            "non_marginable_buying_power": buying_power,
            "portfolio_value": equity,
            "equity": equity,
            "last_equity": num(ledger.initial_cash),
            "long_market_value": num(long_mv.quantize(Decimal("0.01"))),
            "short_market_value": num(short_mv.quantize(Decimal("0.01"))),
            "initial_margin": "0",
            "maintenance_margin": "0",
            "last_maintenance_margin": "0",
            "sma": "0",
            "multiplier": "1",
            "daytrade_count": 0,
            "pattern_day_trader": False,
            "shorting_enabled": True,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "trade_suspended_by_user": False,
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "pending_transfer_out": "0",
            "created_at": rfc3339(request.app[SIM].start_ns),
        }
    )


async def get_clock(request: web.Request) -> web.Response:
    # The simulated market is continuous: always open, and "next" session times are a day out.
    now = datetime.now(UTC)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return web.json_response(
        {
            "timestamp": now.strftime(fmt),
            "is_open": True,
            "next_open": (now + timedelta(days=1)).strftime(fmt),
            "next_close": (now + timedelta(days=1)).strftime(fmt),
        }
    )


def _asset(symbol: str, asset_id: str) -> dict[str, Any]:
    return {
        "id": asset_id,
        "class": "us_equity",
        "exchange": "NASDAQ",
        "symbol": symbol,
        "name": f"{symbol} (simulated)",
        "status": "active",
        "tradable": True,
        "marginable": True,
        "shortable": True,
        "easy_to_borrow": True,
        "fractionable": True,
        "maintenance_margin_requirement": 30,
        "attributes": [],
    }


async def get_assets(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    return web.json_response([_asset(s, a) for s, a in sim.ledger.asset_ids.items()])


async def get_asset(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    symbol = _symbol_of(sim, request.match_info["symbol"])
    return web.json_response(_asset(symbol, sim.ledger.asset_ids[symbol]))


def _symbol_of(sim: Simulator, symbol_or_id: str) -> str:
    for symbol, asset_id in sim.ledger.asset_ids.items():
        if symbol_or_id in (symbol, asset_id):
            return symbol
    raise SimError(404, CODE_NOT_FOUND, "asset not found")


async def post_order(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM]
    body = await _body(request)
    order = sim.ledger.submit(body, reject=sim.faults.take("reject_next"))
    if sim.faults.take("order_504_next"):
        return error(504, None, "gateway timeout")
    if sim.faults.take("order_hang_next"):
        await asyncio.sleep(sim.faults.hang_s)
        if request.transport is not None:
            request.transport.abort()  # no response at all, as when a proxy gives up
        raise asyncio.CancelledError
    return web.json_response(order.to_json())


async def get_orders(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    q = request.query
    status = q.get("status", "open")
    if status not in ("open", "closed", "all"):
        raise SimError(422, CODE_INVALID, "invalid status")
    try:
        limit = min(int(q.get("limit", "50")), 500)
    except ValueError:
        raise SimError(422, CODE_INVALID, "invalid limit") from None
    symbols = {s for s in q.get("symbols", "").split(",") if s}
    after, until = _time_param(q.get("after")), _time_param(q.get("until"))
    orders = [
        o
        for o in sim.ledger.orders.values()
        if (status == "all" or o.is_open == (status == "open"))
        and (not symbols or o.symbol in symbols)
        and (not q.get("side") or o.side == q["side"])
        and (after is None or o.created_ns > after)
        and (until is None or o.created_ns < until)
    ]
    orders.sort(key=lambda o: o.created_ns, reverse=q.get("direction", "desc") == "desc")
    return web.json_response([o.to_json() for o in orders[:limit]])


async def get_order(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].ledger.order(request.match_info["order_id"]).to_json())


async def get_order_by_cid(request: web.Request) -> web.Response:
    cid = request.query.get("client_order_id", "")
    return web.json_response(request.app[SIM].ledger.order_by_cid(cid).to_json())


async def cancel_order(request: web.Request) -> web.Response:
    request.app[SIM].ledger.cancel(request.match_info["order_id"])
    return web.Response(status=204)


async def cancel_orders(request: web.Request) -> web.Response:
    canceled = request.app[SIM].ledger.cancel_all()
    return web.json_response([{"id": o.id, "status": 200, "body": o.to_json()} for o in canceled], status=207)


def _position(sim: Simulator, p: Position) -> dict[str, Any]:
    mark = sim.ledger.mark(p.symbol) or p.avg_entry_price
    cost = p.qty * p.avg_entry_price
    value = p.qty * mark
    pl = value - cost
    return {
        "asset_id": sim.ledger.asset_ids[p.symbol],
        "symbol": p.symbol,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "asset_marginable": True,
        "qty": num(p.qty),
        "qty_available": num(p.qty),
        "avg_entry_price": num(p.avg_entry_price.quantize(Decimal("0.0001"))),
        "side": "long" if p.qty > 0 else "short",
        "market_value": num(value.quantize(Decimal("0.01"))),
        "cost_basis": num(cost.quantize(Decimal("0.01"))),
        "unrealized_pl": num(pl.quantize(Decimal("0.01"))),
        "unrealized_plpc": num((pl / abs(cost)).quantize(Decimal("0.0001"))) if cost else "0",
        "unrealized_intraday_pl": num(pl.quantize(Decimal("0.01"))),
        "unrealized_intraday_plpc": num((pl / abs(cost)).quantize(Decimal("0.0001"))) if cost else "0",
        "current_price": num(mark.quantize(Decimal("0.0001"))),
        "lastday_price": num(mark.quantize(Decimal("0.0001"))),
        "change_today": "0",
    }


async def get_positions(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    return web.json_response([_position(sim, p) for p in sim.ledger.open_positions()])


async def get_position(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    symbol = _symbol_of(sim, request.match_info["symbol"])
    pos = sim.ledger.positions.get(symbol)
    if pos is None or pos.qty == 0:
        raise SimError(404, CODE_NOT_FOUND, "position does not exist")
    return web.json_response(_position(sim, pos))


async def close_position(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    symbol = _symbol_of(sim, request.match_info["symbol"])
    qty = _query_decimal(request, "qty")
    body = sim.ledger.close_position_body(symbol, qty)
    pct = _query_decimal(request, "percentage")
    if pct is not None:
        body["qty"] = str(Decimal(body["qty"]) * pct / 100)
    return web.json_response(sim.ledger.submit(body).to_json())


async def close_positions(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    if request.query.get("cancel_orders", "false").lower() == "true":
        sim.ledger.cancel_all()
    out = []
    for p in sim.ledger.open_positions():
        order = sim.ledger.submit(sim.ledger.close_position_body(p.symbol, None))
        out.append({"order_id": order.id, "status": 200, "symbol": p.symbol, "body": order.to_json()})
    return web.json_response(out, status=207)


def _query_decimal(request: web.Request, name: str) -> Decimal | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise SimError(422, CODE_INVALID, f"invalid {name}") from None
    if value <= 0:
        raise SimError(422, CODE_INVALID, f"{name} must be > 0")
    return value


def _time_param(raw: str | None) -> int | None:
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise SimError(422, CODE_INVALID, f"invalid timestamp {raw!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000_000)


# --- market data ---------------------------------------------------------------------
def _symbols_param(sim: Simulator, request: web.Request) -> list[str]:
    symbols = [s for s in request.query.get("symbols", "").split(",") if s]
    if not symbols:
        raise SimError(422, CODE_INVALID, "symbols is required")
    return [s for s in symbols if s in sim.ledger.asset_ids]


def _bar_json(bar: Tick) -> dict[str, Any]:
    return {
        "t": rfc3339(bar.ts_ns),
        "o": float(bar.open or 0),
        "h": float(bar.high or 0),
        "l": float(bar.low or 0),
        "c": float(bar.close or 0),
        "v": bar.volume,
        "n": bar.trade_count,
        "vw": float(bar.vwap or 0),
    }


async def get_bars(request: web.Request) -> web.Response:
    """Historical bars, paginated like Alpaca (limit over all symbols, opaque page token)."""
    sim = request.app[SIM]
    q = request.query
    m = TIMEFRAME_RE.match(q.get("timeframe", "1Min"))
    if m is None:
        raise SimError(422, CODE_INVALID, "invalid timeframe")
    minutes = int(m.group(1)) * TIMEFRAME_MINUTES[m.group(2)]
    start, end = _time_param(q.get("start")), _time_param(q.get("end"))
    try:
        limit = min(int(q.get("limit", "1000")), MAX_PAGE)
        offset = int(q.get("page_token") or 0)
    except ValueError:
        raise SimError(422, CODE_INVALID, "invalid limit or page_token") from None
    rows = [
        (s, b)
        for s in _symbols_param(sim, request)
        for b in sim.history(s, minutes)
        if (start is None or b.ts_ns >= start) and (end is None or b.ts_ns <= end)
    ]
    if q.get("sort") == "desc":
        rows.sort(key=lambda r: (r[0], -r[1].ts_ns))
    page = rows[offset : offset + limit]
    bars: dict[str, list[dict[str, Any]]] = {}
    for symbol, bar in page:
        bars.setdefault(symbol, []).append(_bar_json(bar))
    more = offset + limit < len(rows)
    return web.json_response({"bars": bars, "next_page_token": str(offset + limit) if more else None})


async def get_latest(request: web.Request) -> web.Response:
    """``/v2/stocks/{trades,quotes}/latest`` from the live simulated book."""
    sim = request.app[SIM]
    kind = request.match_info["kind"]
    out: dict[str, Any] = {}
    for s in _symbols_param(sim, request):
        tick = sim.latest.get((kind, s))
        if tick is not None:
            msg = tick_message(tick, msgpack_mode=False)
            out[s] = {k: v for k, v in msg.items() if k not in ("T", "S")}
    return web.json_response({kind: out})


# --- control API ---------------------------------------------------------------------
async def sim_ledger(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].ledger.snapshot())


async def sim_faults(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    if request.method == "POST":
        try:
            sim.faults.update(json.loads(await request.text() or "{}"))
        except (ValueError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(sim.faults.to_json())


async def sim_reset(request: web.Request) -> web.Response:
    request.app[SIM].reset()
    return web.json_response({"reset": True})


async def sim_disconnect(request: web.Request) -> web.Response:
    body = json.loads(await request.text() or "{}")
    stream, mode = body.get("stream", "all"), body.get("mode", "drop")
    if stream not in ("data", "trading", "all") or mode not in ("drop", "close"):
        return web.json_response({"error": "stream: data|trading|all, mode: drop|close"}, status=400)
    n = await request.app[SIM].disconnect(stream, clean=mode == "close")
    return web.json_response({"disconnected": n})


async def healthz(request: web.Request) -> web.Response:
    # Kubernetes probes (the operator's Deployment probes /healthz and /readyz on every service):
    # answering at all means the event loop runs and the API is served.
    return web.json_response({"live": True})


async def readyz(request: web.Request) -> web.Response:
    return web.json_response({"ready": True})


async def sim_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].status())


def add_routes(app: web.Application) -> None:
    app.add_routes(
        [
            web.get("/v2/account", get_account),
            web.get("/v2/clock", get_clock),
            web.get("/v2/assets", get_assets),
            web.get("/v2/assets/{symbol}", get_asset),
            web.post("/v2/orders", post_order),
            web.get("/v2/orders", get_orders),
            web.delete("/v2/orders", cancel_orders),
            web.get("/v2/orders:by_client_order_id", get_order_by_cid),
            web.get("/v2/orders/{order_id}", get_order),
            web.delete("/v2/orders/{order_id}", cancel_order),
            web.get("/v2/positions", get_positions),
            web.delete("/v2/positions", close_positions),
            web.get("/v2/positions/{symbol}", get_position),
            web.delete("/v2/positions/{symbol}", close_position),
            web.get("/v2/stocks/bars", get_bars),
            web.get("/v2/stocks/{kind:trades|quotes}/latest", get_latest),
            web.get("/_sim/ledger", sim_ledger),
            web.get("/_sim/faults", sim_faults),
            web.post("/_sim/faults", sim_faults),
            web.post("/_sim/reset", sim_reset),
            web.post("/_sim/disconnect", sim_disconnect),
            web.get("/_sim/status", sim_status),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
        ]
    )
