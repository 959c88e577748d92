"""The chart on the real control plane: its rendering server-side applied, the examples accepted
by --dry-run=server, and the operator's RBAC proven sufficient (the operator, logged in with the
chart's ServiceAccount token, reconciles the sim example) and minimal (what it must not do is
refused). No kubectl needed: every call goes to the API server directly."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradingsystem_testing import eventually
from tradingsystem_testing.controlplane import ControlPlane
from tradingsystem_testing.process import operator_process

from .conftest import CHART, EXAMPLES, Helm, operator_rules
from .test_chart import VALUES

RELEASE = "ts"
# Cluster-scoped kinds the chart or the examples can contain; everything else is namespaced.
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}


def resource_path(obj: dict[str, Any], namespace: str) -> str:
    api_version, kind = obj["apiVersion"], obj["kind"]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    scope = "" if kind in CLUSTER_SCOPED else f"/namespaces/{obj['metadata'].get('namespace', namespace)}"
    return f"{base}{scope}/{kind.lower()}s/{obj['metadata']['name']}"


def server_side_apply(cp: ControlPlane, obj: dict[str, Any], namespace: str, *, dry_run: bool = False) -> Any:
    query = "fieldManager=helm-chart-test&force=true" + ("&dryRun=All" if dry_run else "")
    status, body = cp.request(
        "PATCH", f"{resource_path(obj, namespace)}?{query}", obj, content_type="application/apply-patch+yaml"
    )
    assert status in (200, 201), f"apply {obj['kind']}/{obj['metadata']['name']}: {status} {body}"
    return body


def create_namespace(cp: ControlPlane, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    status, body = cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    return name


@dataclass
class Install:
    namespace: str
    service_account: str
    objects: list[dict[str, Any]]

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def can(
    cp: ControlPlane, install: Install, verb: str, group: str, resource: str, namespace: str | None
) -> bool:
    """`kubectl auth can-i --as=<the chart's ServiceAccount>`: a SubjectAccessReview for it."""
    plural, _, sub = resource.partition("/")
    attrs = {"verb": verb, "group": group, "resource": plural, "subresource": sub}
    if namespace:
        attrs["namespace"] = namespace
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": install.user,
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{install.namespace}",
                "system:authenticated",
            ],
            "resourceAttributes": attrs,
        },
    }
    status, body = cp.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert status == 201, body
    return bool(body["status"].get("allowed"))


def install_rendered(cp: ControlPlane, helm: Helm, namespace: str, *values: str) -> Install:
    objs = helm.template("--kube-version", "1.34.4", *values, namespace=namespace)
    crds = [o for o in objs if o["kind"] == "CustomResourceDefinition"]
    for crd in crds:
        server_side_apply(cp, crd, namespace)
        cp.wait_crd_established(crd["metadata"]["name"], timeout=30)
    for obj in objs:
        if obj["kind"] != "CustomResourceDefinition":
            server_side_apply(cp, obj, namespace)
    sa = next(o for o in objs if o["kind"] == "ServiceAccount")
    return Install(namespace, sa["metadata"]["name"], objs)


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane, kubeconfig: Path, helm: Helm) -> Install:
    """The chart with default values, server-side applied into a fresh namespace."""
    return install_rendered(control_plane, helm, create_namespace(control_plane, "dlv"))


def test_rendered_chart_is_live_on_the_server(control_plane: ControlPlane, installed: Install) -> None:
    for obj in installed.objects:
        status, live = control_plane.request("GET", resource_path(obj, installed.namespace))
        assert status == 200, f"{obj['kind']}/{obj['metadata']['name']} missing: {live}"


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_pass_server_dry_run(control_plane: ControlPlane, installed: Install, example: Path) -> None:
    for doc in yaml.safe_load_all(example.read_text()):
        server_side_apply(control_plane, doc, installed.namespace, dry_run=True)


def test_live_without_acknowledgement_is_refused(control_plane: ControlPlane, installed: Install) -> None:
    live = yaml.safe_load((EXAMPLES / "live.yaml").read_text())
    del live["spec"]["liveAcknowledgement"]
    path = resource_path(live, installed.namespace) + "?fieldManager=t&dryRun=All"
    status, body = control_plane.request("PATCH", path, live, content_type="application/apply-patch+yaml")
    assert status == 422
    assert "liveAcknowledgement" in body["message"]


def test_helm_install_against_the_server_prints_next_steps(
    control_plane: ControlPlane, kubeconfig: Path, helm: Helm
) -> None:
    namespace = create_namespace(control_plane, "dlv-helm")
    result = helm.run(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--kubeconfig",
        str(kubeconfig),
        "--dry-run=server",
    )
    assert "NOTES:" in result.stdout
    assert f"kubectl -n {namespace} apply -f examples/sim.yaml" in result.stdout
    assert "create secret generic alpaca-paper" in result.stdout


def _rule_checks() -> list[tuple[str, str, str]]:
    return [
        (verb, group, resource)
        for rule in operator_rules()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]


def test_service_account_may_do_everything_the_operator_needs(
    control_plane: ControlPlane, installed: Install
) -> None:
    denied = [
        check
        for check in _rule_checks()
        if not can(control_plane, installed, *check, namespace=installed.namespace)
    ]
    assert not denied, f"{installed.user} lacks {denied}"


@pytest.mark.parametrize(
    ("verb", "group", "resource", "where"),
    [
        ("delete", "", "nodes", None),
        ("create", "rbac.authorization.k8s.io", "clusterroles", None),
        ("create", "rbac.authorization.k8s.io", "roles", "own"),  # no privilege escalation path
        ("create", "", "pods", "own"),  # pods only through Deployments
        # Secrets: read, watched, and created/patched (owned ones only), never updated or deleted.
        ("update", "", "secrets", "own"),
        ("delete", "", "secrets", "own"),
        ("create", "", "secrets", "other"),  # only in the namespaces it manages
        ("list", "", "secrets", "other"),
        ("watch", "", "secrets", "other"),
        ("get", "", "secrets", "other"),
        ("list", "tradingsystem.dev", "tradingsystems", "other"),
        ("create", "apps", "deployments", "other"),
        ("delete", "tradingsystem.dev", "tradingsystems", "own"),  # users own their TradingSystems
    ],
)
def test_service_account_is_refused_what_it_does_not_need(
    control_plane: ControlPlane, installed: Install, verb: str, group: str, resource: str, where: str | None
) -> None:
    namespace = {"own": installed.namespace, "other": "default", None: None}[where]
    assert not can(control_plane, installed, verb, group, resource, namespace)


def test_cluster_wide_install_reaches_every_namespace_but_no_further(
    control_plane: ControlPlane, kubeconfig: Path, helm: Helm
) -> None:
    namespace = create_namespace(control_plane, "dlv-cw")
    install = install_rendered(
        control_plane, helm, namespace, "--set", "rbac.clusterWide=true,fullnameOverride=cw"
    )
    assert can(control_plane, install, "watch", "tradingsystem.dev", "tradingsystems", "default")
    assert can(control_plane, install, "patch", "apps", "deployments", "kube-public")
    assert not can(control_plane, install, "create", "rbac.authorization.k8s.io", "clusterrolebindings", None)
    assert not can(control_plane, install, "delete", "", "namespaces", None)


# --- the operator itself, logged in as the chart's ServiceAccount ----------------------------------


def service_account_kubeconfig(cp: ControlPlane, install: Install, path: Path) -> Path:
    """A kubeconfig holding a real token of the chart's ServiceAccount (TokenRequest API)."""
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    status, body = cp.request(
        "POST",
        f"/api/v1/namespaces/{install.namespace}/serviceaccounts/{install.service_account}/token",
        request,
    )
    assert status == 201, body
    assert cp.certs is not None
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": cp.server, "certificate-authority": str(cp.certs.ca_cert)}}
        ],
        "users": [{"name": "operator", "user": {"token": body["status"]["token"]}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_operator_reconciles_sim_example_with_the_charts_service_account(
    control_plane: ControlPlane, installed: Install, tmp_path: Path
) -> None:
    cp, ns = control_plane, installed.namespace
    sim = yaml.safe_load((EXAMPLES / "sim.yaml").read_text())
    ts_path = resource_path(sim, ns)
    log = tmp_path / "operator.log"

    def deployments() -> list[str]:
        status, body = cp.request(
            "GET",
            f"/apis/apps/v1/namespaces/{ns}/deployments?labelSelector=app.kubernetes.io/managed-by%3Dtradingsystem-operator",
        )
        assert status == 200, body
        return [d["metadata"]["name"] for d in body["items"]]

    def reconciled() -> bool:
        status, ts = cp.request("GET", ts_path)
        # A pass that hit a transient API error (e.g. 429 while a new CRD's storage initialises)
        # also records observedGeneration, with a Degraded condition and no services yet: wait
        # for a pass that got through.
        st = ts.get("status", {}) if status == 200 else {}
        return st.get("observedGeneration") == ts["metadata"]["generation"] and bool(st.get("services"))

    def operator_log() -> str:
        return f"\n--- operator log:\n{log.read_text()[-4000:]}"

    kubeconfig = service_account_kubeconfig(cp, installed, tmp_path / "sa.kubeconfig")
    with operator_process(kubeconfig, ns, log, resync_s=5.0) as op:
        server_side_apply(cp, sim, ns)
        eventually(
            lambda: op.proc.poll() is not None or reconciled(),
            "the operator to reconcile the sim example",
            timeout=90,
            every=0.5,
            detail=operator_log,
        )
        assert op.proc.poll() is None, log.read_text()
        # Services start in pipeline order; without a kubelet nothing becomes available, so the
        # operator creates the first Deployment and reports the rest as waiting upstream.
        status_ = cp.request("GET", ts_path)[1]["status"]
        assert set(status_["services"]) >= {
            "market-data",
            "signal-bridge",
            "risk-manager",
            "execution-engine",
        }
        assert deployments(), "the operator created no Deployment"
        # Deleting completes (no finalizer), also with the operator under the ServiceAccount.
        status, _ = cp.request("DELETE", ts_path)
        assert status in (200, 202)
        eventually(
            lambda: cp.request("GET", ts_path)[0] == 404,
            "the TradingSystem to be gone",
            timeout=60,
            every=0.5,
            detail=operator_log,
        )
    output = log.read_text()
    assert "Forbidden" not in output, output[-4000:]


def test_high_availability_install_lets_one_of_two_operators_lead_with_only_the_charts_rights(
    control_plane: ControlPlane, kubeconfig: Path, helm: Helm, tmp_path: Path
) -> None:
    cp = control_plane
    ns = create_namespace(cp, "dlv-ha")
    install = install_rendered(cp, helm, ns, "-f", str(VALUES / "high-availability.yaml"))
    for verb in ("get", "create", "update"):
        assert can(cp, install, verb, "coordination.k8s.io", "leases", ns)
    for verb, where in (("list", ns), ("delete", ns), ("get", "default"), ("update", "kube-system")):
        assert not can(cp, install, verb, "coordination.k8s.io", "leases", where), (verb, where)

    deploy = next(o for o in install.objects if o["kind"] == "Deployment")
    election_flags = ("--leader-elect", "--lease-duration", "--renew-deadline", "--retry-period")
    container_args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    chart_args = [a for a in container_args if a.startswith(election_flags)]
    assert len(chart_args) == 5, chart_args
    # The chart's election flags; the Lease's namespace comes from $POD_NAMESPACE in a pod.
    args = [*chart_args, f"--leader-election-namespace={ns}"]
    token = service_account_kubeconfig(cp, install, tmp_path / "sa.kubeconfig")
    sim = yaml.safe_load((EXAMPLES / "sim.yaml").read_text())
    logs = [tmp_path / f"operator-{i}.log" for i in range(2)]
    with (
        operator_process(token, ns, logs[0], extra_args=args) as a,
        operator_process(token, ns, logs[1], extra_args=args) as b,
    ):
        eventually(
            lambda: (
                a.proc.poll() is not None
                or b.proc.poll() is not None
                or sorted([a.is_leader(), b.is_leader()], key=str) == [False, True]
            ),
            "one leader and one standby",
            timeout=90,
            every=0.5,
            detail=lambda: "".join(log.read_text()[-2000:] for log in logs),
        )
        assert a.proc.poll() is None and b.proc.poll() is None, "".join(
            log.read_text()[-2000:] for log in logs
        )
        server_side_apply(cp, sim, ns)
        eventually(
            lambda: (cp.request("GET", resource_path(sim, ns))[1].get("status") or {}).get("services"),
            "the leader to reconcile the sim example",
            timeout=90,
            every=0.5,
        )
        status, lease = cp.request(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{deploy['metadata']['name']}"
        )
        assert status == 200 and lease["spec"]["leaseDurationSeconds"] == 8, lease
    for log in logs:
        assert "Forbidden" not in log.read_text(), log.read_text()[-4000:]


def test_monitoring_objects_are_valid_for_the_real_crds(
    control_plane: ControlPlane, prometheus_crds: list[str], helm: Helm
) -> None:
    namespace = create_namespace(control_plane, "dlv-mon")
    grafana = create_namespace(control_plane, "dlv-grafana")
    objs = helm.template(
        "--kube-version",
        "1.34.4",
        "-f",
        str(VALUES / "monitoring.yaml"),
        "--set",
        f"grafanaDashboards.namespace={grafana},fullnameOverride=mon",
        namespace=namespace,
    )
    monitoring = [o for o in objs if o["kind"] in ("ServiceMonitor", "ConfigMap")]
    assert {o["kind"] for o in monitoring} == {"ServiceMonitor", "ConfigMap"}
    for obj in monitoring:
        server_side_apply(control_plane, obj, namespace, dry_run=True)
