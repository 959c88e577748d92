"""ZeroMQ PUB/SUB with sequence numbers, gap detection, heartbeats and optional CurveZMQ.

Sockets are plain (blocking) pyzmq sockets: ``zmq.asyncio`` roughly doubles the round trip
on a small machine, and the per-message path must stay lean. A socket belongs to the thread
that created it; each service runs its message loop in one thread.
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
    """Binds a PUB socket; stamps ``seq`` (per topic) and ``ts`` on every message it sends."""

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

    def publish(self, msg: Msg, topic: bytes | None = None) -> bytes:
        topic = topic or topic_for(msg)
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        msg.seq = seq
        msg.ts = time.time_ns()
        self.sock.send_multipart((topic, self._codec.encode(msg)), copy=False)
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


class Subscriber:
    """Connects a SUB socket to one publisher; decodes and detects sequence gaps per topic.

    ``recv`` raises ``WireError`` for a malformed payload (counted by the caller); the
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

    def recv(self, flags: int = 0) -> Received:
        topic, payload = self.sock.recv_multipart(flags, copy=True)
        msg = self._codec.decode(payload)
        last = self._seq.get(topic)
        gap = msg.seq - last - 1 if last is not None and msg.seq > last + 1 else 0
        self._seq[topic] = msg.seq
        return Received(topic, msg, gap)

    def close(self) -> None:
        self.sock.close()


__all__ = ["CurveKeys", "Publisher", "Received", "Subscriber", "WireError", "gen_curve_keypair", "load_curve"]
