"""Leader election settings and the leader's own check. No I/O.

Of several operator replicas only the one holding a ``coordination.k8s.io`` Lease reconciles; the
I/O is ``lease.py``. These are controller-runtime's knobs and defaults: lease duration 15 s,
renew deadline 10 s, retry period 2 s.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass

DEFAULT_LEASE_NAME = "tradingsystem-operator"
# controller-runtime's defaults: a dead leader is replaced within about 15 s + one retry.
DEFAULT_LEASE_DURATION_S = 15
DEFAULT_RENEW_DEADLINE_S = 10
DEFAULT_RETRY_PERIOD_S = 2
# The library's margin: the renew deadline must leave room for more than one retry.
_JITTER = 1.2
EXIT_LEASE_LOST = 1


def default_identity() -> str:
    """``<hostname>_<random>`` like client-go: the pod name, unique across restarts of one pod."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class ElectionSettings:
    """Where the Lease is and how fast it moves. Durations are whole seconds: the Lease stores
    ``leaseDurationSeconds`` as an integer."""

    namespace: str
    name: str = DEFAULT_LEASE_NAME
    identity: str = ""
    lease_duration: int = DEFAULT_LEASE_DURATION_S
    renew_deadline: int = DEFAULT_RENEW_DEADLINE_S
    retry_period: int = DEFAULT_RETRY_PERIOD_S

    def problems(self) -> list[str]:
        """What is wrong, each message naming the command-line flag. No I/O."""
        found: list[str] = []
        if not self.namespace:
            found.append("--leader-election-namespace is required (or set POD_NAMESPACE)")
        if not self.name:
            found.append("--leader-election-id must not be empty")
        if self.retry_period < 1:
            found.append(f"--retry-period must be at least 1 second, got {self.retry_period}")
        if self.renew_deadline <= _JITTER * self.retry_period:
            found.append(
                f"--renew-deadline ({self.renew_deadline}) must exceed 1.2 x --retry-period "
                f"({self.retry_period})"
            )
        if self.lease_duration <= self.renew_deadline:
            found.append(
                f"--lease-duration ({self.lease_duration}) must exceed --renew-deadline "
                f"({self.renew_deadline})"
            )
        return found


def holds_lease(
    holder: str | None, identity: str, renewed_ms: int, now_ms: int, renew_deadline_s: int
) -> bool:
    """Whether a leader may go on acting: the Lease names it and it renewed it within the renew
    deadline. Past that deadline a standby may take the Lease soon (at lease duration). No I/O."""
    return holder == identity and now_ms - renewed_ms < renew_deadline_s * 1000
