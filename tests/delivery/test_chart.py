"""The Helm chart, rendered by a real helm binary: lint, template with several values files, the
schema's refusals, and the files it must share with the rest of the repository."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradingsystem.common.config import LIVE_CONFIRMATION
from tradingsystem_operator.main import build_parser
from tradingsystem_operator.render import RUN_AS

from .conftest import CHART, EXAMPLES, REPO, Dockerfile, Helm, operator_rules, project_version

VALUES = Path(__file__).parent / "values"
GOOD_VALUES = sorted(p for p in VALUES.glob("*.yaml") if not p.name.startswith("bad-"))
# helm built from Go modules lacks the release build's ldflags and assumes Kubernetes v1.20 for
# offline rendering; say which cluster we target (the chart requires >= 1.29 for CEL rules).
KUBE = ("--kube-version", "1.34.4")
RBAC_SOURCE = REPO / "operator" / "tradingsystem_operator" / "rbac.yaml"
OPERATOR_RULES_SOURCE = REPO / "monitoring" / "rules" / "operator.rules.yaml"
# (source of truth, the chart's copy): `make chart-sync` refreshes every copy.
COPIES = [
    (REPO / "crds" / "tradingsystems.yaml", CHART / "crds" / "tradingsystems.yaml"),
    (RBAC_SOURCE, CHART / "files" / "rbac.yaml"),
    (OPERATOR_RULES_SOURCE, CHART / "files" / "rules" / "operator.rules.yaml"),
    *[(EXAMPLES / n, CHART / "examples" / n) for n in ("sim.yaml", "paper.yaml", "paper-secret.yaml")],
]


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def user_roles(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ClusterRoles aggregated into Kubernetes' admin/edit/view roles."""
    return [
        o
        for o in by_kind(objs, "ClusterRole")
        if any(k.startswith(AGGREGATE) for k in o["metadata"]["labels"])
    ]


