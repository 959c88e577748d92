"""Pure rendering: a TradingSystem spec plus what was observed -> the child manifests. No I/O.

Children are named ``<name>-<service>``; every one carries the common labels and an
ownerReference so deleting the TradingSystem garbage-collects them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from tradingsystem_operator.models import GROUP, KIND, VERSION, TradingSystemSpec

MANAGER = "tradingsystem-operator"
CONFIG_PATH = "/etc/tradingsystem/config.yaml"
STATE_DIR = "/var/lib/tradingsystem"
CURVE_DIR = "/var/run/tradingsystem/curve"
MODEL_DIR = "/var/run/tradingsystem/model"
HASH_ANNOTATION = f"{GROUP}/config-hash"
RUN_AS = 10001


@dataclass(frozen=True)
class Service:
    name: str  # also the `tradingsystem <name>` subcommand
    bus_key: str | None  # BusSettings field of the endpoint it publishes
    zmq_port: int | None
    http_port: int
    needs_credentials: bool


MARKET_DATA = Service("market-data", "market_data", 5555, 8081, True)
SIGNAL_BRIDGE = Service("signal-bridge", "signals", 5556, 8082, True)
RISK_MANAGER = Service("risk-manager", "risk", 5557, 8083, False)
EXECUTION_ENGINE = Service("execution-engine", "execution", 5558, 8084, True)
SIM = Service("sim", None, None, 8090, False)
PIPELINE = (MARKET_DATA, SIGNAL_BRIDGE, RISK_MANAGER, EXECUTION_ENGINE)
# Who may connect to a publisher's ZMQ port (its subscribers), for the NetworkPolicy.
SUBSCRIBERS: dict[str, tuple[str, ...]] = {
    "market-data": ("signal-bridge", "risk-manager"),
    "signal-bridge": ("risk-manager",),
    "risk-manager": ("execution-engine",),
    "execution-engine": ("risk-manager",),
    "sim": ("market-data", "signal-bridge", "execution-engine"),
}


@dataclass(frozen=True)
class Owner:
    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class Observed:
    """What the cluster reported: available replicas and current spec.replicas per Deployment."""

    available: dict[str, int] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Inputs:
    owner: Owner
    spec: TradingSystemSpec
    secret_hash: str = ""  # digest of the referenced Secret's data; "" in sim mode
    observed: Observed = field(default_factory=Observed)
    service_monitor_crd: bool = False
    prometheus_rule_crd: bool = False
    rule_groups: tuple[dict[str, Any], ...] = ()


@dataclass
class Rendered:
    manifests: list[dict[str, Any]]
    desired: dict[str, int]  # replicas each Deployment should run once its gate opens
    waiting_on: dict[str, str]  # service -> upstream it waits for (gate closed)


def services(spec: TradingSystemSpec) -> tuple[Service, ...]:
    return (SIM, *PIPELINE) if spec.mode == "sim" else PIPELINE


def upstream_of(spec: TradingSystemSpec) -> dict[str, str]:
    """Ordered startup: each service waits for the previous one (market-data for the simulator)."""
    chain = [s.name for s in services(spec)]
    return dict(zip(chain[1:], chain[:-1], strict=True))


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tradingsystem",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGER,
        "app.kubernetes.io/part-of": "tradingsystem",
    }


def selector(owner: Owner, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": owner.name, "app.kubernetes.io/component": component}


def _meta(owner: Owner, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def child_name(owner: Owner, component: str) -> str:
    return f"{owner.name}-{component}"


def service_config(owner: Owner, spec: TradingSystemSpec) -> dict[str, Any]:
    """The `Settings` document every service reads from --config (credentials come from env)."""
    md, sb, rk, ex = spec.market_data, spec.signal_bridge, spec.risk_manager.limits, spec.execution_engine
    bus: dict[str, Any] = {"bind_host": "0.0.0.0"}
    for svc in PIPELINE:
        assert svc.bus_key is not None
        bus[svc.bus_key] = f"tcp://{child_name(owner, svc.name)}:{svc.zmq_port}"
    bus["curve"] = {"enabled": spec.security.curve.enabled}
    if spec.security.curve.enabled:
        bus["curve"]["keys_dir"] = CURVE_DIR
    signals: dict[str, Any] = {
        "strategy": sb.strategy,
        "params": dict(sb.params),
        "source": sb.source,
        "warmup_bars": sb.warmup_bars,
    }
    if sb.model is not None:
        signals["model_path"] = f"{MODEL_DIR}/{sb.model.key}"
    return {
        "mode": spec.mode,
        "live_confirmation": spec.live_acknowledgement,
        "symbols": list(spec.symbols),
        "log_level": spec.log_level,
        "log_format": "json",
        "alpaca": {"feed": md.feed},
        "bus": bus,
        "market_data": {
            "trades": md.trades,
            "quotes": md.quotes,
            "bars": md.bars,
            "bar_interval_s": md.bar_interval_s,
            "stale_after_s": md.stale_after_s,
        },
        "signals": signals,
        # risk.halted is not here: the kill switch reaches only the risk-manager, via its env
        # (see _env), so halting does not roll every service's pods.
        "risk": rk.model_dump(),
        "execution": {
            "db_path": f"{STATE_DIR}/execution.sqlite",
            "rate_limit_per_min": ex.rate_limit_per_min,
            "request_timeout_s": ex.request_timeout_s,
            "max_attempts": ex.max_attempts,
        },
        "sim": {
            "host": child_name(owner, "sim"),
            "port": SIM.http_port,
            "seed": spec.sim.seed,
            "tick_rate": spec.sim.tick_rate,
            "initial_cash": spec.sim.initial_cash,
        },
    }


def digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _config_map(inp: Inputs) -> dict[str, Any]:
    text = yaml.safe_dump(service_config(inp.owner, inp.spec), sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(inp.owner, child_name(inp.owner, "config"), "config"),
        "data": {"config.yaml": text},
    }


def _env(inp: Inputs, svc: Service) -> list[dict[str, Any]]:
    creds = inp.spec.credentials
    if svc is RISK_MANAGER and inp.spec.halted:
        # Kill switch: the risk-manager starts in HALT and rejects every new order, even if an
        # execution-engine were still running. Settings reads TS_<SECTION>__<FIELD> from env.
        return [{"name": "TS_RISK__HALTED", "value": "true"}]
    if inp.spec.mode == "sim" or creds is None or not svc.needs_credentials:
        return []
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": creds.secret_name, "key": key}}}
        for env, key in (("ALPACA_API_KEY", creds.api_key_key), ("ALPACA_SECRET_KEY", creds.secret_key_key))
    ]


def _volumes(inp: Inputs, svc: Service) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    owner, spec = inp.owner, inp.spec
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": child_name(owner, "config")}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": "/etc/tradingsystem", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if svc is EXECUTION_ENGINE:
        if spec.execution_engine.storage == "persistentVolumeClaim":
            state: dict[str, Any] = {"persistentVolumeClaim": {"claimName": child_name(owner, "state")}}
        else:
            state = {"emptyDir": {}}
        volumes.append({"name": "state", **state})
        mounts.append({"name": "state", "mountPath": STATE_DIR})
    if spec.security.curve.enabled and spec.security.curve.keys_secret and svc is not SIM:
        volumes.append({"name": "curve", "secret": {"secretName": spec.security.curve.keys_secret}})
        mounts.append({"name": "curve", "mountPath": CURVE_DIR, "readOnly": True})
    if svc is SIGNAL_BRIDGE and spec.signal_bridge.model is not None:
        volumes.append({"name": "model", "configMap": {"name": spec.signal_bridge.model.config_map}})
        mounts.append({"name": "model", "mountPath": MODEL_DIR, "readOnly": True})
    return volumes, mounts


def _section(spec: TradingSystemSpec, svc: Service) -> Any:
    """The service's own part of the spec (resources, scheduling, ...)."""
    sections: dict[str, Any] = {
        "market-data": spec.market_data,
        "signal-bridge": spec.signal_bridge,
        "risk-manager": spec.risk_manager,
        "execution-engine": spec.execution_engine,
        "sim": spec.sim,
    }
    return sections[svc.name]


