"""ZeroMQ PUB/SUB with sequence numbers, publisher epochs, gap detection, heartbeats and
optional CurveZMQ.

Sockets are plain (blocking) pyzmq sockets: ``zmq.asyncio`` roughly doubles the round trip
on a small machine, and the per-message path must stay lean. A socket belongs to the thread
that created it; each service runs its message loop in one thread. (One exception: the
execution-engine shares its PUB socket between two threads under a lock, which libzmq
allows as a full memory barrier; see ``execution/service.py``.)

Every socket gets the same link tuning (``LINK``, applied in ``_tune``) so that a peer that
vanishes without closing (a pod deleted behind a Service, a black-holed route) is detected
and replaced within seconds rather than after the kernel's ~127 s of SYN retries:

* ZMTP heartbeats: a PING every ``heartbeat_ivl_ms``; no traffic for ``heartbeat_timeout_ms``
  closes the connection; ``heartbeat_ttl_ms`` tells the peer to do the same;
* ``connect_timeout_ms`` bounds a connect whose SYN goes nowhere (ZeroMQ makes no new attempt
  while one is pending), and ``reconnect_ivl_ms``..``reconnect_ivl_max_ms`` paces retries; each
  retry resolves the endpoint's host name again, so a Service name reaches the new pod;
* TCP keepalive as a second line under the heartbeats.

Worst case from the last byte of a dead peer to a new connection attempt: heartbeat timeout
(3 s) + reconnect interval (<= 1 s) = 4 s; each attempt into a black hole costs at most the
connect timeout (2 s) before the next one. See docs/architecture.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from tradingsystem.common.wire import Codec, Heartbeat, Msg, WireError, topic_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurveKeys:
    """CurveZMQ material, Z85-encoded (40 chars each).

    A publisher (server) needs its secret+public key and, to authenticate peers, the
    public keys of allowed subscribers. A subscriber (client) needs its own pair and the
    server's public key. Keys come from files or env vars; they are never logged.
    """

    public: bytes
    secret: bytes
    server_public: bytes | None = None
    allowed_clients: tuple[bytes, ...] = ()

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"CurveKeys(public={self.public[:8].decode()}..., secret=***)"


@dataclass(frozen=True)
class LinkTuning:
    """Dead-peer detection and reconnect pacing, the same for every socket (see module doc)."""

    heartbeat_ivl_ms: int = 1000
    heartbeat_timeout_ms: int = 3000
    heartbeat_ttl_ms: int = 3000
    connect_timeout_ms: int = 2000
    reconnect_ivl_ms: int = 200
    reconnect_ivl_max_ms: int = 1000
    tcp_keepalive_idle_s: int = 5
    tcp_keepalive_intvl_s: int = 1
    tcp_keepalive_cnt: int = 3

    @property
    def worst_case_detection_s(self) -> float:
        """From a peer going silent to the first reconnect attempt."""
        return (self.heartbeat_timeout_ms + self.reconnect_ivl_max_ms) / 1000


LINK = LinkTuning()


def _tune(sock: zmq.Socket[bytes], link: LinkTuning = LINK) -> None:
    sock.setsockopt(zmq.HEARTBEAT_IVL, link.heartbeat_ivl_ms)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, link.heartbeat_timeout_ms)
    sock.setsockopt(zmq.HEARTBEAT_TTL, link.heartbeat_ttl_ms)
    sock.setsockopt(zmq.CONNECT_TIMEOUT, link.connect_timeout_ms)
    sock.setsockopt(zmq.RECONNECT_IVL, link.reconnect_ivl_ms)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, link.reconnect_ivl_max_ms)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, link.tcp_keepalive_idle_s)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, link.tcp_keepalive_intvl_s)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, link.tcp_keepalive_cnt)


_SNDMORE = int(zmq.SNDMORE)  # a plain int: combining zmq's Flag enums costs per message


def new_epoch() -> int:
    """A publisher instance id: the start time in ns, so a restarted process always differs."""
    return time.time_ns()


_authenticators: dict[int, ThreadAuthenticator] = {}


def _context() -> zmq.Context:
    return zmq.Context.instance()


def _enable_auth(ctx: zmq.Context, keys: CurveKeys) -> None:
    """Start one ZAP authenticator per context: without it any holder of the server key connects."""
    if id(ctx) in _authenticators:
        return
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_AllowList(keys.allowed_clients))
    _authenticators[id(ctx)] = auth


class _AllowList:
    """ZAP credentials provider: pyzmq hands the client key over Z85-encoded."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self._keys = {k if len(k) == 40 else zmq.utils.z85.encode(k) for k in keys}

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self._keys


def gen_curve_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``name.key`` (public) and ``name.key_secret`` (both) in ZMQ's cert format."""
    directory.mkdir(parents=True, exist_ok=True)
    pub, sec = zmq.auth.create_certificates(str(directory), name)
    os.chmod(sec, 0o600)
    return Path(pub), Path(sec)


