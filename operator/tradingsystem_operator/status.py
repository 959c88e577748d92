"""Pure status computation: phase, per-service counts and metav1.Conditions. No I/O.

Built as ``TradingSystemStatus`` (the model the CRD's status schema is generated from), so what
the operator writes is checked against that schema here, before the API server sees it.
``lastTransitionTime`` only moves when a condition's status changes, as Kubernetes expects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tradingsystem.common.services import BY_NAME, SIM, Replicas
from tradingsystem_operator.models import (
    Condition,
    ConditionStatus,
    ConditionType,
    Phase,
    Reason,
    ServiceStatus,
    TradingSystemStatus,
)


@dataclass(frozen=True)
class Problem:
    """Why reconciling stopped short (missing Secret, API error, a spec that cannot be used).

    ``permanent``: retrying cannot help until the object is edited (kopf ``PermanentError``).
    """

    reason: Reason
    message: str
    permanent: bool = False


@dataclass(frozen=True, kw_only=True)
class StatusInputs:
    """Everything ``compute_status`` needs, as ``render.Inputs`` is for ``render``."""

    generation: int
    timestamp: str  # now, RFC 3339 UTC; becomes lastTransitionTime of conditions that changed
    desired: Mapping[str, int] = field(default_factory=dict)  # replicas per service once gates open
    ready: Mapping[str, int] = field(default_factory=dict)  # available replicas per service
    waiting_on: Mapping[str, str] = field(default_factory=dict)  # service -> upstream it waits for
    halted: bool = False
    problem: Problem | None = None
    previous: Mapping[str, Any] = field(default_factory=dict)  # status as stored (camelCase)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def service_condition(service: str) -> str:
    """The condition type of one service, e.g. ``MarketDataReady`` (prefix from the catalogue)."""
    return f"{BY_NAME[service].condition}Ready"


def _cond(type_: str, ok: bool, reason: Reason, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": type_,
        "status": ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
        "observed_generation": generation,
        "reason": reason,
        "message": message,
    }


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]], timestamp: str
) -> list[Condition]:
    """Keep lastTransitionTime of conditions whose status did not change.

    ``previous`` is as stored (camelCase); ``current`` as built here (snake_case, no time yet).
    """
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in current:
        old = before.get(cond["type"])
        kept = old.get("lastTransitionTime") if old and old.get("status") == cond["status"] else None
        out.append(Condition.model_validate({**cond, "last_transition_time": kept or timestamp}))
    return out


def paused_status(previous: Mapping[str, Any], generation: int, timestamp: str) -> TradingSystemStatus:
    """Paused: report it, keep everything else as last observed (only the fields set are written)."""
    stored = [c for c in previous.get("conditions", []) if c.get("type") != ConditionType.PAUSED]
    kept = [Condition.model_validate(c).model_dump() for c in stored]
    paused = _cond(
        ConditionType.PAUSED,
        True,
        Reason.RECONCILE_PAUSED,
        "spec.paused is true: the operator changes nothing",
        generation,
    )
    return TradingSystemStatus(
        phase=Phase.PAUSED,
        observed_generation=generation,
        conditions=merge_conditions(previous.get("conditions", []), [*kept, paused], timestamp),
    )


def _service_condition(inp: StatusInputs, name: str, want: int, have: int) -> dict[str, Any]:
    type_ = service_condition(name)
    if name in inp.waiting_on:
        upstream = inp.waiting_on[name]
        return _cond(
            type_, False, Reason.WAITING_FOR_UPSTREAM, f"waits for {upstream} to be available", inp.generation
        )
    if want == 0:
        halts = inp.halted and BY_NAME[name].replicas is Replicas.ONE_UNLESS_HALTED
        why = Reason.HALTED if halts else Reason.SCALED_TO_ZERO
        return _cond(type_, True, why, "0 replicas requested", inp.generation)
    if have >= want:
        return _cond(type_, True, Reason.AVAILABLE, f"{have}/{want} ready", inp.generation)
    return _cond(type_, False, Reason.NOT_AVAILABLE, f"{have}/{want} ready", inp.generation)


def compute_status(inp: StatusInputs) -> TradingSystemStatus:
    generation, problem, halted = inp.generation, inp.problem, inp.halted
    services: dict[str, ServiceStatus] = {}
    conds: list[dict[str, Any]] = []
    ok_count = 0
    for name, want in inp.desired.items():
        have = inp.ready.get(name, 0)
        # waitingOn is always written (null clears it: status is written with a merge patch).
        services[name] = ServiceStatus(desired=want, ready=have, waiting_on=inp.waiting_on.get(name))
        conds.append(_service_condition(inp, name, want, have))
        ok_count += name != SIM.name and (have >= want and name not in inp.waiting_on)
    pipeline_total = sum(1 for n in inp.desired if n != SIM.name)
    all_ready = all(c["status"] is ConditionStatus.TRUE for c in conds)

    conds.append(
        _cond(
            ConditionType.DEGRADED,
            problem is not None,
            problem.reason if problem else Reason.AS_EXPECTED,
            problem.message if problem else "",
            generation,
        )
    )
    conds.append(
        _cond(
            ConditionType.HALTED,
            halted,
            Reason.KILL_SWITCH_ON if halted else Reason.TRADING,
            "execution-engine scaled to 0, risk-manager in HALT" if halted else "",
            generation,
        )
    )
    conds.append(_cond(ConditionType.PAUSED, False, Reason.RECONCILING, "", generation))
    if problem is not None:
        phase = Phase.FAILED if problem.permanent else Phase.DEGRADED
        ready_reason, msg = problem.reason, problem.message
    elif all_ready:
        phase, ready_reason, msg = (Phase.HALTED if halted else Phase.RUNNING), Reason.ALL_SERVICES_READY, ""
    else:
        phase, ready_reason = Phase.PROGRESSING, Reason.SERVICES_NOT_READY
        msg = (
            ", ".join(f"{n} waits for {u}" for n, u in inp.waiting_on.items())
            or "some services are not ready yet"
        )
    conds.insert(0, _cond(ConditionType.READY, all_ready and problem is None, ready_reason, msg, generation))
    return TradingSystemStatus(
        phase=phase,
        observed_generation=generation,
        ready_services=f"{ok_count}/{pipeline_total}",
        services=services,
        conditions=merge_conditions(inp.previous.get("conditions", []), conds, inp.timestamp),
    )


def as_patch(status: TradingSystemStatus) -> dict[str, Any]:
    """The status as a merge-patch body: camelCase, and only the fields that were set."""
    return status.model_dump(mode="json", by_alias=True, exclude_unset=True)
