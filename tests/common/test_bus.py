"""Publisher/Subscriber over real TCP on loopback: sequence numbers, gaps, CurveZMQ."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from tradingsystem.common import wire
from tradingsystem.common.bus import CurveKeys, Publisher, Subscriber, WireError, gen_curve_keypair
from tradingsystem_testing import eventually, free_port


def _connected(pub: Publisher, sub: Subscriber) -> None:
    """PUB/SUB drops messages until the subscription propagates: probe with heartbeats."""
    eventually(
        lambda: sub.sock.poll(50),
        "the subscriber to connect",
        every=0,
        tick=lambda: pub.publish(wire.Heartbeat(service="probe")),
    )
    while sub.sock.poll(0):
        sub.recv()


def test_sequence_numbers_are_per_topic_and_gaps_are_detected() -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(ep, service="test")
    sub = Subscriber(ep, [b"trade.", b"hb"])
    try:
        _connected(pub, sub)
        for i in range(5):
            pub.publish(wire.Trade(symbol="AAPL", price=100 + i, size=1, exch_ts=i))
            pub.publish(wire.Trade(symbol="MSFT", price=200 + i, size=1, exch_ts=i))
        got = [sub.recv() for _ in range(10)]
        aapl = [r.msg.seq for r in got if r.topic == b"trade.AAPL"]
        msft = [r.msg.seq for r in got if r.topic == b"trade.MSFT"]
        assert aapl == [1, 2, 3, 4, 5] and msft == [1, 2, 3, 4, 5]
        assert all(r.gap == 0 for r in got)
        assert all(r.msg.ts > 0 for r in got)

        # Simulate loss: bump the publisher's counter as if two messages never arrived.
        pub._seq[b"trade.AAPL"] += 2
        pub.publish(wire.Trade(symbol="AAPL", price=1, size=1, exch_ts=9))
        r = sub.recv()
        assert (r.msg.seq, r.gap) == (8, 2)
    finally:
        pub.close()
        sub.close()


def test_prefix_filtering_happens_in_zmq() -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(ep, service="test")
    sub = Subscriber(ep, [b"quote.MSFT", b"hb"])
    try:
        _connected(pub, sub)
        pub.publish(wire.Trade(symbol="MSFT", price=1, size=1, exch_ts=1))
        pub.publish(wire.Quote(symbol="AAPL", bid=1, bid_size=1, ask=2, ask_size=1, exch_ts=1))
        pub.publish(wire.Quote(symbol="MSFT", bid=1, bid_size=1, ask=2, ask_size=1, exch_ts=1))
        r = sub.recv()
        assert r.topic == b"quote.MSFT"
        assert not sub.sock.poll(100)
    finally:
        pub.close()
        sub.close()


def _keys(directory: Path, name: str) -> tuple[bytes, bytes]:
    _, sec = gen_curve_keypair(directory, name)
    return zmq.auth.load_certificate(str(sec))  # (public, secret)


def test_curve_encrypts_and_authenticates_peers(tmp_path: Path) -> None:
    ctx = zmq.Context()  # own context: the ZAP authenticator is per context
    srv_pub, srv_sec = _keys(tmp_path, "server")
    cli_pub, cli_sec = _keys(tmp_path, "client")
    rogue_pub, rogue_sec = _keys(tmp_path, "rogue")
    ep = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(
        ep, service="t", ctx=ctx, curve=CurveKeys(public=srv_pub, secret=srv_sec, allowed_clients=(cli_pub,))
    )
    good = Subscriber(
        ep, [b""], ctx=ctx, curve=CurveKeys(public=cli_pub, secret=cli_sec, server_public=srv_pub)
    )
    rogue = Subscriber(
        ep, [b""], ctx=ctx, curve=CurveKeys(public=rogue_pub, secret=rogue_sec, server_public=srv_pub)
    )
    plain = Subscriber(ep, [b""], ctx=ctx)
    try:
        _connected(pub, good)
        pub.publish(wire.Trade(symbol="AAPL", price=1, size=1, exch_ts=1))
        assert good.recv().topic == b"trade.AAPL"
        assert not rogue.sock.poll(300), "an unknown client key must be refused"
        assert not plain.sock.poll(10), "a client without CURVE must get nothing"
        assert "secret" not in repr(pub) and srv_sec.decode() not in repr(
            CurveKeys(public=srv_pub, secret=srv_sec)
        )
    finally:
        for s in (pub, good, rogue, plain):
            s.close()
        ctx.destroy(linger=0)


def test_curve_subscriber_without_server_key_fails_clearly() -> None:
    with pytest.raises(ValueError, match="public key"):
        Subscriber("tcp://127.0.0.1:1", curve=CurveKeys(public=b"x" * 40, secret=b"y" * 40))


def test_keys_written_by_the_cli_are_loadable_per_service(tmp_path: Path) -> None:
    from tradingsystem.cli import main
    from tradingsystem.common.bus import load_curve

    assert main(["keys", str(tmp_path)]) == 0
    keys = load_curve(tmp_path, "risk-manager", server="signal-bridge")
    assert keys.server_public == zmq.auth.load_certificate(str(tmp_path / "signal-bridge.key"))[0]
    assert keys.public in keys.allowed_clients
    with pytest.raises(ValueError, match="no key pair for 'nope'"):
        load_curve(tmp_path, "nope")


def test_a_restarted_publisher_is_flagged_by_its_new_epoch_not_mistaken_for_no_gap() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    first = Publisher(endpoint, service="x")
    sub = Subscriber(endpoint, [b"trade", b"hb"])
    try:
        _connected(first, sub)
        for _ in range(5):
            first.publish(wire.Trade(symbol="AAPL", price=1.0, size=1.0, exch_ts=0))
        got = [sub.recv() for _ in range(5)]
        assert not any(r.restarted for r in got) and got[-1].msg.seq == 5
        first.close()
        time.sleep(0.2)  # let libzmq release the port
        second = Publisher(endpoint, service="x")
        try:
            flagged: list[bool] = []
            deadline = time.monotonic() + 5
            while not flagged and time.monotonic() < deadline:
                second.publish(wire.Heartbeat(service="x"))
                if sub.sock.poll(50):
                    flagged.append(sub.recv().restarted)
            assert flagged == [True]  # the first message of the new epoch says so
            while sub.sock.poll(50):
                sub.recv()
            second.publish(wire.Trade(symbol="AAPL", price=1.0, size=1.0, exch_ts=0))
            rec = sub.recv()
            assert (rec.msg.seq, rec.gap, rec.msg.epoch) == (1, 0, second.epoch)
            assert second.epoch != first.epoch and sub.epoch == second.epoch
        finally:
            second.close()
    finally:
        sub.close()


def test_a_single_frame_message_is_refused_without_swallowing_the_next_one() -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(ep, service="test")
    sub = Subscriber(ep, [b"trade."])
    try:
        eventually(
            lambda: sub.sock.poll(50),
            "the subscriber to connect",
            every=0,
            tick=lambda: pub.publish(wire.Trade(symbol="PROBE", price=1, size=1, exch_ts=0)),
        )
        while sub.sock.poll(0):
            sub.recv()
        pub.sock.send(b"trade.AAPL")  # a topic with no payload frame: not one of our publishers
        pub.publish(wire.Trade(symbol="AAPL", price=101, size=1, exch_ts=1))
        with pytest.raises(WireError, match="single-frame"):
            sub.recv()
        r = sub.recv()
        assert (r.topic, r.msg.price) == (b"trade.AAPL", 101)
    finally:
        pub.close()
        sub.close()
