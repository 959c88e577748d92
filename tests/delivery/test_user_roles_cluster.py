"""The chart's aggregated roles on the real control plane: a user bound to Kubernetes' built-in
admin, edit or view role in a namespace gets exactly the TradingSystem rights the chart claims,
there and nowhere else (SubjectAccessReview, i.e. `kubectl auth can-i --as=USER`)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tradingsystem_testing import eventually
from tradingsystem_testing.controlplane import ControlPlane

from .conftest import Helm
from .test_chart_cluster import create_namespace, install_rendered

G = "tradingsystem.dev"
READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")
STATUS_WRITE = ("update", "patch")


def allowed(cp: ControlPlane, user: str, verb: str, resource: str, namespace: str) -> bool:
    plural, _, sub = resource.partition("/")
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:authenticated"],
            "resourceAttributes": {
                "verb": verb,
                "group": G,
                "resource": plural,
                "subresource": sub,
                "namespace": namespace,
            },
        },
    }
    status, body = cp.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert status == 201, body
    return bool(body["status"].get("allowed"))


def bind(cp: ControlPlane, namespace: str, user: str, role: str) -> None:
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{user}-{role}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    status, body = cp.request(
        "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", binding
    )
    assert status == 201, body


@pytest.fixture(scope="module")
def desk(control_plane: ControlPlane, kubeconfig: Path, helm: Helm) -> str:
    """The chart installed, and one user per built-in role bound in a fresh namespace."""
    install_rendered(control_plane, helm, create_namespace(control_plane, "dlv-roles"))
    namespace = create_namespace(control_plane, "desk")
    for role in ("admin", "edit", "view"):
        bind(control_plane, namespace, f"{role}-user", role)
    # The controller-manager's clusterrole-aggregation controller copies the rules in.
    eventually(
        lambda: all(
            allowed(control_plane, f"{r}-user", "get", "tradingsystems", namespace)
            for r in ("admin", "edit", "view")
        ),
        "the chart's rules aggregated into admin, edit and view",
        timeout=60,
        every=0.5,
    )
    return namespace


@pytest.mark.parametrize("role", ["admin", "edit"])
def test_admins_and_editors_manage_tradingsystems_in_their_namespace(
    control_plane: ControlPlane, desk: str, role: str
) -> None:
    can = functools.partial(allowed, control_plane, f"{role}-user")
    assert [v for v in (*READ, *WRITE) if not can(v, "tradingsystems", desk)] == []


@pytest.mark.parametrize("role", ["admin", "edit", "view"])
def test_nobody_but_the_operator_writes_status(control_plane: ControlPlane, desk: str, role: str) -> None:
    can = functools.partial(allowed, control_plane, f"{role}-user")
    assert can("get", "tradingsystems/status", desk)
    assert [v for v in STATUS_WRITE if can(v, "tradingsystems/status", desk)] == []


def test_viewers_read_but_cannot_change_tradingsystems(control_plane: ControlPlane, desk: str) -> None:
    can = functools.partial(allowed, control_plane, "view-user")
    assert [v for v in READ if not can(v, "tradingsystems", desk)] == []
    assert [v for v in WRITE if can(v, "tradingsystems", desk)] == []


@pytest.mark.parametrize("role", ["admin", "edit", "view"])
def test_no_right_reaches_another_namespace(control_plane: ControlPlane, desk: str, role: str) -> None:
    can = functools.partial(allowed, control_plane, f"{role}-user")
    assert [v for v in (*READ, *WRITE) if can(v, "tradingsystems", "default")] == []
