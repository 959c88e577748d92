"""The operator's hand on a running risk-manager: ``POST /control`` on its control port with the
bearer token from the Secret the operator owns, and the generation of that token and of the
CurveZMQ key pairs.

``halt`` is the fast path of ``spec.halted``: it puts the running risk-manager in HALT in one
HTTP round trip; the durable path (env ``TS_RISK__HALTED``, execution-engine at 0) follows in
the same pass. It is a plain function of (url, token) so that a harness can time it against a
real risk-manager, on loopback or in a cluster.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import zmq
from pydantic import SecretStr

from tradingsystem.common.control import ControlClient, new_token
from tradingsystem.common.services import PIPELINE, RISK_MANAGER
from tradingsystem.common.wire import ControlAction
from tradingsystem_operator.render import CONTROL_TOKEN_KEY, Owner, control_secret, curve_secret

HALT_TIMEOUT_S = 1.0  # the promise is "HALT within 1 s": a slower answer is no better than none


@dataclass(frozen=True)
class ControlResult:
    """What the risk-manager answered: HTTP status (0 = unreachable), its state, and how long
    the call took, for the kind-cluster measurement."""

    status: int
    state: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == 200


def control_url(host: str, port: int | None = None) -> str:
    """The control port's base URL at ``host``; ``port`` defaults to the catalogue's."""
    return f"http://{host}:{RISK_MANAGER.control_port if port is None else port}"


async def halt(url: str, token: SecretStr, reason: str, timeout: float = HALT_TIMEOUT_S) -> ControlResult:
    """Tell the risk-manager at ``url`` to HALT; never raises for an unreachable one."""
    client = ControlClient(url, token, timeout=timeout)
    started = time.monotonic()
    # The configuration's halt, not a control one: spec.halted: false must lift it after the
    # rolled pod restores its stored state (a control halt is stored and outlives restarts).
    status, body = await asyncio.to_thread(client.control, ControlAction.CONFIG_HALT.value, reason)
    state = body.get("state") if isinstance(body, dict) else None
    return ControlResult(status, state, time.monotonic() - started)


def token_from_data(data: Mapping[str, str]) -> SecretStr:
    """The token in a Secret's ``data`` (base64, as the API server returns it)."""
    return SecretStr(base64.b64decode(data[CONTROL_TOKEN_KEY]).decode().strip())


def new_control_secret(owner: Owner, rotation: str) -> dict[str, Any]:
    return control_secret(owner, new_token().get_secret_value(), rotation)


def new_curve_secret(owner: Owner, rotation: str, services: Iterable[str] | None = None) -> dict[str, Any]:
    """Fresh key pairs (``zmq.curve_keypair``) for every pipeline service."""
    names = list(services) if services is not None else [s.name for s in PIPELINE]
    return curve_secret(owner, {name: zmq.curve_keypair() for name in names}, rotation)
