"""API-key check shared by REST and both websockets.

With a key id configured, requests must carry exactly that key id and secret. Without one
(``accept_any``), any non-empty key id and secret pass, which is how ``tradingsystem sim``
runs when no ``ALPACA_API_KEY`` is set. Secrets are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from tradingsystem.broker import SIM_KEY_ID as DEFAULT_KEY_ID
from tradingsystem.broker import SIM_SECRET as DEFAULT_SECRET


@dataclass(frozen=True)
class Credentials:
    key_id: str | None = DEFAULT_KEY_ID
    secret: str | None = field(default=DEFAULT_SECRET, repr=False)

    @property
    def accept_any(self) -> bool:
        return self.key_id is None

    def check(self, key_id: str | None, secret: str | None) -> bool:
        if not key_id or not secret:
            return False
        if self.key_id is None or self.secret is None:
            return True
        return hmac.compare_digest(key_id, self.key_id) and hmac.compare_digest(secret, self.secret)
