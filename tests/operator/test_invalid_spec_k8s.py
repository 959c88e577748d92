"""A spec the operator's models refuse is a permanent error, reported on the object, not retried.

The API server refuses such a spec on create (the CRD is generated from the same models), so the
case is an object stored under another schema: the test hands the reconcile pass a body whose
spec was changed after it was stored, against the real API server.
"""

from __future__ import annotations

import kopf
from kubernetes_asyncio import client

from tradingsystem_operator.handlers import handler_error, waits_for_edit
from tradingsystem_operator.models import Reason
from tradingsystem_operator.reconcile import reconcile
from tradingsystem_operator.status import Problem

G, V, P = "tradingsystem.dev", "v1alpha1", "tradingsystems"
SPEC = {"image": "ghcr.io/example/tradingsystem:0.1.0", "symbols": ["AAPL"]}


async def test_unparseable_spec_fails_naming_the_field_and_creates_nothing(
    k8s_api: client.ApiClient, namespace: str, tradingsystem_crd: str
) -> None:
    custom = client.CustomObjectsApi(k8s_api)
    obj = {"apiVersion": f"{G}/{V}", "kind": "TradingSystem", "metadata": {"name": "drift"}, "spec": SPEC}
    stored = dict(await custom.create_namespaced_custom_object(G, V, namespace, P, obj))
    drifted = {**stored, "spec": {**stored["spec"], "riskManager": {"limits": {"maxOrderQty": -1}}}}

    outcome = await reconcile(k8s_api, drifted, ())

    assert outcome.problem is not None and outcome.problem.permanent
    status = (await custom.get_namespaced_custom_object(G, V, namespace, P, "drift"))["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert status["phase"] == "Failed" and degraded["reason"] == "InvalidSpec"
    assert "spec.riskManager.limits.maxOrderQty" in degraded["message"]
    deployments = await client.AppsV1Api(k8s_api).list_namespaced_deployment(namespace)
    assert deployments.items == []


def test_a_permanent_problem_stops_retries_and_a_transient_one_backs_off() -> None:
    assert isinstance(
        handler_error(Problem(Reason.INVALID_SPEC, "x", permanent=True), 3), kopf.PermanentError
    )
    transient = handler_error(Problem(Reason.API_ERROR, "x"), 3)
    assert isinstance(transient, kopf.TemporaryError) and transient.delay == 8.0


def test_the_timer_leaves_a_failed_generation_alone_until_it_is_edited() -> None:
    failed = {"metadata": {"generation": 3}, "status": {"phase": "Failed", "observedGeneration": 3}}
    assert waits_for_edit(failed)
    assert not waits_for_edit({**failed, "metadata": {"generation": 4}})  # edited since
    assert not waits_for_edit({**failed, "status": {"phase": "Degraded", "observedGeneration": 3}})
