"""status.py: phase, per-service counts and conditions (pure)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tradingsystem.common.services import ALL
from tradingsystem_operator.models import (
    ConditionType,
    InvalidSpecError,
    Phase,
    Reason,
    TradingSystemStatus,
    parse_spec,
)
from tradingsystem_operator.status import (
    Problem,
    StatusInputs,
    as_patch,
    compute_status,
    merge_conditions,
    paused_status,
    service_condition,
)

PIPELINE = ("market-data", "signal-bridge", "risk-manager", "execution-engine")
DESIRED = dict.fromkeys(PIPELINE, 1)
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
DOC = Path(__file__).resolve().parents[2] / "docs" / "operator.md"


def status(**changes: Any) -> dict[str, Any]:
    """compute_status over the four services, all wanted once, as the patch it writes."""
    inputs: dict[str, Any] = {"generation": 1, "timestamp": T0, "desired": DESIRED, **changes}
    return as_patch(compute_status(StatusInputs(**inputs)))


def conds(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st["conditions"]}


def test_all_ready_is_running() -> None:
    st = status(generation=3, ready=DESIRED)
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


def test_every_common_condition_type_is_written() -> None:
    assert {t.value for t in ConditionType} <= conds(status()).keys()


def test_every_reason_written_is_a_reason_member() -> None:
    problem = Problem(Reason.SECRET_NOT_FOUND, "x")
    for st in (status(), status(ready=DESIRED, halted=True), status(problem=problem)):
        assert {c["reason"] for c in st["conditions"]} <= {r.value for r in Reason}


def test_waiting_services_are_named_in_status() -> None:
    waiting = {
        "signal-bridge": "market-data",
        "risk-manager": "signal-bridge",
        "execution-engine": "risk-manager",
    }
    st = status(ready={"market-data": 1}, waiting_on=waiting)
    assert st["phase"] == "Progressing" and st["readyServices"] == "1/4"
    assert st["services"]["risk-manager"] == {"desired": 1, "ready": 0, "waitingOn": "signal-bridge"}
    assert st["services"]["market-data"]["waitingOn"] is None  # written as null: clears a merge patch
    c = conds(st)
    assert c["RiskManagerReady"]["reason"] == "WaitingForUpstream"
    assert "signal-bridge waits for market-data" in c["Ready"]["message"]


def test_halted() -> None:
    desired = {**DESIRED, "execution-engine": 0}
    st = status(generation=2, desired=desired, ready=desired, halted=True)
    c = conds(st)
    assert st["phase"] == "Halted" and c["Halted"]["status"] == "True"
    assert c["Halted"]["reason"] == "KillSwitchOn"
    assert c["ExecutionEngineReady"]["reason"] == "Halted"


def test_problem_is_degraded_with_reason() -> None:
    st = status(problem=Problem(Reason.SECRET_NOT_FOUND, "Secret ns/x not found"))
    c = conds(st)
    assert st["phase"] == "Degraded"
    assert c["Degraded"]["status"] == "True" and c["Degraded"]["reason"] == "SecretNotFound"
    assert c["Ready"]["status"] == "False" and c["Ready"]["message"] == "Secret ns/x not found"


def test_permanent_problem_is_failed() -> None:
    st = status(problem=Problem(Reason.INVALID_SPEC, "spec.symbols: bad", permanent=True))
    assert st["phase"] == Phase.FAILED and conds(st)["Degraded"]["reason"] == "InvalidSpec"


def test_transition_time_moves_only_on_status_change() -> None:
    first = status()
    same = status(generation=2, previous=first, timestamp=T1)
    assert conds(same)["Ready"]["lastTransitionTime"] == T0
    flipped = status(generation=2, ready=DESIRED, previous=first, timestamp=T1)
    assert conds(flipped)["Ready"]["lastTransitionTime"] == T1
    fresh = merge_conditions([], [{"type": "X", "status": "True", "reason": "R"}], T1)
    assert fresh[0].last_transition_time == T1


def test_paused_keeps_other_conditions_and_writes_only_phase_generation_conditions() -> None:
    running = status(ready=DESIRED)
    st = as_patch(paused_status(running, 2, T1))
    c = conds(st)
    assert set(st) == {"phase", "observedGeneration", "conditions"}  # readyServices etc. stay as stored
    assert st["phase"] == "Paused" and c["Paused"]["status"] == "True"
    assert c["Paused"]["observedGeneration"] == 2
    assert c["Ready"] == conds(running)["Ready"]


def test_status_is_checked_against_its_schema() -> None:
    with pytest.raises(ValidationError, match="reason"):
        merge_conditions([], [{"type": "Ready", "status": "True", "reason": "not a reason!"}], T0)
    with pytest.raises(ValidationError, match="phase"):
        TradingSystemStatus.model_validate({"phase": "Exploded"})


def test_unparseable_spec_names_each_field_and_echoes_no_value() -> None:
    spec = {"image": "ghcr.io/x/y:1", "symbols": ["AAPL"], "riskManager": {"limits": {"maxOrderQty": -7}}}
    with pytest.raises(InvalidSpecError) as err:
        parse_spec({**spec, "sim": {"tickRate": "fast"}})
    assert "spec.riskManager.limits.maxOrderQty" in str(err.value) and "spec.sim.tickRate" in str(err.value)
    assert "-7" not in str(err.value) and "fast" not in str(err.value)


def test_the_docs_status_tables_match_the_enums() -> None:
    section = DOC.read_text().split("\n## Status\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([A-Za-z]+)`", section))
    enums = {m.value for e in (Phase, ConditionType, Reason) for m in e}
    assert enums | {service_condition(s.name) for s in ALL} <= named
    phase_table = section.split("| phase | when |", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"^\| `([A-Za-z]+)` \|", phase_table, re.MULTILINE)) == {p.value for p in Phase}
