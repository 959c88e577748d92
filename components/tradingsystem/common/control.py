"""Authenticated control of the risk-manager: the bearer token, its constant-time check, and the
client that the supervisor and the operator use.

``POST /control`` and ``GET /state`` are served on a port of their own (``risk.control_port``),
apart from the read-only ``/metrics``, ``/healthz`` and ``/readyz``, and only to a request that
carries ``Authorization: Bearer <token>``. The token is a ``SecretStr`` from the moment it is
read: it appears in no log line, metric, exception or repr. A refused request is answered
401 (no or malformed credentials) or 403 (wrong token) and counted by reason in
``tradingsystem_control_refused_total``.
"""

from __future__ import annotations

import enum
import hmac
import json
import os
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tradingsystem.common.config import ConfigError, RiskSettings
from tradingsystem.common.metrics import CONTROL_REFUSED
from tradingsystem.common.runtime import Guard

TOKEN_BYTES = 32  # 256 bits of randomness, url-safe base64 (43 characters)
TOKEN_FILE_FIELD = "risk.control_token_file"


class Refusal(enum.StrEnum):
    """Why a control request was refused; the ``reason`` label of the metric."""

    MISSING = "missing"  # no Authorization header
    MALFORMED = "malformed"  # not "Bearer <token>"
    WRONG_TOKEN = "wrong_token"


# 401 asks for credentials; 403 says the ones given are not good enough.
REFUSAL_STATUS: dict[Refusal, int] = {Refusal.MISSING: 401, Refusal.MALFORMED: 401, Refusal.WRONG_TOKEN: 403}


def check_bearer(expected: SecretStr, header: str | None) -> Refusal | None:
    """Judge an ``Authorization`` header against the token; None means accepted. No I/O.

    The comparison is ``hmac.compare_digest``: its time does not depend on where a guess first
    differs, so the token cannot be found one character at a time.
    """
    if not header:
        return Refusal.MISSING
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return Refusal.MALFORMED
    if not hmac.compare_digest(value.encode(), expected.get_secret_value().encode()):
        return Refusal.WRONG_TOKEN
    return None


def bearer_guard(token: SecretStr) -> Guard:
    """The HTTP guard of the control port: refuse, count by reason, never echo the token."""
    for reason in Refusal:  # export zeros, so a rate alert has a series before the first refusal
        CONTROL_REFUSED.labels(reason.value)

    def guard(header: str | None) -> tuple[int, Any] | None:
        refusal = check_bearer(token, header)
        if refusal is None:
            return None
        CONTROL_REFUSED.labels(refusal.value).inc()
        return REFUSAL_STATUS[refusal], {"error": f"{refusal.value}: send 'Authorization: Bearer <token>'"}

    return guard


def new_token() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(TOKEN_BYTES))


def read_token(path: Path, field: str = TOKEN_FILE_FIELD) -> SecretStr:
    """The token in ``path`` (surrounding whitespace ignored); ConfigError naming ``field``."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{field}: {path} is empty; write a token into it or remove the setting")
    return SecretStr(text)


def write_token(path: Path, token: SecretStr | None = None) -> SecretStr:
    """``token`` (default: a fresh one) in ``path``, readable and writable by its owner only (0600)."""
    token = token or new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask and ignored for an existing file
    with os.fdopen(fd, "w") as f:
        f.write(token.get_secret_value() + "\n")
    return token


def token_from_settings(rs: RiskSettings) -> SecretStr | None:
    """The configured control token, or None when control is off (no token configured)."""
    if rs.control_token is not None:
        if not rs.control_token.get_secret_value().strip():
            raise ConfigError("risk.control_token: empty; set a token or unset it")
        return SecretStr(rs.control_token.get_secret_value().strip())
    if rs.control_token_file is not None:
        return read_token(rs.control_token_file)
    return None


@dataclass(frozen=True)
class ControlClient:
    """Calls the control port with the token. ``base_url`` like ``http://127.0.0.1:8093``."""

    base_url: str
    token: SecretStr
    timeout: float = 2.0

    def __repr__(self) -> str:
        return f"ControlClient({self.base_url!r}, token=**********)"

    def control(self, action: str, reason: str = "") -> tuple[int, Any]:
        """POST /control; (status, body), status 0 when the port could not be reached."""
        return self._request("/control", {"action": action, "reason": reason})

    def state(self) -> tuple[int, Any]:
        """GET /state; (status, body), status 0 when the port could not be reached."""
        return self._request("/state", None)

    def _request(self, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.base_url.rstrip("/") + path,
            data=json.dumps(body).encode() if body is not None else None,
            method="POST" if body is not None else "GET",
            headers={
                "Authorization": f"Bearer {self.token.get_secret_value()}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, None
        except (OSError, ValueError):
            return 0, None
