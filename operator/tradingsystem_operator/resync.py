"""Which TradingSystems to reconcile without a change to the TradingSystem itself. No I/O.

The operator keeps a small in-memory registry of the TradingSystems it has seen (from their watch
events) instead of a per-object kopf timer: kopf adds a finalizer to every object that has a timer
or daemon, and that finalizer makes ``kubectl delete`` hang once the operator is gone. With the
registry, one background loop resyncs each object ``interval`` seconds after its last pass, and a
Secret's watch event finds the objects that reference it. A Deployment's watch event leads to a
pass only when something a pass reads from it changed (``deployment_signature``) since a pass
read it (``deployment_needs_pass``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Container, Iterable, Mapping
from typing import Any

Key = tuple[str, str]  # (namespace, name) of a TradingSystem
# Annotations the deployment controller keeps on a Deployment (revision, desired-replicas, ...).
CONTROLLER_ANNOTATIONS = "deployment.kubernetes.io/"


def referenced_secrets(spec: Mapping[str, Any]) -> frozenset[str]:
    """The user's Secrets a TradingSystem reads and hashes into its pods: the Alpaca credentials
    (modes paper and live) and the user's own Curve keys (``security.curve.keysSecret``).

    The keys Secret counts whenever it is named, even if Curve ends up off: a needless pass on its
    event changes nothing, a missed one would leave pods on old keys until the resync.
    """
    names: set[str] = set()
    if (spec.get("mode") or "sim") != "sim":
        names.add((spec.get("credentials") or {}).get("secretName") or "")
    names.add(((spec.get("security") or {}).get("curve") or {}).get("keysSecret") or "")
    return frozenset(str(n) for n in names if n)


def due(
    known: Iterable[Key],
    last_pass: Mapping[Key, float],
    now: float,
    interval: float,
    busy: Container[Key] = frozenset(),
) -> list[Key]:
    """Known objects whose last pass (from any trigger) ended ``interval`` or more seconds ago.

    An object with no recorded pass is not due: the registry records the time it first saw it,
    and its create/resume handler runs a pass at that moment anyway. Nor is a ``busy`` one (a
    pass running or waiting for its turn): that pass reads the state as it is then, and its end
    restarts the period. While 100 systems start, those waiting longer than the period for their
    first pass got a resync pass queued behind it.
    """
    return [k for k in known if k in last_pass and k not in busy and now - last_pass[k] >= interval]


def referencing(known: Mapping[Key, frozenset[str]], namespace: str, secret: str) -> list[Key]:
    """The TradingSystems in ``namespace`` that read the Secret ``secret``."""
    return [k for k, names in known.items() if k[0] == namespace and secret in names]


def deployment_signature(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a pass reads from one of our Deployments: its spec generation (drift of the spec, e.g.
    someone scaled it), its labels and annotations (drift of our metadata), and the replica counts
    that open startup gates and fill the status. The controller-manager's other status writes
    (observedGeneration, conditions, updatedReplicas, the ``deployment.kubernetes.io/revision``
    annotation: about 15 per system while it starts) change none of these, so their events need
    no pass.
    """
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(CONTROLLER_ANNOTATIONS)
    }
    marks = json.dumps([meta.get("labels") or {}, annotations], sort_keys=True)
    return (
        meta.get("generation"),
        (body.get("spec") or {}).get("replicas"),
        status.get("availableReplicas") or 0,
        status.get("readyReplicas") or 0,
        hashlib.sha256(marks.encode()).hexdigest(),
    )


def deployment_needs_pass(
    event_type: str | None, known: tuple[Any, ...] | None, signature: tuple[Any, ...]
) -> bool:
    """Whether a watch event of one of our Deployments calls for a pass of its TradingSystem.

    ``ADDED`` is the answer to a pass's own apply (only passes create our Deployments), which that
    pass read and rendered from; it needs no pass of its own: while 100 systems start, the five
    ADDED events per system were a second pass for each (the signature is recorded, so a later
    change still counts). ``None`` is a listing: at start (nothing known yet) the resume handlers
    pass every object anyway; a relisting after a watch restart counts like a modification.
    ``DELETED`` always does (the pass recreates the child); a modification only if the signature
    moved.
    """
    if event_type == "DELETED":
        return True
    if event_type == "ADDED" or (event_type is None and known is None):
        return False
    return known != signature
