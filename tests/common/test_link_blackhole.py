"""A publisher that vanishes without closing (a pod deleted behind a Service) is detected by
the ZMTP heartbeats and replaced by the new one within seconds, not the kernel's minutes.

The link is black-holed with iptables: DROP rules on loopback for exactly the one TCP
connection the test opened (its port pair), inserted and always deleted by the test. The old
publisher then closes (its FIN/RST dropped too) and a new one binds the same port: only a
fresh connection from the subscriber reaches it, which happens only if the subscriber notices
the dead one. Without heartbeats it never would: a SUB socket sends nothing on its own.
Needs root and ``iptables`` (as the CI runner has).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from tradingsystem.common.bus import LINK, Publisher, Subscriber
from tradingsystem.common.wire import TOPIC_HEARTBEAT, Heartbeat

DEADLINE_S = 60.0  # a bound for a broken build, far below the untuned socket's "never"


def _established_client_port(server_port: int) -> int:
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( dport = :{server_port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # columns: Recv-Q Send-Q Local:Port Peer:Port
    locals_ = [f for i, f in enumerate(out) if i % 4 == 2]
    assert len(locals_) == 1, out
    return int(locals_[0].rsplit(":", 1)[1])


def _rules(server_port: int, client_port: int) -> list[list[str]]:
    return [
        [
            "INPUT",
            "-i",
            "lo",
            "-p",
            "tcp",
            "--sport",
            str(client_port),
            "--dport",
            str(server_port),
            "-j",
            "DROP",
        ],
        [
            "INPUT",
            "-i",
            "lo",
            "-p",
            "tcp",
            "--sport",
            str(server_port),
            "--dport",
            str(client_port),
            "-j",
            "DROP",
        ],
    ]


@pytest.fixture
def blackhole() -> Iterator[list[list[str]]]:
    """Rules the test inserts; every one is deleted afterwards, whatever happens."""
    inserted: list[list[str]] = []
    yield inserted
    for rule in inserted:
        subprocess.run(["iptables", "-D", *rule], check=False)


def _bind_when_free(port: int) -> Publisher:
    """The replacement, on the same port once libzmq has released it (closing is asynchronous)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            return Publisher(f"tcp://127.0.0.1:{port}", service="new")
        except zmq.ZMQError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _first_heartbeat(sub: Subscriber, deadline: float) -> Heartbeat | None:
    while time.monotonic() < deadline:
        if sub.sock.poll(100):
            msg = sub.recv().msg
            if isinstance(msg, Heartbeat):
                return msg
    return None


def test_a_black_holed_publisher_is_detected_and_its_replacement_reached(
    blackhole: list[list[str]],
) -> None:
    old = Publisher("tcp://127.0.0.1:0", service="old")
    port = int(old.sock.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])
    sub = Subscriber(f"tcp://127.0.0.1:{port}", [TOPIC_HEARTBEAT])
    monitor = sub.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)
    new: Publisher | None = None
    try:
        deadline = time.monotonic() + DEADLINE_S
        while (hb := _first_heartbeat(sub, time.monotonic() + 0.2)) is None and time.monotonic() < deadline:
            old.heartbeat(every=0)
        assert hb is not None and hb.service == "old"
        while monitor.poll(0):
            recv_monitor_message(monitor)  # the first connect

        for rule in _rules(port, _established_client_port(port)):
            subprocess.run(["iptables", "-I", *rule], check=True)
            blackhole.append(rule)
        cut = time.monotonic()
        old.sock.setsockopt(zmq.LINGER, 0)
        old.close()  # its goodbye is dropped: to the subscriber the peer just goes silent
        new = _bind_when_free(port)

        detected = None
        while detected is None and time.monotonic() < cut + DEADLINE_S:
            if monitor.poll(100) and recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED:
                detected = time.monotonic() - cut
        assert detected is not None, "the dead link was never detected"

        recovered = None
        while recovered is None and time.monotonic() < cut + DEADLINE_S:
            new.heartbeat(every=0)
            if sub.sock.poll(100):
                rec = sub.recv()
                if isinstance(rec.msg, Heartbeat) and rec.msg.service == "new":
                    assert rec.restarted  # a new epoch: visible to the caller
                    recovered = time.monotonic() - cut
        assert recovered is not None, "the replacement publisher was never reached"
        print(
            f"\nblack-holed link: detected after {detected:.2f}s, replacement reached after "
            f"{recovered:.2f}s (documented worst case {LINK.worst_case_detection_s:.1f}s + one connect)"
        )
    finally:
        sub.sock.disable_monitor()
        monitor.close()
        sub.close()
        if new is not None:
            new.close()
        if not old.sock.closed:
            old.close()
