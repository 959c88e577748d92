"""startup.py: the startup gate (pure)."""

from __future__ import annotations

from tradingsystem.common.services import start_order
from tradingsystem_operator.startup import GateInputs, gate

ORDER = tuple(s.name for s in start_order(with_sim=True))


def inputs(**kw: object) -> GateInputs:
    desired = kw.pop("desired", dict.fromkeys(ORDER, 1))
    return GateInputs(order=ORDER, desired=desired, **kw)  # type: ignore[arg-type]


def test_the_gate_follows_the_catalogue_start_order_consumers_first() -> None:
    assert ORDER == ("sim", "execution-engine", "risk-manager", "market-data", "signal-bridge")


def test_only_the_first_service_starts_when_nothing_is_available() -> None:
    g = gate(inputs())
    assert g.replicas == {
        "sim": 1,
        "execution-engine": 0,
        "risk-manager": 0,
        "market-data": 0,
        "signal-bridge": 0,
    }


def test_each_service_waits_for_the_one_before_it() -> None:
    assert gate(inputs()).waiting_on == {
        "execution-engine": "sim",
        "risk-manager": "execution-engine",
        "market-data": "risk-manager",
        "signal-bridge": "market-data",
    }


def test_an_available_service_opens_the_gate_of_the_next_one_only() -> None:
    g = gate(inputs(available={"sim": 1, "execution-engine": 1}))
    assert g.replicas["risk-manager"] == 1 and g.replicas["market-data"] == 0


def test_a_service_at_zero_replicas_is_skipped_not_waited_for() -> None:
    desired = {**dict.fromkeys(ORDER, 1), "execution-engine": 0}
    g = gate(inputs(desired=desired, available={"sim": 1}))
    assert g.replicas["risk-manager"] == 1 and "execution-engine" not in g.waiting_on


def test_a_running_service_keeps_running_when_the_one_before_it_blips() -> None:
    g = gate(inputs(available={"sim": 1}, running={"market-data": 1}))
    assert g.replicas["market-data"] == 1 and "market-data" not in g.waiting_on


def test_all_available_means_nobody_waits() -> None:
    g = gate(inputs(available=dict.fromkeys(ORDER, 1)))
    assert g.waiting_on == {} and set(g.replicas.values()) == {1}
