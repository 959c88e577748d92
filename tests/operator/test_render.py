"""render.py: spec + observations -> manifests (pure)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradingsystem.common.config import (
    LIVE_CONFIRMATION,
    AccountType,
    SessionModel,
    Settings,
    SimSettings,
    load_settings,
)
from tradingsystem_operator.models import TradingSystemSpec
from tradingsystem_operator.render import HASH_ANNOTATION, Inputs, Observed, Owner, render
from tradingsystem_operator.rules import SYSTEM_LABEL

REPO = Path(__file__).resolve().parents[2]

OWNER = Owner(name="demo", namespace="trading", uid="0b7c2a4e-1111-2222-3333-444455556666")
ALL_UP = Observed(
    available=dict.fromkeys(("sim", "market-data", "signal-bridge", "risk-manager", "execution-engine"), 1)
)


def make_spec(**overrides: Any) -> TradingSystemSpec:
    body: dict[str, Any] = {"image": "ghcr.io/example/tradingsystem:0.1.0", "symbols": ["AAPL", "MSFT"]}
    return TradingSystemSpec.model_validate({**body, **overrides})


def make_inputs(spec: TradingSystemSpec | None = None, **kw: Any) -> Inputs:
    return Inputs(owner=OWNER, spec=spec or make_spec(), **kw)


CREDS = {"secretName": "alpaca", "apiKeyKey": "KEY", "secretKeyKey": "SECRET"}
COMMON_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
}


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def deployments(**kw: Any) -> dict[str, dict[str, Any]]:
    return by_kind(render(make_inputs(**kw)).manifests, "Deployment")


def config_of(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    cm = by_kind(manifests, "ConfigMap")["demo-config"]
    return dict(yaml.safe_load(cm["data"]["config.yaml"]))


def pod_hash(dep: dict[str, Any]) -> str:
    return str(dep["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION])


def test_every_child_is_owned_and_labelled() -> None:
    out = render(
        make_inputs(
            observed=ALL_UP,
            service_monitor_crd=True,
            prometheus_rule_crd=True,
            rule_groups=({"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}]},),
        )
    )
    kinds = {m["kind"] for m in out.manifests}
    assert kinds == {
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    }
    for m in out.manifests:
        meta = m["metadata"]
        assert meta["namespace"] == "trading"
        assert meta["labels"].keys() >= COMMON_LABELS
        (ref,) = meta["ownerReferences"]
        assert ref == {
            "apiVersion": "tradingsystem.dev/v1alpha1",
            "kind": "TradingSystem",
            "name": "demo",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_sim_mode_runs_the_simulator_and_paper_does_not() -> None:
    assert set(deployments()) == {
        "demo-sim",
        "demo-market-data",
        "demo-signal-bridge",
        "demo-risk-manager",
        "demo-execution-engine",
    }
    paper = make_spec(mode="paper", credentials=CREDS)
    assert "demo-sim" not in deployments(spec=paper)
    sim = deployments()["demo-sim"]["spec"]["template"]["spec"]["containers"][0]
    assert sim["args"] == ["sim", "--config", "/etc/tradingsystem/config.yaml", "--host", "0.0.0.0"]


def test_services_expose_zmq_and_metrics_ports() -> None:
    services = by_kind(render(make_inputs()).manifests, "Service")
    ports = {name: {p["name"]: p["port"] for p in s["spec"]["ports"]} for name, s in services.items()}
    assert ports == {
        "demo-market-data": {"zmq": 5555, "metrics": 8081},
        "demo-signal-bridge": {"zmq": 5556, "metrics": 8082},
        "demo-risk-manager": {"zmq": 5557, "metrics": 8083, "control": 8093},
        "demo-execution-engine": {"zmq": 5558, "metrics": 8084},
        "demo-sim": {"http": 8090},
    }


def test_config_is_a_valid_settings_document_for_the_cluster() -> None:
    spec = make_spec(
        mode="live",
        liveAcknowledgement=LIVE_CONFIRMATION,
        credentials=CREDS,
        riskManager={"limits": {"maxOrderQty": 7, "orderQty": 3}},
        signalBridge={"strategy": "ma_crossover", "params": {"fast": 5, "slow": 20.5}},
    )
    cfg = config_of(render(make_inputs(spec=spec)).manifests)
    settings = Settings.model_validate(
        {**cfg, "alpaca": {**cfg["alpaca"], "api_key": "k", "secret_key": "s"}}
    )
    assert settings.bus.bind_host == "0.0.0.0"
    assert settings.bus.market_data == "tcp://demo-market-data:5555"
    assert settings.bus.execution == "tcp://demo-execution-engine:5558"
    assert settings.risk.max_order_qty == 7 and settings.risk.order_qty == 3 and settings.risk.halted is False
    assert settings.signals.params == {"fast": 5, "slow": 20.5}
    assert settings.sim.host == "demo-sim" and settings.sim.port == 8090
    assert str(settings.execution.db_path).startswith("/var/lib/tradingsystem/")


def test_the_simulators_account_and_session_settings_reach_its_config() -> None:
    sim = {
        "accountType": "cash",
        "multiplier": 1,
        "hardToBorrow": ["GME"],
        "session": "regular",
        "startAt": "2026-12-07T14:25:00Z",
    }
    settings = Settings.model_validate(config_of(render(make_inputs(spec=make_spec(sim=sim))).manifests)).sim
    assert (settings.account_type, settings.effective_multiplier) == (AccountType.CASH, 1)
    assert settings.hard_to_borrow == ["GME"] and settings.session is SessionModel.REGULAR
    assert settings.start_at == datetime(2026, 12, 7, 14, 25, tzinfo=UTC)


def test_unset_simulator_settings_keep_the_simulators_defaults() -> None:
    settings = Settings.model_validate(config_of(render(make_inputs()).manifests)).sim
    defaults = SimSettings()
    assert (settings.account_type, settings.multiplier, settings.session) == (
        defaults.account_type,
        defaults.multiplier,
        defaults.session,
    )
    assert settings.start_at is None and settings.hard_to_borrow == []


def test_credentials_only_as_secret_key_refs() -> None:
    spec = make_spec(mode="paper", credentials=CREDS)
    out = render(make_inputs(spec=spec, secret_hash="abc"))
    env = {
        n: d["spec"]["template"]["spec"]["containers"][0]["env"]
        for n, d in by_kind(out.manifests, "Deployment").items()
    }
    assert env["demo-execution-engine"] == [
        {"name": "ALPACA_API_KEY", "valueFrom": {"secretKeyRef": {"name": "alpaca", "key": "KEY"}}},
        {"name": "ALPACA_SECRET_KEY", "valueFrom": {"secretKeyRef": {"name": "alpaca", "key": "SECRET"}}},
    ]
    assert env["demo-risk-manager"] == env["demo-execution-engine"]  # it reads the broker's positions
    assert not {"api_key", "secret_key"} & config_of(out.manifests)["alpaca"].keys()


def test_in_paper_mode_every_service_loads_its_config_with_its_pod_env_even_halted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = render(make_inputs(spec=make_spec(mode="paper", credentials=CREDS, halted=True)))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_of(out.manifests)))
    for name, dep in by_kind(out.manifests, "Deployment").items():
        with monkeypatch.context() as m:
            for var in dep["spec"]["template"]["spec"]["containers"][0]["env"]:
                m.setenv(var["name"], var.get("value", "from-the-secret"))
            settings = load_settings(config)
        assert settings.alpaca.api_key is not None, name


def test_pod_hash_rolls_on_config_or_secret_change_only() -> None:
    base = pod_hash(deployments()["demo-market-data"])
    assert pod_hash(deployments(observed=ALL_UP)["demo-market-data"]) == base  # observations: no roll
    assert pod_hash(deployments(spec=make_spec(symbols=["AAPL"]))["demo-market-data"]) != base
    assert pod_hash(deployments(secret_hash="new")["demo-market-data"]) != base


def test_execution_engine_recreate_single_replica_and_halt() -> None:
    dep = deployments(observed=ALL_UP)["demo-execution-engine"]
    assert dep["spec"]["strategy"] == {"type": "Recreate"} and dep["spec"]["replicas"] == 1
    halted = make_spec(halted=True)
    out = render(make_inputs(spec=halted, observed=ALL_UP))
    assert by_kind(out.manifests, "Deployment")["demo-execution-engine"]["spec"]["replicas"] == 0
    assert by_kind(out.manifests, "Deployment")["demo-risk-manager"]["spec"]["replicas"] == 1
    deps = by_kind(out.manifests, "Deployment")
    risk_env = deps["demo-risk-manager"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "TS_RISK__HALTED", "value": "true"} in risk_env
    assert Settings.model_validate(config_of(out.manifests)).risk.halted is False  # only via env
    # Only the risk-manager's pod template changes: no other service rolls on halt.
    before = deployments(observed=ALL_UP)
    for name, dep in deps.items():
        same = dep["spec"]["template"] == before[name]["spec"]["template"]
        assert same is (name != "demo-risk-manager"), name


def test_startup_gate_starts_the_simulator_then_consumers_first() -> None:
    out = render(make_inputs())
    replicas = {n: d["spec"]["replicas"] for n, d in by_kind(out.manifests, "Deployment").items()}
    assert replicas == {
        "demo-sim": 1,
        "demo-execution-engine": 0,
        "demo-risk-manager": 0,
        "demo-market-data": 0,
        "demo-signal-bridge": 0,
    }
    assert out.waiting_on == {
        "execution-engine": "sim",
        "risk-manager": "execution-engine",
        "market-data": "risk-manager",
        "signal-bridge": "market-data",
    }
    step = render(make_inputs(observed=Observed(available={"sim": 1, "execution-engine": 1})))
    assert step.waiting_on == {"market-data": "risk-manager", "signal-bridge": "market-data"}
    assert step.desired["signal-bridge"] == 1


def test_running_downstream_is_not_scaled_down_when_upstream_blips() -> None:
    observed = Observed(available={"sim": 1}, replicas={"signal-bridge": 1})
    out = render(make_inputs(observed=observed))
    assert "signal-bridge" not in out.waiting_on
    assert by_kind(out.manifests, "Deployment")["demo-signal-bridge"]["spec"]["replicas"] == 1


def test_paper_mode_gate_starts_at_the_execution_engine() -> None:
    out = render(make_inputs(spec=make_spec(mode="paper", credentials=CREDS)))
    assert "execution-engine" not in out.waiting_on and out.waiting_on["risk-manager"] == "execution-engine"


def test_a_halted_system_still_starts_its_risk_manager_after_the_simulator() -> None:
    out = render(make_inputs(spec=make_spec(halted=True), observed=Observed(available={"sim": 1})))
    assert "risk-manager" not in out.waiting_on
    assert by_kind(out.manifests, "Deployment")["demo-risk-manager"]["spec"]["replicas"] == 1


def test_pod_security() -> None:
    for name, dep in deployments().items():
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (c,) = pod["containers"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}, name
        assert sc["allowPrivilegeEscalation"] is False
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["readinessProbe"]["periodSeconds"] == 1  # a replaced pod rejoins its Service at once
    mounts = {
        m["mountPath"]
        for m in deployments()["demo-execution-engine"]["spec"]["template"]["spec"]["containers"][0][
            "volumeMounts"
        ]
    }
    assert "/var/lib/tradingsystem" in mounts


def test_pvc_storage_option() -> None:
    spec = make_spec(executionEngine={"storage": "persistentVolumeClaim", "storageSize": "5Gi"})
    out = render(make_inputs(spec=spec))
    (pvc,) = by_kind(out.manifests, "PersistentVolumeClaim").values()
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    vols = by_kind(out.manifests, "Deployment")["demo-execution-engine"]["spec"]["template"]["spec"][
        "volumes"
    ]
    assert {"name": "state", "persistentVolumeClaim": {"claimName": "demo-state"}} in vols


def pod_of(out: Any, service: str) -> dict[str, Any]:
    return dict(by_kind(out.manifests, "Deployment")[f"demo-{service}"]["spec"]["template"]["spec"])


def writable_mount(pod: dict[str, Any], path: Path) -> dict[str, Any]:
    """The volume mounted read-write over ``path`` in the pod's one container."""
    (c,) = pod["containers"]
    (mount,) = (m for m in c["volumeMounts"] if path.is_relative_to(m["mountPath"]) and not m.get("readOnly"))
    (volume,) = (v for v in pod["volumes"] if v["name"] == mount["name"])
    return dict(volume)


