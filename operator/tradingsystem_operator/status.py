"""Pure status computation: phase, per-service counts and metav1.Conditions.

``lastTransitionTime`` only moves when a condition's status changes, as Kubernetes expects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tradingsystem.common.services import BY_NAME, SIM, Replicas


@dataclass(frozen=True)
class Problem:
    """Why reconciling stopped short (missing Secret, API error); reason is CamelCase."""

    reason: str
    message: str


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cond(type_: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "observedGeneration": generation,
        "reason": reason,
        "message": message,
    }


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], current: Sequence[dict[str, Any]], timestamp: str
) -> list[dict[str, Any]]:
    """Keep lastTransitionTime of conditions whose status did not change."""
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in current:
        old = before.get(cond["type"])
        keep = old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime")
        out.append({**cond, "lastTransitionTime": old["lastTransitionTime"] if keep and old else timestamp})
    return out


def paused_status(previous: Mapping[str, Any], generation: int, timestamp: str) -> dict[str, Any]:
    """Paused: report it, keep everything else as last observed."""
    conds = [c for c in previous.get("conditions", []) if c.get("type") != "Paused"]
    paused = _cond(
        "Paused", True, "ReconcilePaused", "spec.paused is true: the operator changes nothing", generation
    )
    return {
        "phase": "Paused",
        "observedGeneration": generation,
        "conditions": merge_conditions(previous.get("conditions", []), [*conds, paused], timestamp),
    }


def compute_status(
    halted: bool,
    generation: int,
    desired: Mapping[str, int],
    ready: Mapping[str, int],
    waiting_on: Mapping[str, str],
    problem: Problem | None,
    previous: Mapping[str, Any],
    timestamp: str,
) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = {}
    conds: list[dict[str, Any]] = []
    ok_count = 0
    for name, want in desired.items():
        have = ready.get(name, 0)
        # waitingOn is always written (null clears it: status is written with a merge patch).
        entry: dict[str, Any] = {"desired": want, "ready": have, "waitingOn": waiting_on.get(name)}
        prefix = BY_NAME[name].condition
        if name in waiting_on:
            conds.append(
                _cond(
                    f"{prefix}Ready",
                    False,
                    "WaitingForUpstream",
                    f"waits for {waiting_on[name]} to be available",
                    generation,
                )
            )
        elif want == 0:
            why = (
                "Halted"
                if halted and BY_NAME[name].replicas is Replicas.ONE_UNLESS_HALTED
                else "ScaledToZero"
            )
            conds.append(_cond(f"{prefix}Ready", True, why, "0 replicas requested", generation))
        elif have >= want:
            conds.append(_cond(f"{prefix}Ready", True, "Available", f"{have}/{want} ready", generation))
        else:
            conds.append(_cond(f"{prefix}Ready", False, "NotAvailable", f"{have}/{want} ready", generation))
        ok_count += name != SIM.name and (have >= want and name not in waiting_on)
        services[name] = entry
    pipeline_total = sum(1 for n in desired if n != SIM.name)
    all_ready = all(c["status"] == "True" for c in conds)

    degraded = problem is not None
    conds.append(
        _cond(
            "Degraded",
            degraded,
            problem.reason if problem else "AsExpected",
            problem.message if problem else "",
            generation,
        )
    )
    conds.append(
        _cond(
            "Halted",
            halted,
            "KillSwitchOn" if halted else "Trading",
            "execution-engine scaled to 0, risk-manager in HALT" if halted else "",
            generation,
        )
    )
    conds.append(_cond("Paused", False, "Reconciling", "", generation))
    if degraded:
        phase, ready_reason, msg = (
            "Degraded",
            problem.reason if problem else "",
            problem.message if problem else "",
        )
    elif all_ready:
        phase, ready_reason, msg = ("Halted" if halted else "Running"), "AllServicesReady", ""
    else:
        phase, ready_reason = "Progressing", "ServicesNotReady"
        msg = (
            ", ".join(f"{n} waits for {u}" for n, u in waiting_on.items())
            or "some services are not ready yet"
        )
    conds.insert(0, _cond("Ready", all_ready and not degraded, ready_reason, msg, generation))
    return {
        "phase": phase,
        "observedGeneration": generation,
        "readyServices": f"{ok_count}/{pipeline_total}",
        "services": services,
        "conditions": merge_conditions(previous.get("conditions", []), conds, timestamp),
    }
