"""The operator's per-service replica gauges: set from the status it writes, gone with the object."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tradingsystem_operator.metrics import forget_system, record_services


def _ready(ns: str, ts: str, service: str) -> float | None:
    labels = {"namespace": ns, "tradingsystem": ts, "service": service}
    return REGISTRY.get_sample_value("tradingsystem_operator_service_ready_replicas", labels)


def _desired(ns: str, ts: str, service: str) -> float | None:
    labels = {"namespace": ns, "tradingsystem": ts, "service": service}
    return REGISTRY.get_sample_value("tradingsystem_operator_service_desired_replicas", labels)


def test_the_gauges_follow_the_status_services_map() -> None:
    record_services("g1", "demo", {"market-data": {"desired": 1, "ready": 0, "waitingOn": None}})
    assert (_desired("g1", "demo", "market-data"), _ready("g1", "demo", "market-data")) == (1.0, 0.0)


def test_a_service_the_status_nulls_loses_its_series() -> None:
    record_services("g2", "demo", {"sim": {"desired": 1, "ready": 1}})
    record_services("g2", "demo", {"sim": None})
    assert _ready("g2", "demo", "sim") is None


def test_a_deleted_system_loses_every_series_and_only_its_own() -> None:
    record_services(
        "g3", "a", {"risk-manager": {"desired": 1, "ready": 1}, "sim": {"desired": 1, "ready": 1}}
    )
    record_services("g3", "b", {"risk-manager": {"desired": 1, "ready": 1}})
    forget_system("g3", "a")
    assert [
        _ready("g3", "a", "risk-manager"),
        _ready("g3", "a", "sim"),
        _ready("g3", "b", "risk-manager"),
    ] == [
        None,
        None,
        1.0,
    ]
