"""kopf's diff-base is built only for TradingSystems, the one kind with change handlers."""

from __future__ import annotations

from typing import Any

import kopf

from tradingsystem_operator.handlers import TradingSystemDiffBase
from tradingsystem_operator.models import GROUP, KIND, VERSION

STORAGE = TradingSystemDiffBase(prefix=GROUP, key="last-handled-configuration")


def body(**fields: Any) -> kopf.Body:
    raw = {"metadata": {"name": "demo", "labels": {"a": "b"}}, "spec": {"replicas": 1}, **fields}
    return kopf.Body(raw)  # type: ignore[arg-type]


def test_a_tradingsystem_gets_kopfs_full_essence() -> None:
    essence = STORAGE.build(body=body(apiVersion=f"{GROUP}/{VERSION}", kind=KIND))
    assert essence["spec"] == {"replicas": 1} and essence["metadata"]["labels"] == {"a": "b"}


def test_a_deployment_or_secret_event_copies_nothing() -> None:
    assert STORAGE.build(body=body(apiVersion="apps/v1", kind="Deployment")) == {}
    assert STORAGE.build(body=body(apiVersion="v1", kind="Secret")) == {}


def test_a_body_without_kind_is_treated_as_kopf_would() -> None:
    assert STORAGE.build(body=body())["spec"] == {"replicas": 1}
