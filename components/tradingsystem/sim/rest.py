"""REST routes: Alpaca trading (``/v2/...``), historical data (``/v2/stocks/...``) and the
simulator's own control API (``/_sim/...``, no auth, loopback only).

Responses use Alpaca's shapes: numbers as strings, errors as ``{"code", "message"}``, 403 for
bad keys, 422 for invalid or duplicate orders, 404 for unknown ids, 429 with ``X-RateLimit-*``
headers, 204 for a single cancel and 207 for bulk cancels/closes. The ``/v2`` middleware also
applies the REST faults (latency, 429 bursts, 5xx) and runs the session closes the simulated
clock has passed (day expiries) before the handler runs.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tradingsystem.common.money import CENT, positive
from tradingsystem.sim.ledger import CODE_INVALID, CODE_NOT_FOUND, Position, SimError, num, rfc3339
from tradingsystem.sim.prices import Tick
from tradingsystem.sim.session import clock
from tradingsystem.sim.streams import tick_message

if TYPE_CHECKING:
    from tradingsystem.sim.server import Simulator

SIM: web.AppKey[Simulator] = web.AppKey("simulator")
WS_PATHS = ("/v2/iex", "/v2/sip", "/stream")
MAX_PAGE = 10_000
MAINTENANCE_MARGIN = Decimal("0.3")  # the assets' maintenance_margin_requirement (30 %)
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
    sim.ledger.on_clock(sim.now_ns())  # expire what the session close has passed before answering
    try:
        response = await handler(request)
    except SimError as exc:
        return error(exc.status, exc.code, exc.message, headers)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        # An Alpaca endpoint the simulator does not serve: say so in Alpaca's error shape.
        return error(422, CODE_INVALID, f"{request.method} {path} is not supported by the simulator", headers)
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
def _money(d: Decimal) -> str | None:
    return num(d.quantize(CENT))


async def get_account(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    ledger = sim.ledger
    config = ledger.account
    positions = ledger.open_positions()
    long_mv = sum((ledger.market_value(p) for p in positions if p.qty > 0), Decimal(0))
    short_mv = sum((ledger.market_value(p) for p in positions if p.qty < 0), Decimal(0))
    gross = long_mv - short_mv
    buying_power = ledger.buying_power()
    return web.json_response(
        {
            "id": ledger.account_id,
            "account_number": "SIM000001",
            "status": "ACTIVE",
            "crypto_status": "INACTIVE",
            "currency": "USD",
            "cash": _money(ledger.cash),
            "buying_power": _money(buying_power),
            "regt_buying_power": _money(buying_power),
            "daytrading_buying_power": _money(buying_power if config.multiplier == 4 else Decimal(0)),
            "non_marginable_buying_power": _money(buying_power / config.multiplier),
            "portfolio_value": _money(ledger.equity()),
            "equity": _money(ledger.cash + long_mv + short_mv),
            "last_equity": _money(ledger.last_equity),
            "long_market_value": _money(long_mv),
            "short_market_value": _money(short_mv),
            "position_market_value": _money(gross),
            "initial_margin": _money(gross / config.multiplier),
            "maintenance_margin": _money(gross * MAINTENANCE_MARGIN),
            "last_maintenance_margin": "0",
            "sma": "0",
            "multiplier": str(config.multiplier),
            "daytrade_count": ledger.daytrade_count(),
            "pattern_day_trader": False,
            "shorting_enabled": config.can_short,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "trade_suspended_by_user": False,
            "accrued_fees": "0",
            "pending_transfer_in": "0",
            "pending_transfer_out": "0",
            "created_at": rfc3339(ledger.created_ns),
        }
    )


async def get_clock(request: web.Request) -> web.Response:
    """The session model's clock at the simulated now (``session.py``)."""
    sim = request.app[SIM]
    c = clock(sim.ledger.session, sim.now_ns())
    return web.json_response(
        {
            "timestamp": rfc3339(c.now_ns),
            "is_open": c.is_open,
            "next_open": rfc3339(c.next_open_ns),
            "next_close": rfc3339(c.next_close_ns),
        }
    )


