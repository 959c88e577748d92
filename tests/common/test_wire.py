"""The wire schema: round trips, versioned tags, and clear rejection of bad payloads."""

import msgspec
import pytest

from tradingsystem.common import wire
from tradingsystem.common.wire import Codec, WireError


def test_every_message_round_trips_with_its_topic() -> None:
    codec = Codec()
    samples = [
        wire.Trade(symbol="AAPL", price=190.5, size=100, exch_ts=1, origin_ts=2),
        wire.Quote(symbol="AAPL", bid=190.4, bid_size=3, ask=190.6, ask_size=4, exch_ts=1),
        wire.Bar(
            symbol="MSFT", open=1, high=2, low=0.5, close=1.5, volume=10, start_ts=5, vwap=1.2, trade_count=3
        ),
        wire.Heartbeat(service="risk-manager", state="ACTIVE"),
        wire.Signal(
            symbol="AAPL",
            action=wire.Action.BUY,
            strength=0.7,
            price=190.5,
            strategy="ma",
            features={"sma_fast": 1.0},
        ),
        wire.OrderIntent(client_order_id="ts-AAPL-1", symbol="AAPL", side=wire.Side.BUY, qty=5),
        wire.Rejection(symbol="AAPL", side=wire.Side.SELL, qty=5, reason=wire.RejectReason.PRICE_BAND),
        wire.RiskStatus(state=wire.RiskState.HALTED, reason="kill switch"),
        wire.Control(action=wire.ControlAction.HALT),
        wire.ExecutionReport(
            client_order_id="ts-AAPL-1",
            symbol="AAPL",
            side=wire.Side.BUY,
            status=wire.OrderStatus.FILLED,
            qty=5,
            filled_qty=5,
            avg_fill_price=190.6,
        ),
    ]
    kinds = set()
    for msg in samples:
        decoded = codec.decode(codec.encode(msg))
        assert decoded == msg
        assert type(decoded) is type(msg)
        kinds.add(wire.topic_for(msg).split(b".")[0])
    assert len(kinds) == len(samples), "each message kind has its own topic"
    assert wire.topic_for(samples[0]) == b"trade.AAPL"
    assert wire.topic_for(samples[3]) == b"hb"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        msgspec.msgpack.encode(["trade/999", 0, 0, "AAPL", 1.0, 1.0, 1]),  # unknown version
        msgspec.msgpack.encode(["trade/1", 0, 0, "AAPL", "not-a-price", 1.0, 1]),
        msgspec.msgpack.encode({"k": "trade/1"}),
    ],
)
def test_malformed_payloads_raise_wire_error(payload: bytes) -> None:
    with pytest.raises(WireError):
        Codec().decode(payload)


def test_tag_carries_the_schema_version() -> None:
    raw = msgspec.msgpack.decode(Codec().encode(wire.Heartbeat(service="x")))
    assert raw[0] == f"hb/{wire.WIRE_VERSION}"


def test_a_message_of_the_previous_schema_version_is_refused() -> None:
    v1 = msgspec.msgpack.encode(["hb/1", 1, 0, "x", ""])  # V1 had no epoch
    with pytest.raises(WireError):
        Codec().decode(v1)
    assert wire.WIRE_VERSION is wire.WireVersion.V2
