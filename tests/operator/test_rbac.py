"""rbac.yaml grants what apply.py and the handlers use, and nothing broader."""

from __future__ import annotations

from pathlib import Path

import yaml

from tradingsystem_operator import apply

RBAC = Path(apply.__file__).with_name("rbac.yaml")


def rules() -> list[dict[str, list[str]]]:
    docs = list(yaml.safe_load_all(RBAC.read_text()))
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    return list(role["rules"])


def verbs_for(group: str, resource: str) -> set[str]:
    return {v for r in rules() if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}


def test_every_child_kind_can_be_applied_and_pruned() -> None:
    for api_version, plural in apply.KINDS.values():
        group = api_version.rpartition("/")[0]
        assert {"get", "list", "create", "patch", "delete"} <= verbs_for(group, plural), plural


def test_secrets_are_read_watched_and_written_only_as_owned_never_deleted_and_nothing_is_wildcarded() -> None:
    # get: referenced credentials; list/watch: rotation (type=Opaque); create/patch: the control
    # token and Curve keys it owns. Never delete or update: owned Secrets go by garbage collection.
    assert verbs_for("", "secrets") == {"get", "list", "watch", "create", "patch"}
    for rule in rules():
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]


def test_status_and_watches() -> None:
    assert {"get", "patch"} <= verbs_for("tradingsystem.dev", "tradingsystems/status")
    assert "watch" in verbs_for("tradingsystem.dev", "tradingsystems")
    assert "watch" in verbs_for("apps", "deployments")
    assert "watch" in verbs_for("", "secrets")


def test_no_finalizer_rights_beyond_patching_the_tradingsystem() -> None:
    # Removing a finalizer left by an older version is a patch of the object, nothing more.
    assert "delete" not in verbs_for("tradingsystem.dev", "tradingsystems")
    assert "tradingsystems/finalizers" not in {r for rule in rules() for r in rule["resources"]}


def test_leader_election_may_only_get_create_and_update_leases_in_the_operators_own_namespace() -> None:
    docs = list(yaml.safe_load_all(RBAC.read_text()))
    [role] = [d for d in docs if d["kind"] == "Role"]
    [binding] = [d for d in docs if d["kind"] == "RoleBinding"]
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    namespace = account["metadata"]["namespace"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}
    ]
    # Nothing cluster-wide: the ClusterRole grants no lease right anywhere.
    assert not verbs_for("coordination.k8s.io", "leases")
