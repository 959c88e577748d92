"""Per-message cost of candidate wire encodings for a trade (encode + decode), in microseconds.

This is the measurement behind the choice of msgspec structs over msgpack in
``tradingsystem.common.wire``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import msgpack
import msgspec
import orjson
from pydantic import BaseModel

from bench.table import render
from tradingsystem.common.wire import Codec, Trade


class PydTrade(BaseModel):
    symbol: str
    price: float
    size: float
    exch_ts: int
    origin_ts: int
    seq: int
    ts: int


def _time(fn: Callable[[], object], n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main(quick: bool = False) -> None:
    n = 20_000 if quick else 200_000
    d = {
        "symbol": "AAPL",
        "price": 190.53,
        "size": 100.0,
        "exch_ts": 1_700_000_000_123_456_789,
        "origin_ts": 1_700_000_000_223_456_789,
        "seq": 123456,
        "ts": 1_700_000_000_323_456_789,
    }
    codec = Codec()
    trade = Trade(**d)
    pyd = PydTrade(**d)
    dec_json = msgspec.json.Decoder(Trade)
    enc_json = msgspec.json.Encoder()
    cases: list[tuple[str, Callable[[], bytes], Callable[[bytes], object]]] = [
        ("msgspec msgpack struct (chosen)", lambda: codec.encode(trade), codec.decode),
        ("msgspec json struct", lambda: enc_json.encode(trade), dec_json.decode),
        ("msgpack dict", lambda: msgpack.packb(d), msgpack.unpackb),
        ("orjson dict", lambda: orjson.dumps(d), orjson.loads),
        ("stdlib json dict", lambda: json.dumps(d).encode(), json.loads),
        ("pydantic json model", pyd.model_dump_json, PydTrade.model_validate_json),
    ]
    rows = []
    for name, enc, dec in cases:
        payload = enc()
        e = _time(enc, n)
        dd = _time(lambda p=payload, dec=dec: dec(p), n)
        rows.append(
            (name, len(payload), e, dd, e + dd, "yes" if "struct" in name or "pydantic" in name else "no")
        )
    print(
        render(
            ("codec", "bytes", "encode us", "decode us", "total us", "validates"),
            rows,
            f"trade message, {n:,} iterations",
        )
    )


if __name__ == "__main__":
    main()