def load_curve(keys_dir: Path | None, service: str, server: str | None = None) -> CurveKeys:
    """Curve keys of ``service`` from a directory written by ``tradingsystem keys``.

    As a publisher it accepts every client whose public key (``*.key``) is in the directory;
    as a subscriber of ``server`` it pins that server's public key.
    """
    if keys_dir is None:
        raise ValueError("bus.curve.enabled needs bus.curve.keys_dir")
    secret_file = keys_dir / f"{service}.key_secret"
    if not secret_file.is_file():
        raise ValueError(f"bus.curve.keys_dir: no key pair for {service!r} ({secret_file.name} missing)")
    public, secret = zmq.auth.load_certificate(str(secret_file))
    assert secret is not None
    allowed = tuple(zmq.auth.load_certificate(str(p))[0] for p in sorted(keys_dir.glob("*.key")))
    server_public = zmq.auth.load_certificate(str(keys_dir / f"{server}.key"))[0] if server else None
    return CurveKeys(public=public, secret=secret, server_public=server_public, allowed_clients=allowed)


class Publisher:
    """Binds a PUB socket; stamps ``seq`` (per topic), ``epoch`` and ``ts`` on every message."""

    def __init__(
        self,
        endpoint: str,
        *,
        service: str,
        curve: CurveKeys | None = None,
        sndhwm: int = 100_000,
        ctx: zmq.Context | None = None,
    ) -> None:
        self.ctx = ctx or _context()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, sndhwm)
        self.sock.setsockopt(zmq.LINGER, 1000)
        _tune(self.sock)
        if curve is not None:
            if curve.allowed_clients:
                _enable_auth(self.ctx, curve)
            self.sock.curve_secretkey = curve.secret
            self.sock.curve_publickey = curve.public
            self.sock.curve_server = True
        self.sock.bind(endpoint)
        self.endpoint = endpoint
        self.service = service
        self._codec = Codec()
        self._seq: dict[bytes, int] = {}
        self._last_hb = 0.0
        self.epoch = new_epoch()

    def publish(self, msg: Msg, topic: bytes | None = None) -> bytes:
        topic = topic or topic_for(msg)
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        msg.seq = seq
        msg.epoch = self.epoch
        msg.ts = time.time_ns()
        # Two sends, not send_multipart: the same atomic multipart message without its
        # per-call overhead; small frames are cheaper copied than wrapped (copy=False).
        self.sock.send(topic, _SNDMORE)
        self.sock.send(self._codec.encode(msg))
        return topic

    def heartbeat(self, state: str = "", every: float = 1.0) -> None:
        """Send a heartbeat if ``every`` seconds passed since the last one."""
        now = time.monotonic()
        if now - self._last_hb >= every:
            self._last_hb = now
            self.publish(Heartbeat(service=self.service, state=state))

    def close(self) -> None:
        self.sock.close()


@dataclass(slots=True)
class Received:
    topic: bytes
    msg: Msg
    gap: int  # messages missed on this topic just before this one (0 = none)
    restarted: bool = False  # first message of a new publisher epoch (not the very first seen)


class Subscriber:
    """Connects a SUB socket to one publisher; decodes and detects sequence gaps per topic.

    A message under a new ``epoch`` (the publisher restarted, or another pod answers behind
    the same Service name) resets the per-topic sequences and is flagged ``restarted``: the
    caller decides what a restart means (the risk manager resyncs). ``recv`` raises ``WireError`` for a malformed payload (counted by the caller); the
    sequence state is untouched so a bad message cannot hide a gap.
    """

    def __init__(
        self,
        endpoint: str,
        prefixes: Iterable[bytes] = (b"",),
        *,
        curve: CurveKeys | None = None,
        rcvhwm: int = 100_000,
        ctx: zmq.Context | None = None,
    ) -> None:
        self.ctx = ctx or _context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        _tune(self.sock)
        if curve is not None:
            if curve.server_public is None:
                raise ValueError("CurveZMQ subscriber needs the publisher's public key")
            self.sock.curve_secretkey = curve.secret
            self.sock.curve_publickey = curve.public
            self.sock.curve_serverkey = curve.server_public
        for p in prefixes:
            self.sock.setsockopt(zmq.SUBSCRIBE, p)
        self.sock.connect(endpoint)
        self.endpoint = endpoint
        self._codec = Codec()
        self._seq: dict[bytes, int] = {}
        self.epoch: int | None = None  # of the publisher last heard

    def recv(self, flags: int = 0) -> Received:
        # Two recvs, not recv_multipart (~2 us less per message: no RCVMORE option call per
        # frame, no list). A message arrives whole, so the payload is there once the topic
        # is; a topic frame with nothing after it (not one of our publishers) is refused
        # without consuming the next message's topic as its payload.
        head = self.sock.recv(flags, copy=False)
        if not head.more:
            raise WireError("a single-frame message (no payload after the topic)")
        topic = head.bytes
        msg = self._codec.decode(self.sock.recv())
        restarted = False
        if msg.epoch != self.epoch:
            restarted = self.epoch is not None
            self.epoch = msg.epoch
            self._seq.clear()
        last = self._seq.get(topic)
        gap = msg.seq - last - 1 if last is not None and msg.seq > last + 1 else 0
        self._seq[topic] = msg.seq
        return Received(topic, msg, gap, restarted)

    def close(self) -> None:
        self.sock.close()


__all__ = [
    "LINK",
    "CurveKeys",
    "LinkTuning",
    "Publisher",
    "Received",
    "Subscriber",
    "WireError",
    "gen_curve_keypair",
    "load_curve",
    "new_epoch",
]
