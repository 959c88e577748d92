"""What every service process shares: structured logging, the HTTP endpoint
(``/metrics``, ``/healthz``, ``/readyz``, optional extra routes) and graceful shutdown."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from tradingsystem import __version__
from tradingsystem.common.metrics import BUILD_INFO, UP

# A route gets the request body (bytes, may be empty) and returns (status, json-able body).
Route = Callable[[bytes], tuple[int, Any]]
# A guard sees the Authorization header of a request to a route: None lets it through, otherwise
# (status, json-able body) is the answer (see common/control.py).
Guard = Callable[[str | None], tuple[int, Any] | None]
MAX_BODY = 64 * 1024  # control requests are a few dozen bytes


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if extra:
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", fmt: str = "json", service: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # alpaca-py and websockets are chatty at INFO and may echo request bodies at DEBUG.
    for noisy in ("websockets", "urllib3", "alpaca"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class Health:
    """Liveness/readiness flags plus the ``tradingsystem_ready`` gauge."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._ready = threading.Event()
        self.live = True
        self.detail: dict[str, Any] = {}
        UP.labels(service).set(0)
        BUILD_INFO.info({"version": __version__, "service": service})

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def set_ready(self, ready: bool, **detail: Any) -> None:
        if ready:
            self._ready.set()
        else:
            self._ready.clear()
        self.detail.update(detail)
        UP.labels(self.service).set(1 if ready else 0)


class HttpEndpoint:
    """Serves metrics and probes on one port in a daemon thread.

    With ``probes=False`` it serves only ``routes`` (the control port); a ``guard`` is asked
    before every route.
    """

    def __init__(
        self,
        host: str,
        port: int,
        health: Health,
        routes: dict[str, Route] | None = None,
        *,
        probes: bool = True,
        guard: Guard | None = None,
    ) -> None:
        table: dict[str, Route] = routes or {}
        hl = health

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                if status == 401:  # RFC 9110: say which scheme to use
                    self.send_header("WWW-Authenticate", 'Bearer realm="tradingsystem"')
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if not probes and path in ("/metrics", "/healthz", "/readyz"):
                    self._send(404, b'{"error":"not found"}')
                elif path == "/metrics":
                    self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200 if hl.live else 503, json.dumps({"live": hl.live}).encode())
                elif path == "/readyz":
                    body = json.dumps({"ready": hl.ready, **hl.detail}, default=str).encode()
                    self._send(200 if hl.ready else 503, body)
                elif path in table:
                    self._route(path, b"")
                else:
                    self._send(404, b'{"error":"not found"}')

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                if path not in table:
                    self._send(404, b'{"error":"not found"}')
                    return
                if self._refused():  # before reading the body: a stranger's bytes are not buffered
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY:
                    self._send(413, b'{"error":"body missing a valid Content-Length or over 64 KiB"}')
                    return
                self._answer(table[path](self.rfile.read(length) if length else b""))

            def _route(self, path: str, body: bytes) -> None:
                if not self._refused():
                    self._answer(table[path](body))

            def _refused(self) -> bool:
                refused = guard(self.headers.get("Authorization")) if guard is not None else None
                if refused is not None:
                    self._answer(refused)
                return refused is not None

            def _answer(self, result: tuple[int, Any]) -> None:
                status, payload = result
                self._send(status, json.dumps(payload, default=str).encode())

            def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: stay quiet
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    def start(self) -> HttpEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT set ``stop`` so loops finish their current message and exit cleanly."""

    def _handler(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


class BackgroundLoop:
    """``start()``/``stop()`` around a service's blocking ``run(stop)``, for in-process use
    (tests, benchmarks). Subclasses set ``name`` and read ``self._stop`` in their loop."""

    name = "service"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, stop: threading.Event | None = None) -> None:
        raise NotImplementedError
