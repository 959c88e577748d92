"""status.py: phase, per-service counts and conditions (pure)."""

from __future__ import annotations

from typing import Any

from tradingsystem_operator.status import Problem, compute_status, merge_conditions, paused_status

PIPELINE = ("market-data", "signal-bridge", "risk-manager", "execution-engine")
DESIRED = dict.fromkeys(PIPELINE, 1)
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_all_ready_is_running() -> None:
    st = compute_status(False, 3, DESIRED, DESIRED, {}, None, {}, T0)
    assert st["phase"] == "Running" and st["readyServices"] == "4/4" and st["observedGeneration"] == 3
    c = conds(st)
    assert c["Ready"]["status"] == "True" and c["Ready"]["observedGeneration"] == 3
    assert c["ExecutionEngineReady"]["reason"] == "Available"
    assert c["Degraded"]["status"] == "False" and c["Halted"]["status"] == "False"
    assert c["Paused"]["status"] == "False"
    assert all(
        set(x) == {"type", "status", "observedGeneration", "lastTransitionTime", "reason", "message"}
        for x in st["conditions"]
    )


def test_waiting_services_are_named_in_status() -> None:
    ready = {"market-data": 1}
    waiting = {
        "signal-bridge": "market-data",
        "risk-manager": "signal-bridge",
        "execution-engine": "risk-manager",
    }
    st = compute_status(False, 1, DESIRED, ready, waiting, None, {}, T0)
    assert st["phase"] == "Progressing" and st["readyServices"] == "1/4"
    assert st["services"]["risk-manager"] == {"desired": 1, "ready": 0, "waitingOn": "signal-bridge"}
    assert st["services"]["market-data"]["waitingOn"] is None
    c = conds(st)
    assert c["RiskManagerReady"]["reason"] == "WaitingForUpstream"
    assert "signal-bridge waits for market-data" in c["Ready"]["message"]


def test_halted() -> None:
    desired = {**DESIRED, "execution-engine": 0}
    st = compute_status(True, 2, desired, desired, {}, None, {}, T0)
    c = conds(st)
    assert (
        st["phase"] == "Halted"
        and c["Halted"]["status"] == "True"
        and c["Halted"]["reason"] == "KillSwitchOn"
    )
    assert c["ExecutionEngineReady"]["reason"] == "Halted"


def test_problem_is_degraded_with_reason() -> None:
    st = compute_status(False, 1, DESIRED, {}, {}, Problem("SecretNotFound", "Secret ns/x not found"), {}, T0)
    c = conds(st)
    assert st["phase"] == "Degraded"
    assert c["Degraded"]["status"] == "True" and c["Degraded"]["reason"] == "SecretNotFound"
    assert c["Ready"]["status"] == "False" and c["Ready"]["message"] == "Secret ns/x not found"


def test_transition_time_moves_only_on_status_change() -> None:
    first = compute_status(False, 1, DESIRED, {}, {}, None, {}, T0)
    same = compute_status(False, 2, DESIRED, {}, {}, None, first, T1)
    assert conds(same)["Ready"]["lastTransitionTime"] == T0
    flipped = compute_status(False, 2, DESIRED, DESIRED, {}, None, first, T1)
    assert conds(flipped)["Ready"]["lastTransitionTime"] == T1
    assert merge_conditions([], [{"type": "X", "status": "True"}], T1)[0]["lastTransitionTime"] == T1


def test_paused_keeps_other_conditions() -> None:
    running = compute_status(False, 1, DESIRED, DESIRED, {}, None, {}, T0)
    st = paused_status(running, 2, T1)
    c = conds(st)
    assert (
        st["phase"] == "Paused" and c["Paused"]["status"] == "True" and c["Paused"]["observedGeneration"] == 2
    )
    assert c["Ready"] == conds(running)["Ready"]
