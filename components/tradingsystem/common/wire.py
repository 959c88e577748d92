"""The one wire schema shared by every service.

Every message travels as a ZeroMQ multipart ``[topic, payload]``:

* ``topic`` is ASCII ``<kind>.<SYMBOL>`` (or ``<kind>`` for symbol-less messages) so that
  subscribers filter by prefix inside libzmq, never in Python;
* ``payload`` is msgpack of a tagged, array-like msgspec struct. The tag carries the schema
  version (``"trade/1"``), so a decoder rejects messages of an unknown kind or version
  instead of mis-reading them.

Every struct starts with ``seq`` (per-publisher, per-topic sequence number, so a subscriber
detects gaps under any prefix filter) and ``ts``
(publish time, ns since the epoch, for hop latency). Messages on the trading path also
carry ``origin_ts``: the receive time of the tick that caused them, for tick->order latency.

msgspec over msgpack was chosen by measurement (``bench/wire_codec.py``): it encodes and
decodes a trade in well under a microsecond, with validation, where pydantic costs ~4 us.
"""

from __future__ import annotations

import enum
import time
from typing import Final

import msgspec

WIRE_VERSION: Final = 1


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class Action(enum.StrEnum):
    """What a strategy wants for a symbol."""

    BUY = "buy"
    SELL = "sell"
    FLAT = "flat"  # close any position


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(enum.StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class RiskState(enum.StrEnum):
    ACTIVE = "ACTIVE"  # all orders allowed within limits
    REDUCING = "REDUCING"  # only orders that reduce exposure
    HALTED = "HALTED"  # nothing goes out


class RejectReason(enum.StrEnum):
    HALTED = "halted"
    REDUCING_ONLY = "reducing_only"
    MAX_ORDER_QTY = "max_order_qty"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    MAX_POSITION = "max_position"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    MAX_OPEN_POSITIONS = "max_open_positions"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    ORDER_RATE = "order_rate"
    PRICE_BAND = "price_band"
    NO_QUOTE = "no_quote"
    ZERO_QTY = "zero_qty"
    UNKNOWN_SYMBOL = "unknown_symbol"  # not in the configured symbols
    DUPLICATE = "duplicate"  # the same signal seen twice (same client_order_id)
    BAD_SIGNAL = "bad_signal"  # a negative timestamp or sequence number: no real signal has one


class OrderStatus(enum.StrEnum):
    """Local order state machine (see ``execution.orders``)."""

    PENDING_SUBMIT = "pending_submit"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ControlAction(enum.StrEnum):
    HALT = "halt"
    REDUCE = "reduce"
    RESUME = "resume"


class Msg(msgspec.Struct, array_like=True, tag_field="k", kw_only=True):
    # Set by the Publisher at send time; mutable so publishing does not copy the struct.
    seq: int = 0
    ts: int = 0


class Trade(Msg, tag="trade/1"):
    symbol: str
    price: float
    size: float
    exch_ts: int  # exchange timestamp, ns
    origin_ts: int = 0  # receive time at market-data, ns


class Quote(Msg, tag="quote/1"):
    symbol: str
    bid: float
    bid_size: float
    ask: float
    ask_size: float
    exch_ts: int
    origin_ts: int = 0


class Bar(Msg, tag="bar/1"):
    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    start_ts: int  # bar open time, ns
    vwap: float | None = None
    trade_count: int | None = None
    origin_ts: int = 0


class Heartbeat(Msg, tag="hb/1"):
    service: str
    state: str = ""


class Signal(Msg, tag="signal/1"):
    symbol: str
    action: Action
    strength: float  # in [0, 1]
    price: float  # reference price the strategy saw
    strategy: str
    features: dict[str, float] = {}
    origin_ts: int = 0


class OrderIntent(Msg, tag="order/1"):
    """An order approved by the risk manager, ready for execution."""

    client_order_id: str
    symbol: str
    side: Side
    qty: float
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: float | None = None
    ref_price: float = 0.0
    reducing: bool = False
    origin_ts: int = 0


class Rejection(Msg, tag="reject/1"):
    symbol: str
    side: Side
    qty: float
    reason: RejectReason
    detail: str = ""
    origin_ts: int = 0


class RiskStatus(Msg, tag="risk/1"):
    state: RiskState
    reason: str = ""


class Control(Msg, tag="control/1"):
    action: ControlAction
    reason: str = ""


class ExecutionReport(Msg, tag="exec/1"):
    """Order state change reported by the execution engine; fills carry last_fill_*."""

    client_order_id: str
    symbol: str
    side: Side
    status: OrderStatus
    qty: float
    filled_qty: float = 0.0
    avg_fill_price: float | None = None
    last_fill_qty: float = 0.0
    last_fill_price: float | None = None
    broker_order_id: str | None = None
    reason: str = ""
    origin_ts: int = 0


AnyMsg = (
    Trade
    | Quote
    | Bar
    | Heartbeat
    | Signal
    | OrderIntent
    | Rejection
    | RiskStatus
    | Control
    | ExecutionReport
)

# Topic kinds (first dotted part of the topic frame).
TOPIC_TRADE: Final = b"trade"
TOPIC_QUOTE: Final = b"quote"
TOPIC_BAR: Final = b"bar"
TOPIC_HEARTBEAT: Final = b"hb"
TOPIC_SIGNAL: Final = b"signal"
TOPIC_ORDER: Final = b"order"
TOPIC_REJECT: Final = b"reject"
TOPIC_RISK: Final = b"risk"
TOPIC_CONTROL: Final = b"control"
TOPIC_EXEC: Final = b"exec"

_KIND: dict[type[Msg], bytes] = {
    Trade: TOPIC_TRADE,
    Quote: TOPIC_QUOTE,
    Bar: TOPIC_BAR,
    Heartbeat: TOPIC_HEARTBEAT,
    Signal: TOPIC_SIGNAL,
    OrderIntent: TOPIC_ORDER,
    Rejection: TOPIC_REJECT,
    RiskStatus: TOPIC_RISK,
    Control: TOPIC_CONTROL,
    ExecutionReport: TOPIC_EXEC,
}


def topic_for(msg: Msg) -> bytes:
    """``kind.SYMBOL`` for messages about a symbol, ``kind`` otherwise."""
    kind = _KIND[type(msg)]
    symbol = getattr(msg, "symbol", None)
    return kind + b"." + symbol.encode() if symbol else kind


class WireError(ValueError):
    """A payload that is not a valid message of this schema version."""


class Codec:
    """Reusable encoder/decoder pair (msgspec objects are not free to build per message)."""

    __slots__ = ("_dec", "_enc")

    def __init__(self) -> None:
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(AnyMsg)

    def encode(self, msg: Msg) -> bytes:
        return self._enc.encode(msg)

    def decode(self, payload: bytes) -> AnyMsg:
        try:
            return self._dec.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise WireError(str(exc)) from exc


def now_ns() -> int:
    return time.time_ns()