def _asset(symbol: str, asset_id: str, easy_to_borrow: bool) -> dict[str, Any]:
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
        "easy_to_borrow": easy_to_borrow,
        "fractionable": True,
        "maintenance_margin_requirement": 30,
        "attributes": [],
    }


async def get_assets(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    htb = sim.ledger.account.hard_to_borrow
    return web.json_response([_asset(s, a, s not in htb) for s, a in sim.ledger.asset_ids.items()])


async def get_asset(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    symbol = _symbol_of(sim, request.match_info["symbol"])
    htb = sim.ledger.account.hard_to_borrow
    return web.json_response(_asset(symbol, sim.ledger.asset_ids[symbol], symbol not in htb))


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
    return web.json_response(sim.ledger.order_json(order, nested=True))


async def replace_order(request: web.Request) -> web.Response:
    """PATCH: the replacement order (the old one is now ``replaced``)."""
    sim = request.app[SIM]
    order = sim.ledger.replace(request.match_info["order_id"], await _body(request))
    return web.json_response(sim.ledger.order_json(order, nested=True))


def _nested(request: web.Request) -> bool:
    return request.query.get("nested", "false").lower() == "true"


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
    nested = _nested(request)
    orders = [
        o
        for o in sim.ledger.orders.values()
        if not (nested and o.parent_id is not None)  # nested: legs only inside their parent
        and (status == "all" or o.is_open == (status == "open"))
        and (not symbols or o.symbol in symbols)
        and (not q.get("side") or o.side == q["side"])
        and (after is None or o.created_ns > after)
        and (until is None or o.created_ns < until)
    ]
    orders.sort(key=lambda o: o.created_ns, reverse=q.get("direction", "desc") == "desc")
    return web.json_response([sim.ledger.order_json(o, nested) for o in orders[:limit]])


async def get_order(request: web.Request) -> web.Response:
    ledger = request.app[SIM].ledger
    return web.json_response(
        ledger.order_json(ledger.order(request.match_info["order_id"]), _nested(request))
    )


async def get_order_by_cid(request: web.Request) -> web.Response:
    cid = request.query.get("client_order_id", "")
    ledger = request.app[SIM].ledger
    return web.json_response(ledger.order_json(ledger.order_by_cid(cid), nested=True))


async def cancel_order(request: web.Request) -> web.Response:
    request.app[SIM].ledger.cancel(request.match_info["order_id"])
    return web.Response(status=204)


async def cancel_orders(request: web.Request) -> web.Response:
    canceled = request.app[SIM].ledger.cancel_all()
    return web.json_response([{"id": o.id, "status": 200, "body": o.to_json()} for o in canceled], status=207)


def _qty_available(sim: Simulator, p: Position) -> Decimal:
    """The position less what open closing orders already hold (signed like ``qty``)."""
    closing_side = "sell" if p.qty > 0 else "buy"
    held = sum((o.remaining for o in sim.ledger.reserving(p.symbol) if o.side == closing_side), Decimal(0))
    left = max(abs(p.qty) - held, Decimal(0))
    return left if p.qty > 0 else -left


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
        "qty_available": num(_qty_available(sim, p)),
        "avg_entry_price": num(p.avg_entry_price.quantize(Decimal("0.0001"))),
        "side": "long" if p.qty > 0 else "short",
        "market_value": num(value.quantize(CENT)),
        "cost_basis": num(cost.quantize(CENT)),
        "unrealized_pl": num(pl.quantize(CENT)),
        "unrealized_plpc": num((pl / abs(cost)).quantize(Decimal("0.0001"))) if cost else "0",
        "unrealized_intraday_pl": num(pl.quantize(CENT)),
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
        return positive(raw, name)
    except ValueError as exc:
        raise SimError(422, CODE_INVALID, str(exc)) from None


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


ACTIVITY_TYPES = (
    "FILL",
    "TRANS",
    "MISC",
    "ACATC",
    "ACATS",
    "CSD",
    "CSW",
    "DIV",
    "FEE",
    "INT",
    "JNLC",
    "JNLS",
)
MAX_ACTIVITY_PAGE = 100


async def get_activities(request: web.Request) -> web.Response:
    """Account activities: the simulator produces only FILL (others answer an empty list)."""
    sim = request.app[SIM]
    q = request.query
    kinds = request.match_info.get("activity_type") or q.get("activity_types") or "FILL"
    wanted = {k.strip().upper() for k in kinds.split(",") if k.strip()}
    unknown = sorted(wanted - set(ACTIVITY_TYPES))
    if unknown:
        raise SimError(422, CODE_INVALID, f"invalid activity type {unknown[0]}")
    try:
        page_size = min(int(q.get("page_size", str(MAX_ACTIVITY_PAGE))), MAX_ACTIVITY_PAGE)
    except ValueError:
        raise SimError(422, CODE_INVALID, "invalid page_size") from None
    after, until = _time_param(q.get("after")), _time_param(q.get("until"))
    rows = [
        f
        for f in sim.ledger.fills
        if "FILL" in wanted and (after is None or f.ts_ns > after) and (until is None or f.ts_ns < until)
    ]
    out = [f.activity(sim.ledger.account_id) for f in rows]
    if q.get("direction", "desc") == "desc":
        out.reverse()
    token = q.get("page_token")
    if token:
        ids = [a["id"] for a in out]
        if token not in ids:
            raise SimError(422, CODE_INVALID, "invalid page_token")
        out = out[ids.index(token) + 1 :]
    return web.json_response(out[:page_size])


async def get_portfolio_history(request: web.Request) -> web.Response:
    """Equity at every simulated session close since the start, and now (``timeframe`` 1D)."""
    sim = request.app[SIM]
    ledger = sim.ledger
    start, end = _time_param(request.query.get("start")), _time_param(request.query.get("end"))
    points = [*ledger.equity_history, (sim.now_ns(), ledger.equity())]
    points = [(t, e) for t, e in points if (start is None or t >= start) and (end is None or t <= end)]
    base = ledger.initial_cash
    return web.json_response(
        {
            "timestamp": [t // 1_000_000_000 for t, _ in points],
            "equity": [float(e.quantize(CENT)) for _, e in points],
            "profit_loss": [float((e - base).quantize(CENT)) for _, e in points],
            "profit_loss_pct": [float(((e - base) / base).quantize(Decimal("0.000001"))) for _, e in points],
            "base_value": float(base),
            "timeframe": request.query.get("timeframe", "1D"),
        }
    )


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


async def sim_clock(request: web.Request) -> web.Response:
    """``{"advance_s": N}`` or ``{"to": "next_open"|"next_close"}`` moves the simulated clock forward."""
    sim = request.app[SIM]
    try:
        body = json.loads(await request.text() or "{}")
        if "to" in body:
            c = clock(sim.ledger.session, sim.now_ns())
            target = {"next_open": c.next_open_ns, "next_close": c.next_close_ns}[body["to"]]
            sim.advance_clock((target - sim.now_ns()) / 1e9)
        else:
            sim.advance_clock(float(body.get("advance_s", 0)))
    except (ValueError, KeyError, TypeError):
        return web.json_response(
            {"error": 'send {"advance_s": seconds >= 0} or {"to": "next_open"|"next_close"}'}, status=400
        )
    return await get_clock(request)


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
            web.patch("/v2/orders/{order_id}", replace_order),
            web.get("/v2/account/activities", get_activities),
            web.get("/v2/account/activities/{activity_type}", get_activities),
            web.get("/v2/account/portfolio/history", get_portfolio_history),
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
            web.post("/_sim/clock", sim_clock),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
        ]
    )
