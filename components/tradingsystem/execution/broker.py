"""The broker (Alpaca trading REST, or the simulator) behind one retry policy.

alpaca-py's own transport is unsafe for orders (see docs/execution.md): it passes no timeout
to ``requests`` (a call can hang forever) and it silently retries 429/504 — including
``POST /v2/orders`` — with fixed 3 s sleeps. The client comes from the broker layer
(``tradingsystem.broker``) with the SDK's retries off and a timeout on every request, so this
policy alone decides:

* transport errors, timeouts, 5xx and 429 are retried with exponential backoff and jitter
  (429 honours ``Retry-After``); any other 4xx is final and never retried;
* after an *ambiguous* failure (timeout, connection drop, 5xx: the order may have reached
  the broker) the order is looked up by client_order_id before it is sent again, and a
  found order is adopted. A 422 duplicate client_order_id likewise means "already there":
  it is proof the broker holds the order, so it is never turned into a rejection, even when
  the lookup cannot see the order yet (``HeldByBroker``: the caller keeps looking it up).

Together with the deterministic client_order_id this makes a duplicate order impossible.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderSide, QueryOrderStatus
from alpaca.trading.enums import TimeInForce as AlpacaTIF
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest

from tradingsystem.broker import trading_client
from tradingsystem.common.config import Settings
from tradingsystem.common.metrics import BROKER_ERRORS, BROKER_LATENCY, BROKER_REQUESTS
from tradingsystem.common.wire import OrderType
from tradingsystem.execution.orders import Order
from tradingsystem.execution.ratelimit import RequestLimiter

log = logging.getLogger(__name__)

T = TypeVar("T")
BrokerOrder = dict[str, Any]  # Alpaca's order JSON (raw_data=True: no pydantic per call)


class Rejected(Exception):
    """The broker refused the request (4xx other than 429); retrying cannot help."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status} code={code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Unavailable(Exception):
    """Retries exhausted on transient failures; whether an order exists is still unknown."""


class TooOld(Exception):
    """No (further) POST: the order is past its age limit. ``may_exist``: an earlier attempt
    was ambiguous, so only a lookup can tell whether it reached the broker."""

    def __init__(self, cid: str, may_exist: bool) -> None:
        super().__init__(f"{cid}: past its age limit, not sent")
        self.may_exist = may_exist


class HeldByBroker(Exception):
    """The broker answered 422 "client_order_id must be unique": it holds this order, but a
    lookup could not return it yet. Not a rejection; the order's fills must still be taken."""


def _duplicate_cid(exc: Rejected) -> bool:
    text = exc.message.lower()
    return exc.status == 422 and "client_order_id" in text and "unique" in text


class _Transient(Exception):
    def __init__(self, label: str, ambiguous: bool, retry_after: float | None = None) -> None:
        super().__init__(label)
        self.label = label
        self.ambiguous = ambiguous  # the request may have taken effect at the broker
        self.retry_after = retry_after


def _error_body(exc: APIError) -> tuple[int | None, str]:
    try:
        body = json.loads(str(exc))
    except ValueError:
        return None, str(exc)[:200]
    if not isinstance(body, dict):
        return None, str(body)[:200]
    code = body.get("code")
    return (code if isinstance(code, int) else None), str(body.get("message", ""))


def _retry_after(exc: APIError) -> float | None:
    resp = exc.response
    value = resp.headers.get("Retry-After") if resp is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # the HTTP-date form; fall back to backoff
        return None