def operator_role(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's own ClusterRole (the one that is not aggregated into the user roles)."""
    [role] = [o for o in by_kind(objs, "ClusterRole") if o not in user_roles(objs)]
    return role


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    [c] = pod["containers"]
    return dict(c)


# --- copies and versions ------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "copy"), COPIES, ids=lambda p: str(p.relative_to(REPO)))
def test_chart_copy_matches_its_source(source: Path, copy: Path) -> None:
    assert copy.read_bytes() == source.read_bytes(), (
        f"{copy.relative_to(REPO)} is stale: run `make chart-sync`"
    )


def test_chart_dashboards_match_monitoring() -> None:
    sources = {p.name: p.read_bytes() for p in (REPO / "monitoring" / "dashboards").glob("*.json")}
    copies = {p.name: p.read_bytes() for p in (CHART / "files" / "dashboards").glob("*.json")}
    assert sources, "monitoring/dashboards has no dashboard"
    assert copies == sources, "chart dashboards are stale: run `make chart-sync`"


def test_chart_version_and_app_version_are_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == project_version()


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_use_the_image_of_this_version(example: Path) -> None:
    for doc in yaml.safe_load_all(example.read_text()):
        if doc["kind"] == "TradingSystem":
            assert doc["spec"]["image"] == f"tradingsystem:{project_version()}"


def test_live_example_carries_the_acknowledgement() -> None:
    spec = yaml.safe_load((EXAMPLES / "live.yaml").read_text())["spec"]
    assert spec["mode"] == "live"
    assert spec["liveAcknowledgement"] == LIVE_CONFIRMATION
    assert spec["halted"] is True  # a live system starts with the kill switch on
    # A replaced pod keeps the order outbox and the risk state: both on claims, not emptyDirs.
    assert spec["executionEngine"]["storage"] == spec["riskManager"]["storage"] == "persistentVolumeClaim"


# --- lint and template --------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *GOOD_VALUES], ids=lambda p: p.name if p else "defaults")
def test_helm_lint_strict(helm: Helm, values: Path | None) -> None:
    args = ["-f", str(values)] if values else []
    result = helm.run("lint", "--strict", str(CHART), *KUBE, *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_defaults_bind_the_operators_rules_in_the_release_namespace_only(helm: Helm) -> None:
    objs = helm.template(*KUBE, namespace="desk")
    role, binding = operator_role(objs), one(objs, "RoleBinding")
    assert role["rules"] == operator_rules(RBAC_SOURCE)
    assert binding["metadata"]["namespace"] == "desk"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = one(objs, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": "desk"}]
    assert not by_kind(objs, "ClusterRoleBinding") and not by_kind(objs, "Role")
    assert "--namespace=desk" in container(objs)["args"]
    assert "--all-namespaces" not in container(objs)["args"]


def test_rules_name_only_namespaced_resources() -> None:
    # What makes a RoleBinding enough: nothing cluster-scoped is ever needed.
    cluster_scoped = {
        "nodes",
        "namespaces",
        "clusterroles",
        "clusterrolebindings",
        "customresourcedefinitions",
    }
    for rule in operator_rules(RBAC_SOURCE):
        assert not cluster_scoped & set(rule["resources"]), rule
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule


def test_operator_deployment_is_single_replica_recreate_non_root(helm: Helm) -> None:
    objs = helm.template(*KUBE)
    deploy = one(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(objs, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = container(objs)
    assert c["image"] == f"tradingsystem:{project_version()}"
    assert c["command"] == ["tradingsystem-operator"] and c["args"][0] == "run"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert f"--metrics-port={ports['metrics']}" in c["args"]
    assert f"--liveness=http://0.0.0.0:{ports['health']}/healthz" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert not by_kind(objs, "ServiceMonitor") and not by_kind(objs, "ConfigMap")


def test_high_availability_runs_two_replicas_behind_a_lease_that_only_a_role_in_the_release_namespace_grants(
    helm: Helm,
) -> None:
    objs = helm.template(*KUBE, "-f", str(VALUES / "high-availability.yaml"), namespace="ops")
    deploy = one(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    # The standby is Ready, so a rollout replaces one pod at a time and the Lease hands over.
    assert deploy["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    args = build_parser().parse_args(container(objs)["args"])
    fullname = deploy["metadata"]["name"]
    assert args.leader_elect and args.leader_election_id == fullname
    assert (args.lease_duration, args.renew_deadline, args.retry_period) == (8, 6, 2)
    # The Lease's namespace is the pod's own ($POD_NAMESPACE, the flag's default).
    assert {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in container(objs)["env"]
    [role] = by_kind(objs, "Role")
    [source] = [d for d in yaml.safe_load_all(RBAC_SOURCE.read_text()) if d["kind"] == "Role"]
    assert role["rules"] == source["rules"] and role["metadata"]["namespace"] == "ops"
    [binding] = [b for b in by_kind(objs, "RoleBinding") if b["roleRef"]["kind"] == "Role"]
    assert binding["metadata"]["namespace"] == "ops"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    sa = one(objs, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "ops"}]


def test_one_replica_with_leader_election_rolls_without_a_gap(helm: Helm) -> None:
    objs = helm.template(*KUBE, "--set", "leaderElection.enabled=true")
    assert one(objs, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--leader-elect" in container(objs)["args"] and by_kind(objs, "Role")


def test_crds_are_installed_from_the_chart(helm: Helm) -> None:
    crd = one(helm.template(*KUBE), "CustomResourceDefinition")
    assert crd == yaml.safe_load((REPO / "crds" / "tradingsystems.yaml").read_text())


def test_cluster_wide_binds_the_same_rules_everywhere(helm: Helm) -> None:
    objs = helm.template(*KUBE, "-f", str(VALUES / "cluster-wide.yaml"))
    assert not by_kind(objs, "RoleBinding")
    role, binding = operator_role(objs), one(objs, "ClusterRoleBinding")
    assert role["rules"] == operator_rules(RBAC_SOURCE)
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["kind"] == "ServiceAccount"
    args = container(objs)["args"]
    assert "--all-namespaces" in args and not any(a.startswith("--namespace") for a in args)


def test_each_watched_namespace_gets_a_role_binding(helm: Helm) -> None:
    objs = helm.template(*KUBE, "-f", str(VALUES / "multi-namespace.yaml"), namespace="ops")
    bindings = by_kind(objs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["trading-a", "trading-b"]
    for binding in by_kind(objs, "RoleBinding"):
        assert binding["subjects"][0]["namespace"] == "ops"  # the ServiceAccount lives with the operator
    args = container(objs)["args"]
    assert "--namespace=trading-a" in args and "--namespace=trading-b" in args


def test_monitoring_values_render_service_monitor_and_dashboards(helm: Helm) -> None:
    objs = helm.template(*KUBE, "-f", str(VALUES / "monitoring.yaml"))
    sm = one(objs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one(objs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    dashboards = by_kind(objs, "ConfigMap")
    expected = {p.name for p in (CHART / "files" / "dashboards").glob("*.json")}
    assert {name for cm in dashboards for name in cm["data"]} == expected
    for cm in dashboards:
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "Trading"}
    assert container(objs)["image"] == "ghcr.io/acme/tradingsystem@sha256:" + "0123456789abcdef" * 4


def test_monitoring_on_renders_the_operators_alerts_once_with_the_service_monitors_labels(helm: Helm) -> None:
    objs = helm.template(*KUBE, "-f", str(VALUES / "monitoring.yaml"), namespace="ops")
    rule = one(objs, "PrometheusRule")
    assert rule["metadata"]["namespace"] == "ops"
    assert rule["metadata"]["labels"] == one(objs, "ServiceMonitor")["metadata"]["labels"]
    assert rule["spec"] == yaml.safe_load(OPERATOR_RULES_SOURCE.read_text())


def test_monitoring_off_renders_no_prometheus_rule(helm: Helm) -> None:
    assert by_kind(helm.template(*KUBE, "--set", "grafanaDashboards.enabled=true"), "PrometheusRule") == []


def test_dashboard_configmaps_carry_the_sidecar_label_and_a_folder_by_default(helm: Helm) -> None:
    objs = helm.template(*KUBE, "--set", "grafanaDashboards.enabled=true")
    dashboards = by_kind(objs, "ConfigMap")
    assert len(dashboards) == len(list((CHART / "files" / "dashboards").glob("*.json"))) == 3
    for cm in dashboards:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "TradingSystem"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("bad-type.yaml", "at '/rbac/clusterWide': got string, want boolean"),
        ("bad-typo.yaml", "additional properties 'watchNamespace' not allowed"),
        ("bad-namespace.yaml", "at '/watchNamespaces/0': 'Trading_Desk' does not match pattern"),
        ("bad-replicas.yaml", "at '/leaderElection/enabled': value must be true"),
    ],
)
def test_schema_rejects_bad_values_readably(helm: Helm, values: str, message: str) -> None:
    result = helm.run("template", "ts", str(CHART), *KUBE, "-f", str(VALUES / values), check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("values", [None, *GOOD_VALUES], ids=lambda p: p.name if p else "defaults")
def test_operator_cli_accepts_the_charts_arguments(helm: Helm, values: Path | None) -> None:
    # The chart and the operator's CLI are written apart; a renamed flag must fail here, not in a pod.
    objs = helm.template(*KUBE, *(["-f", str(values)] if values else []))
    c = container(objs)
    assert c["command"] == ["tradingsystem-operator"]
    args = build_parser().parse_args(c["args"])
    assert args.command == "run"
    assert args.all_namespaces or args.namespace


def test_pods_run_as_the_images_user(helm: Helm, dockerfile: Dockerfile) -> None:
    # The operator's pod (chart) and the pods it creates (render.py) use the image's numeric USER.
    uid = int(dockerfile.stage("runtime").all("USER")[-1].value.partition(":")[0])
    pod = one(helm.template(*KUBE), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == RUN_AS == uid


def test_packaged_chart_carries_crd_rules_dashboards_and_examples(helm: Helm, tmp_path: Path) -> None:
    helm.run("package", str(CHART), "--destination", str(tmp_path))
    [package] = tmp_path.glob("*.tgz")
    assert package.name == f"tradingsystem-operator-{project_version()}.tgz"
    with tarfile.open(package) as tar:
        names = {n.removeprefix("tradingsystem-operator/") for n in tar.getnames()}
    expected = {"crds/tradingsystems.yaml", "files/rbac.yaml", "values.schema.json", "templates/NOTES.txt"}
    expected |= {"files/rules/operator.rules.yaml"}
    expected |= {f"examples/{n}" for n in ("sim.yaml", "paper.yaml", "paper-secret.yaml")}
    expected |= {f"files/dashboards/{p.name}" for p in (CHART / "files" / "dashboards").glob("*.json")}
    assert expected <= names, expected - names


# --- roles for users (aggregated) ------------------------------------------------------------------

TS_WRITE = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]


def test_user_roles_aggregate_tradingsystem_rights_into_admin_edit_and_view(helm: Helm) -> None:
    roles = {
        r["metadata"]["name"].rsplit("-", 1)[1]: r for r in user_roles(helm.template(*KUBE, namespace="desk"))
    }
    assert sorted(roles) == ["edit", "view"]
    edit_labels, view_labels = roles["edit"]["metadata"]["labels"], roles["view"]["metadata"]["labels"]
    assert {k for k in edit_labels if k.startswith(AGGREGATE)} == {f"{AGGREGATE}admin", f"{AGGREGATE}edit"}
    assert {k for k in view_labels if k.startswith(AGGREGATE)} == {f"{AGGREGATE}view"}
    assert roles["edit"]["rules"] == [
        {"apiGroups": ["tradingsystem.dev"], "resources": ["tradingsystems"], "verbs": TS_WRITE},
        {"apiGroups": ["tradingsystem.dev"], "resources": ["tradingsystems/status"], "verbs": ["get"]},
    ]
    assert roles["view"]["rules"] == [
        {
            "apiGroups": ["tradingsystem.dev"],
            "resources": ["tradingsystems", "tradingsystems/status"],
            "verbs": ["get", "list", "watch"],
        }
    ]


def test_user_roles_can_be_left_out(helm: Helm) -> None:
    assert not user_roles(helm.template(*KUBE, "--set", "rbac.aggregateToUserRoles=false"))