def _resources(spec: TradingSystemSpec, svc: Service) -> dict[str, Any]:
    return dict(_section(spec, svc).resources.model_dump())


def scheduling(inp: Inputs, svc: Service) -> dict[str, Any]:
    """Pod-spec scheduling fields: each field the service sets replaces the shared default's.

    A topology spread constraint without a labelSelector counts this service's own pods.
    """
    default = inp.spec.scheduling.model_dump(by_alias=True, exclude_none=True)
    own = _section(inp.spec, svc).scheduling.model_dump(by_alias=True, exclude_none=True)
    merged: dict[str, Any] = {**default, **own}
    spread = merged.get("topologySpreadConstraints")
    if spread:
        own_pods = {"matchLabels": selector(inp.owner, svc.name)}
        merged["topologySpreadConstraints"] = [{"labelSelector": own_pods, **c} for c in spread]
    return merged


def spec_replicas(spec: TradingSystemSpec, svc: Service) -> int:
    if svc is EXECUTION_ENGINE:
        return 0 if spec.halted else 1
    if svc is SIM:
        return 1
    scalable: dict[str, Any] = {"market-data": spec.market_data, "signal-bridge": spec.signal_bridge}
    return int(scalable.get(svc.name, spec.risk_manager).replicas)


def _deployment(inp: Inputs, svc: Service, replicas: int, config_hash: str) -> dict[str, Any]:
    owner = inp.owner
    args = [svc.name, "--config", CONFIG_PATH]
    if svc is SIM:
        args += ["--host", "0.0.0.0"]
    volumes, mounts = _volumes(inp, svc)
    ports = [{"name": "metrics", "containerPort": svc.http_port}]
    if svc.zmq_port is not None:
        ports.insert(0, {"name": "zmq", "containerPort": svc.zmq_port})
    probe = {"httpGet": {"port": "metrics"}, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3}
    container = {
        "name": svc.name,
        "image": inp.spec.image,
        "imagePullPolicy": inp.spec.image_pull_policy,
        "command": ["tradingsystem"],
        "args": args,
        "env": _env(inp, svc),
        "ports": ports,
        "resources": _resources(inp.spec, svc),
        "livenessProbe": {**probe, "httpGet": {"path": "/healthz", "port": "metrics"}},
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "metrics"}},
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, child_name(owner, svc.name), svc.name),
        "spec": {
            "replicas": replicas,
            # The execution engine must never run twice (duplicate orders): Recreate, not rolling.
            "strategy": {"type": "Recreate"} if svc is EXECUTION_ENGINE else {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector(owner, svc.name)},
            "template": {
                "metadata": {
                    # Ours win a clash: the selector and the roll-on-change hash depend on them.
                    "labels": {**inp.spec.pod_labels, **labels(owner, svc.name)},
                    "annotations": {**inp.spec.pod_annotations, HASH_ANNOTATION: config_hash},
                },
                "spec": {
                    **scheduling(inp, svc),
                    **_pull_secrets(inp.spec),
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _pull_secrets(spec: TradingSystemSpec) -> dict[str, Any]:
    refs = [r.model_dump() for r in spec.image_pull_secrets]
    return {"imagePullSecrets": refs} if refs else {}


def _service(owner: Owner, svc: Service) -> dict[str, Any]:
    ports = [{"name": "metrics", "port": svc.http_port, "targetPort": "metrics"}]
    if svc is SIM:  # the simulator's one port is Alpaca's REST/websocket API
        ports = [{"name": "http", "port": svc.http_port, "targetPort": "metrics"}]
    if svc.zmq_port is not None:
        ports.insert(0, {"name": "zmq", "port": svc.zmq_port, "targetPort": "zmq"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, child_name(owner, svc.name), svc.name),
        "spec": {"selector": selector(owner, svc.name), "ports": ports},
    }


def _network_policy(owner: Owner, svc: Service, in_scope: set[str]) -> dict[str, Any]:
    peers = [
        {"podSelector": {"matchLabels": selector(owner, name)}}
        for name in SUBSCRIBERS[svc.name]
        if name in in_scope
    ]
    # Metrics/probe port open to any scraper; the ZMQ (or simulator API) port only to neighbours.
    rules: list[dict[str, Any]] = [{"ports": [{"port": svc.http_port, "protocol": "TCP"}]}]
    if svc.zmq_port is not None and peers:
        rules.append({"from": peers, "ports": [{"port": svc.zmq_port, "protocol": "TCP"}]})
    if svc is SIM:
        rules = [{"from": peers, "ports": [{"port": svc.http_port, "protocol": "TCP"}]}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(owner, child_name(owner, svc.name), svc.name),
        "spec": {
            "podSelector": {"matchLabels": selector(owner, svc.name)},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }


def _pvc(inp: Inputs) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(inp.owner, child_name(inp.owner, "state"), EXECUTION_ENGINE.name),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": inp.spec.execution_engine.storage_size}},
        },
    }


def _service_monitor(inp: Inputs) -> dict[str, Any]:
    owner, mon = inp.owner, inp.spec.monitoring
    meta = _meta(owner, child_name(owner, "metrics"), "monitoring")
    meta["labels"] = {**mon.labels, **meta["labels"]}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta,
        "spec": {
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/instance": owner.name,
                    "app.kubernetes.io/managed-by": MANAGER,
                },
                # The simulator's port is the fake broker API, not metrics.
                "matchExpressions": [
                    {
                        "key": "app.kubernetes.io/component",
                        "operator": "In",
                        "values": [s.name for s in PIPELINE],
                    }
                ],
            },
            "endpoints": [
                {
                    "port": "metrics",
                    "path": "/metrics",
                    "interval": mon.interval,
                    # The metrics carry their own `service` label; without honorLabels the
                    # Prometheus operator's target label would rename it `exported_service`.
                    "honorLabels": True,
                    # Rules and dashboards select job="tradingsystem-<service>" (docs/metrics.md).
                    "relabelings": [
                        {
                            "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"],
                            "targetLabel": "job",
                            "replacement": "tradingsystem-$1",
                        }
                    ],
                }
            ],
        },
    }


