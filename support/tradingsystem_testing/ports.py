"""Free loopback ports for tests and benchmarks."""

from __future__ import annotations

import socket
import threading
from collections import deque

REMEMBERED = 4096  # ports handed out recently, never handed out again while remembered
_recent: deque[int] = deque(maxlen=REMEMBERED)
_given: set[int] = set()
_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, and not one of the last
    ``REMEMBERED`` this process returned.

    The kernel's choice repeats itself often (142 repeats in 2,000 calls on the CI machine):
    two services of one pipeline then got the same port, and a probe meant for one reached
    the other (seen in CI). Someone else may still take the port before
    the caller binds it; callers that start real processes retry (``ControlPlane.start``) or
    fail loudly at bind time.
    """
    with _lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _given:
                break
        if len(_recent) == REMEMBERED:
            _given.discard(_recent[0])
        _recent.append(port)
        _given.add(port)
        return port