def test_the_risk_and_execution_state_files_live_on_a_volume_of_their_own_pod() -> None:
    out = render(make_inputs())
    settings = Settings.model_validate(config_of(out.manifests))
    assert settings.risk.state_path == Path("/var/lib/tradingsystem/risk.sqlite")
    assert writable_mount(pod_of(out, "risk-manager"), settings.risk.state_path) == {
        "name": "state",
        "emptyDir": {},
    }
    assert writable_mount(pod_of(out, "execution-engine"), settings.execution.db_path)["emptyDir"] == {}
    assert not by_kind(out.manifests, "PersistentVolumeClaim")


def test_a_risk_manager_on_a_claim_gets_a_claim_of_its_own_and_is_recreated_not_rolled() -> None:
    spec = make_spec(riskManager={"storage": "persistentVolumeClaim", "storageSize": "2Gi"})
    out = render(make_inputs(spec=spec))
    (pvc,) = by_kind(out.manifests, "PersistentVolumeClaim").values()
    assert pvc["metadata"]["name"] == "demo-risk-manager-state"
    assert pvc["metadata"]["labels"]["app.kubernetes.io/component"] == "risk-manager"
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}
    state = Settings.model_validate(config_of(out.manifests)).risk.state_path
    assert writable_mount(pod_of(out, "risk-manager"), state) == {
        "name": "state",
        "persistentVolumeClaim": {"claimName": "demo-risk-manager-state"},
    }
    deps = by_kind(out.manifests, "Deployment")
    assert deps["demo-risk-manager"]["spec"]["strategy"] == {"type": "Recreate"}  # one writer
    assert deps["demo-market-data"]["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert deployments()["demo-risk-manager"]["spec"]["strategy"] == {"type": "RollingUpdate"}  # emptyDir


def test_risk_and_execution_on_claims_never_share_one() -> None:
    on_claim = {"storage": "persistentVolumeClaim"}
    out = render(make_inputs(spec=make_spec(riskManager=on_claim, executionEngine=on_claim)))
    assert sorted(by_kind(out.manifests, "PersistentVolumeClaim")) == [
        "demo-risk-manager-state",
        "demo-state",
    ]
    claims = {
        svc: writable_mount(pod_of(out, svc), Path("/var/lib/tradingsystem/x"))["persistentVolumeClaim"]
        for svc in ("risk-manager", "execution-engine")
    }
    assert claims == {
        "risk-manager": {"claimName": "demo-risk-manager-state"},
        "execution-engine": {"claimName": "demo-state"},
    }


def test_network_policies_admit_only_neighbours_on_zmq() -> None:
    policies = by_kind(render(make_inputs()).manifests, "NetworkPolicy")
    risk = policies["demo-risk-manager"]["spec"]["ingress"]
    zmq = next(r for r in risk if r["ports"] == [{"port": 5557, "protocol": "TCP"}])
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in zmq["from"]] == [
        "execution-engine"
    ]
    assert [r["ports"] for r in risk] == [
        [{"port": 8083, "protocol": "TCP"}],  # metrics: scrapers only (test_render_security.py)
        [{"port": 5557, "protocol": "TCP"}],
        [{"port": 8093, "protocol": "TCP"}],  # control: the operator only
    ]
    off = make_spec(security={"networkPolicy": False})
    assert not by_kind(render(make_inputs(spec=off)).manifests, "NetworkPolicy")