def _prometheus_rule(inp: Inputs) -> dict[str, Any]:
    owner, mon = inp.owner, inp.spec.monitoring
    meta = _meta(owner, child_name(owner, "rules"), "monitoring")
    meta["labels"] = {**mon.labels, **meta["labels"]}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": meta,
        "spec": {"groups": [dict(g) for g in inp.rule_groups]},
    }


def gate(inp: Inputs) -> tuple[dict[str, int], dict[str, str]]:
    """Replicas to apply now and who waits on whom.

    A downstream service is scaled up only once its upstream has an available replica. One that
    already runs keeps running if the upstream blips, so a restart upstream does not cascade.
    """
    spec, obs = inp.spec, inp.observed
    ups = upstream_of(spec)
    replicas: dict[str, int] = {}
    waiting: dict[str, str] = {}
    for svc in services(spec):
        want = spec_replicas(spec, svc)
        up = ups.get(svc.name)
        open_ = up is None or obs.available.get(up, 0) > 0 or obs.replicas.get(svc.name, 0) > 0
        if want > 0 and not open_:
            assert up is not None
            waiting[svc.name] = up
            want = 0
        replicas[svc.name] = want
    return replicas, waiting


def render(inp: Inputs) -> Rendered:
    spec, owner = inp.spec, inp.owner
    config_map = _config_map(inp)
    # Pods roll when the rendered config or the referenced Secret's data changes.
    config_hash = digest(config_map["data"], inp.secret_hash)
    replicas, waiting = gate(inp)
    svcs = services(spec)
    manifests: list[dict[str, Any]] = [config_map]
    if spec.execution_engine.storage == "persistentVolumeClaim":
        manifests.append(_pvc(inp))
    in_scope = {s.name for s in svcs}
    for svc in svcs:
        manifests.append(_deployment(inp, svc, replicas[svc.name], config_hash))
        manifests.append(_service(owner, svc))
        if spec.security.network_policy:
            manifests.append(_network_policy(owner, svc, in_scope))
    if spec.monitoring.service_monitor and inp.service_monitor_crd:
        manifests.append(_service_monitor(inp))
    if spec.monitoring.prometheus_rule and inp.prometheus_rule_crd and inp.rule_groups:
        manifests.append(_prometheus_rule(inp))
    desired = {s.name: spec_replicas(spec, s) for s in svcs}
    return Rendered(manifests=manifests, desired=desired, waiting_on=waiting)
