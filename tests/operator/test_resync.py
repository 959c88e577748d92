"""The registry's pure decisions: which objects a resync or a Secret event reconciles."""

from __future__ import annotations

import copy
from typing import Any

from tradingsystem_operator.resync import (
    deployment_needs_pass,
    deployment_signature,
    due,
    referenced_secrets,
    referencing,
)

A, B, C = ("ns1", "a"), ("ns1", "b"), ("ns2", "c")


def test_an_object_is_due_once_the_interval_has_passed_since_its_last_pass() -> None:
    assert due([A, B], {A: 0.0, B: 50.0}, now=60.0, interval=60.0) == [A]


def test_an_object_without_a_recorded_pass_is_not_due() -> None:
    assert due([A], {}, now=1_000.0, interval=60.0) == []


def test_an_object_whose_pass_runs_or_waits_for_its_turn_is_not_due() -> None:
    assert due([A, B], {A: 0.0, B: 0.0}, now=120.0, interval=60.0, busy={A}) == [B]


def test_a_forgotten_object_is_never_due_even_with_a_stale_last_pass() -> None:
    assert due([B], {A: 0.0, B: 100.0}, now=120.0, interval=60.0) == []


def test_sim_mode_references_no_credentials_secret() -> None:
    assert referenced_secrets({"mode": "sim", "credentials": {"secretName": "alpaca"}}) == frozenset()


def test_paper_mode_references_its_credentials_secret() -> None:
    assert referenced_secrets({"mode": "paper", "credentials": {"secretName": "alpaca"}}) == {"alpaca"}


def test_the_users_own_curve_keys_secret_is_referenced_in_every_mode() -> None:
    spec = {"mode": "sim", "security": {"curve": {"enabled": True, "keysSecret": "my-keys"}}}
    assert referenced_secrets(spec) == {"my-keys"}


def test_a_secret_event_finds_the_objects_of_its_namespace_that_use_it() -> None:
    known = {A: frozenset({"alpaca", "keys"}), B: frozenset(), C: frozenset({"alpaca"})}
    assert referencing(known, "ns1", "alpaca") == [A]
    assert referencing(known, "ns1", "keys") == [A]


def deployment(**status: int) -> dict[str, Any]:
    return {
        "metadata": {
            "generation": 2,
            "labels": {"app.kubernetes.io/component": "sim"},
            "annotations": {"h": "1"},
        },
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 2, "updatedReplicas": 1, "conditions": [], **status},
    }


def changed(edit: Any) -> bool:
    before = deployment(availableReplicas=0)
    after = copy.deepcopy(before)
    edit(after)
    return deployment_signature(before) != deployment_signature(after)


def test_the_controllers_status_bookkeeping_needs_no_pass() -> None:
    assert not changed(lambda d: d["status"].update(observedGeneration=3, updatedReplicas=0))
    assert not changed(lambda d: d["status"]["conditions"].append({"type": "Progressing"}))
    assert not changed(
        lambda d: d["metadata"]["annotations"].update({"deployment.kubernetes.io/revision": "2"})
    )


def test_availability_readiness_and_drift_need_a_pass() -> None:
    assert changed(lambda d: d["status"].update(availableReplicas=1))  # opens the next startup gate
    assert changed(lambda d: d["status"].update(readyReplicas=1))  # reaches the status
    assert changed(lambda d: d["metadata"].update(generation=3))  # its spec was edited
    assert changed(lambda d: d["spec"].update(replicas=0))
    assert changed(lambda d: d["metadata"]["labels"].update(extra="x"))  # our labels drifted
    assert changed(lambda d: d["metadata"]["annotations"].pop("h"))


SIG = deployment_signature(deployment())


def test_a_deployment_a_pass_just_created_needs_no_second_pass() -> None:
    assert not deployment_needs_pass("ADDED", None, SIG)


def test_the_initial_listing_of_deployments_leaves_the_passes_to_the_resume_handlers() -> None:
    assert not deployment_needs_pass(None, None, SIG)


def test_a_relisting_after_a_watch_restart_needs_a_pass_only_for_what_moved() -> None:
    ready = deployment_signature(deployment(availableReplicas=1))
    assert (deployment_needs_pass(None, SIG, SIG), deployment_needs_pass(None, SIG, ready)) == (False, True)


def test_a_deleted_deployment_always_needs_a_pass_to_recreate_it() -> None:
    assert deployment_needs_pass("DELETED", SIG, SIG)


def test_a_modified_deployment_needs_a_pass_only_when_its_signature_moved() -> None:
    ready = deployment_signature(deployment(availableReplicas=1))
    assert (deployment_needs_pass("MODIFIED", SIG, SIG), deployment_needs_pass("MODIFIED", SIG, ready)) == (
        False,
        True,
    )


def test_a_modified_deployment_never_seen_before_needs_a_pass() -> None:
    assert deployment_needs_pass("MODIFIED", None, SIG)
