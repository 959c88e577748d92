"""Which TradingSystems to reconcile without a change to the TradingSystem itself. No I/O.

The operator keeps a small in-memory registry of the TradingSystems it has seen (from their watch
events) instead of a per-object kopf timer: kopf adds a finalizer to every object that has a timer
or daemon, and that finalizer makes ``kubectl delete`` hang once the operator is gone. With the
registry, one background loop resyncs each object ``interval`` seconds after its last pass, and a
Secret's watch event finds the objects that reference it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Key = tuple[str, str]  # (namespace, name) of a TradingSystem


def referenced_secret(spec: Mapping[str, Any]) -> str | None:
    """The credentials Secret a TradingSystem reads (hashed into its pods), if its mode uses one."""
    if (spec.get("mode") or "sim") == "sim":
        return None
    name = (spec.get("credentials") or {}).get("secretName")
    return str(name) if name else None


def due(known: Iterable[Key], last_pass: Mapping[Key, float], now: float, interval: float) -> list[Key]:
    """Known objects whose last pass (from any trigger) ended ``interval`` or more seconds ago.

    An object with no recorded pass is not due: the registry records the time it first saw it,
    and its create/resume handler runs a pass at that moment anyway.
    """
    return [k for k in known if k in last_pass and now - last_pass[k] >= interval]


def referencing(known: Mapping[Key, str | None], namespace: str, secret: str) -> list[Key]:
    """The TradingSystems in ``namespace`` whose credentials are the Secret ``secret``."""
    return [k for k, name in known.items() if k[0] == namespace and name == secret]