def test_curve_keys_mounted_and_enabled_in_config() -> None:
    spec = make_spec(security={"curve": {"enabled": True, "keysSecret": "zmq-keys"}})
    out = render(make_inputs(spec=spec))
    assert config_of(out.manifests)["bus"]["curve"] == {
        "enabled": True,
        "keys_dir": "/var/run/tradingsystem/curve",
    }
    vols = by_kind(out.manifests, "Deployment")["demo-risk-manager"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "curve", "secret": {"secretName": "zmq-keys", "defaultMode": 0o440}} in vols


def test_monitoring_objects_only_when_crds_exist_and_enabled() -> None:
    groups = ({"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}]},)
    kinds = lambda inp: {m["kind"] for m in render(inp).manifests}  # noqa: E731
    assert not {"ServiceMonitor", "PrometheusRule"} & kinds(make_inputs(rule_groups=groups))
    both = make_inputs(
        service_monitor_crd=True,
        prometheus_rule_crd=True,
        rule_groups=groups,
        spec=make_spec(monitoring={"labels": {"release": "kps"}}),
    )
    out = by_kind(render(both).manifests, "ServiceMonitor")["demo-metrics"]
    assert out["metadata"]["labels"]["release"] == "kps"
    endpoint = out["spec"]["endpoints"][0]
    assert endpoint["port"] == "metrics"
    assert endpoint["honorLabels"] is True, "the metrics' own `service` label must survive the scrape"

    rule = by_kind(render(both).manifests, "PrometheusRule")["demo-rules"]
    (scoped_rule,) = rule["spec"]["groups"][0]["rules"]
    assert scoped_rule == {"alert": "A", "expr": 'up{namespace="trading",tradingsystem="demo"} == 0'}
    off = dataclasses.replace(
        both, spec=make_spec(monitoring={"serviceMonitor": False, "prometheusRule": False})
    )
    assert not {"ServiceMonitor", "PrometheusRule"} & kinds(off)


def test_service_monitor_job_names_match_the_static_scrape_config() -> None:
    """Alert rules select job="tradingsystem-<service>": on Kubernetes and off it alike."""
    inp = make_inputs(service_monitor_crd=True, prometheus_rule_crd=False, rule_groups=())
    sm = by_kind(render(inp).manifests, "ServiceMonitor")["demo-metrics"]
    (relabel,) = [r for r in sm["spec"]["endpoints"][0]["relabelings"] if r["targetLabel"] == "job"]
    components = sm["spec"]["selector"]["matchExpressions"][0]["values"]
    k8s_jobs = {relabel["replacement"].replace("$1", c) for c in components}
    static = yaml.safe_load((REPO / "monitoring/prometheus/prometheus.yml").read_text())
    static_jobs = {j["job_name"] for j in static["scrape_configs"]}
    assert k8s_jobs == static_jobs


def test_render_is_deterministic() -> None:
    assert render(make_inputs(observed=ALL_UP)).manifests == render(make_inputs(observed=ALL_UP)).manifests


def test_service_monitor_labels_every_series_with_its_tradingsystem_as_the_scoped_rules_select() -> None:
    inp = make_inputs(service_monitor_crd=True, prometheus_rule_crd=False, rule_groups=())
    sm = by_kind(render(inp).manifests, "ServiceMonitor")["demo-metrics"]
    relabels = sm["spec"]["endpoints"][0]["relabelings"]
    assert {
        "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_instance"],
        "targetLabel": SYSTEM_LABEL,
    } in relabels
    services = [m for m in render(inp).manifests if m["kind"] == "Service"]
    assert all(s["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo" for s in services)