class Broker:
    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        bucket: RequestLimiter | None = None,
    ) -> None:
        ex = settings.execution
        self._client = trading_client(settings, ex.request_timeout_s)
        # The codes the alerts single out exist from the start, at 0: the error ratio and the
        # "Broker errors by code" panel read 0 instead of nothing before the first error.
        for code in ("429", "transport"):
            BROKER_ERRORS.labels(code)
        self._bucket = bucket or RequestLimiter(ex.rate_limit_per_min)
        self._sleep = sleep
        self._max_attempts = ex.max_attempts
        self._base = ex.backoff_base_s
        self._max = ex.backoff_max_s

    # --- one attempt ------------------------------------------------------------------
    def _call(self, endpoint: str, fn: Callable[[], T]) -> T:
        self._bucket.acquire()
        BROKER_REQUESTS.labels(endpoint).inc()
        start = time.perf_counter()
        try:
            return fn()
        except APIError as exc:
            status = exc.status_code or 0
            BROKER_ERRORS.labels(str(status)).inc()
            if status == 429:
                raise _Transient("429", ambiguous=False, retry_after=_retry_after(exc)) from None
            if status >= 500:
                raise _Transient(str(status), ambiguous=True) from None
            code, message = _error_body(exc)
            raise Rejected(status, code, message) from None
        except requests.RequestException as exc:
            BROKER_ERRORS.labels("transport").inc()
            raise _Transient(type(exc).__name__, ambiguous=True) from None
        finally:
            BROKER_LATENCY.labels(endpoint).observe(time.perf_counter() - start)

    def _backoff(self, attempt: int, exc: _Transient) -> None:
        if exc.retry_after is not None:
            delay = min(exc.retry_after, self._max)
        else:
            cap = min(self._max, self._base * 2**attempt)
            delay = cap / 2 + random.uniform(0, cap / 2)  # equal jitter: spread, but never ~0
        log.warning("broker call failed (%s), retry in %.2fs", exc.label, delay)
        self._sleep(delay)

    def _retrying(self, endpoint: str, fn: Callable[[], T]) -> T:
        """Reads are idempotent: retry every transient failure."""
        for attempt in range(self._max_attempts):
            try:
                return self._call(endpoint, fn)
            except _Transient as exc:
                if attempt + 1 == self._max_attempts:
                    raise Unavailable(f"{endpoint}: {exc.label}") from None
                self._backoff(attempt, exc)
        raise AssertionError("unreachable")

    # --- reads -------------------------------------------------------------------------
    def order_by_cid(self, cid: str) -> BrokerOrder | None:
        return self._retrying("get_order_by_cid", lambda: self._lookup(cid))

    def open_orders(self) -> list[BrokerOrder]:
        req = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)
        return self._retrying("get_orders", lambda: self._client.get_orders(req))  # type: ignore[arg-type,return-value]

    def positions(self) -> dict[str, float]:
        rows = self._retrying("get_positions", self._client.get_all_positions)
        return {p["symbol"]: float(p["qty"]) for p in rows if float(p["qty"])}  # type: ignore[index]

    # --- the order ---------------------------------------------------------------------
    def submit(
        self, order: Order, *, may_exist: bool = False, not_after_ns: int | None = None
    ) -> BrokerOrder:
        """Place ``order`` exactly once; returns the broker's order.

        Raises ``Rejected`` for a definitive refusal and ``Unavailable`` when the outcome is
        still unknown after ``max_attempts`` (the caller keeps the order pending and
        reconciles it later by client_order_id). ``may_exist``: an earlier attempt (before a
        crash) may have reached the broker, so look before sending. ``not_after_ns``: no POST
        starts after this time (retries included): ``TooOld`` instead.
        """
        request = self._request(order)
        ambiguous = may_exist
        for attempt in range(self._max_attempts):
            try:
                if ambiguous:
                    found = self._adopt_lookup(order.client_order_id)
                    if found is not None:
                        log.info("order %s found at broker after ambiguous failure", order.client_order_id)
                        return found
                if not_after_ns is not None and time.time_ns() > not_after_ns:
                    raise TooOld(order.client_order_id, ambiguous)
                return self._call("submit_order", lambda: self._post(request))
            except _Transient as exc:
                ambiguous = ambiguous or exc.ambiguous
                if attempt + 1 == self._max_attempts:
                    raise Unavailable(f"submit {order.client_order_id}: {exc.label}") from None
                self._backoff(attempt, exc)
            except Rejected as exc:
                if exc.status == 422:
                    # Maybe "client_order_id must be unique": an earlier attempt landed.
                    found = self._retrying(
                        "get_order_by_cid", lambda: self._adopt_lookup(order.client_order_id)
                    )
                    if found is not None:
                        return found
                    if _duplicate_cid(exc):
                        # The broker says it has it: keep looking it up, never "rejected".
                        raise HeldByBroker(f"{order.client_order_id}: {exc.message}") from None
                raise
        raise AssertionError("unreachable")

    def _adopt_lookup(self, cid: str) -> BrokerOrder | None:
        """Lookup whose refusal (e.g. 403) must not pass for a rejected order: it may exist."""
        try:
            return self._call("get_order_by_cid", lambda: self._lookup(cid))
        except Rejected as exc:
            raise Unavailable(f"lookup of {cid} refused: HTTP {exc.status}") from None

    def _post(self, request: MarketOrderRequest | LimitOrderRequest) -> BrokerOrder:
        return self._client.submit_order(request)  # type: ignore[return-value]  # raw_data=True: a dict

    def _lookup(self, cid: str) -> BrokerOrder | None:
        try:
            return self._client.get_order_by_client_id(cid)  # type: ignore[return-value]
        except APIError as exc:
            if exc.status_code == 404:
                return None
            raise

    @staticmethod
    def _request(order: Order) -> MarketOrderRequest | LimitOrderRequest:
        common: dict[str, Any] = {
            "symbol": order.symbol,
            "qty": order.qty,
            "side": OrderSide(order.side.value),
            "time_in_force": AlpacaTIF(order.time_in_force.value),
            "client_order_id": order.client_order_id,
        }
        if order.order_type is OrderType.LIMIT:
            return LimitOrderRequest(limit_price=order.limit_price, **common)
        return MarketOrderRequest(**common)
