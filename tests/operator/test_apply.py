"""Which children a pass applies: only new, changed or drifted ones (an idle system writes nothing)."""

from __future__ import annotations

import copy
from typing import Any

from tradingsystem_operator.apply import APPLIED_HASH, needs_apply, observe, stamped
from tradingsystem_operator.reconcile import after_writes


def manifest(replicas: int = 1, env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return stamped(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "demo-risk-manager", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {
                "replicas": replicas,
                "template": {"spec": {"containers": [{"name": "c", "env": env or []}]}},
            },
        }
    )


def as_live(m: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns in a list: no apiVersion/kind, defaults and its own fields added."""
    live = copy.deepcopy({k: v for k, v in m.items() if k not in ("apiVersion", "kind")})
    live["metadata"].update(uid="u", resourceVersion="7")
    live["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "1"
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    if not container["env"]:
        del container["env"]  # the API server drops empty lists
    live["status"] = {"availableReplicas": 1}
    return live


def test_unchanged_child_is_not_applied_despite_server_defaults() -> None:
    assert not needs_apply(manifest(), as_live(manifest()))


def test_missing_child_is_applied() -> None:
    assert needs_apply(manifest(), None)


def test_changed_render_is_applied_even_when_only_a_field_is_removed() -> None:
    with_env = manifest(env=[{"name": "TS_RISK__HALTED", "value": "true"}])
    # The live object still holds the removed env var, so only the hash tells them apart.
    assert needs_apply(manifest(), as_live(with_env))
    assert (
        manifest()["metadata"]["annotations"][APPLIED_HASH]
        != with_env["metadata"]["annotations"][APPLIED_HASH]
    )


def test_drift_of_a_field_we_own_is_corrected() -> None:
    live = as_live(manifest())
    live["spec"]["replicas"] = 3  # someone scaled it by hand
    assert needs_apply(manifest(), live)
    live = as_live(manifest())
    del live["metadata"]["labels"]["a"]
    assert needs_apply(manifest(), live)


def deployment(name: str, component: str, replicas: int, available: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": component}},
        "spec": {"replicas": replicas},
        "status": {"availableReplicas": available, "readyReplicas": available},
    }


def test_after_the_writes_a_pass_sees_the_stored_answers_and_not_the_pruned_children() -> None:
    live = {
        ("Deployment", "d-sim"): deployment("d-sim", "sim", 1, 1),
        ("Deployment", "d-risk-manager"): deployment("d-risk-manager", "risk-manager", 0, 0),
        ("Deployment", "d-old"): deployment("d-old", "old", 1, 1),
    }
    scaled = deployment("d-risk-manager", "risk-manager", 1, 0)
    applied = [({"kind": "Deployment", "metadata": {"name": "d-risk-manager"}}, scaled)]
    after = after_writes(live, applied, [("Deployment", "d-old")])
    assert after == {
        ("Deployment", "d-sim"): live[("Deployment", "d-sim")],
        ("Deployment", "d-risk-manager"): scaled,
    }
    observed, ready = observe(after)
    assert observed.replicas == {"sim": 1, "risk-manager": 1} and ready == {"sim": 1, "risk-manager": 0}
