"""Pure rendering: a TradingSystem spec plus what was observed -> the child manifests. No I/O.

Children are named ``<name>-<service>``; every one carries the common labels and an
ownerReference so deleting the TradingSystem garbage-collects them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from tradingsystem.common.services import (
    EXECUTION_ENGINE,
    PIPELINE,
    RISK_MANAGER,
    SIGNAL_BRIDGE,
    SIM,
    Replicas,
    Service,
    start_order,
    subscribers,
)
from tradingsystem_operator.models import (
    DEFAULT_SCRAPERS,
    GROUP,
    KIND,
    VERSION,
    PeerSelector,
    TradingSystemSpec,
)
from tradingsystem_operator.rules import SYSTEM_LABEL, scoped
from tradingsystem_operator.startup import GateInputs, gate

MANAGER = "tradingsystem-operator"
CONFIG_PATH = "/etc/tradingsystem/config.yaml"
STATE_DIR = "/var/lib/tradingsystem"
CURVE_DIR = "/var/run/tradingsystem/curve"
MODEL_DIR = "/var/run/tradingsystem/model"
HASH_ANNOTATION = f"{GROUP}/config-hash"
RUN_AS = 10001
CONTROL_DIR = "/var/run/tradingsystem/control"
CONTROL_TOKEN_KEY = "token"
# Pod-template annotations: keyed digests of the owned Secrets, so a rotation rolls the pods
# that mount them (and only those).
CONTROL_HASH_ANNOTATION = f"{GROUP}/control-token-hash"
CURVE_HASH_ANNOTATION = f"{GROUP}/curve-keys-hash"
# On the TradingSystem: a new value asks for a new token / new key pairs. The value last acted
# on is kept on the Secret under ROTATION_ANNOTATION, so each request is handled once.
ROTATE_CONTROL_TOKEN = f"{GROUP}/rotate-control-token"
ROTATE_CURVE_KEYS = f"{GROUP}/rotate-curve-keys"
ROTATION_ANNOTATION = f"{GROUP}/rotation"
# The operator's pods as the Helm chart labels them: the default control-port clients.
OPERATOR_POD_LABELS = {"app.kubernetes.io/name": "tradingsystem-operator"}
SECRET_FILE_MODE = 0o440  # owner root, group fsGroup (the service user): read-only for it
# Services that keep state in STATE_DIR; their spec section says where (``storage``, ``storageSize``).
STATEFUL = (EXECUTION_ENGINE, RISK_MANAGER)


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
    operator_namespace: str = ""  # where the operator runs; "" = any namespace (see control_peer)
    control_token_hash: str = ""  # keyed digest of the control-token Secret
    curve_hash: str = ""  # keyed digest of the CurveZMQ keys Secret; "" with curve off


@dataclass
class Rendered:
    manifests: list[dict[str, Any]]
    desired: dict[str, int]  # replicas each Deployment should run once its gate opens
    waiting_on: dict[str, str]  # service -> upstream it waits for (gate closed)


def services(spec: TradingSystemSpec) -> tuple[Service, ...]:
    """The services this spec runs, in start order."""
    return start_order(with_sim=spec.mode == "sim")


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
        bus[svc.section] = f"tcp://{child_name(owner, svc.name)}:{svc.pub_port}"
    bus["curve"] = {"enabled": curve_enabled(spec)}
    if curve_enabled(spec):
        bus["curve"]["keys_dir"] = CURVE_DIR
    signals: dict[str, Any] = {
        "strategy": sb.strategy,
        "params": dict(sb.params),
        "source": sb.source,
        "warmup_bars": sb.warmup_bars,
        "publish_features": sb.publish_features,
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
        "risk": {
            **rk.model_dump(),
            "state_path": f"{STATE_DIR}/risk.sqlite",
            # Reached through its Service by the operator; the NetworkPolicy and the token guard it.
            "control_host": "0.0.0.0",
            "control_port": RISK_MANAGER.control_port,
            "control_token_file": f"{CONTROL_DIR}/{CONTROL_TOKEN_KEY}",
        },
        "execution": {
            "db_path": f"{STATE_DIR}/execution.sqlite",
            "rate_limit_per_min": ex.rate_limit_per_min,
            "request_timeout_s": ex.request_timeout_s,
            "max_attempts": ex.max_attempts,
        },
        "sim": {
            "host": child_name(owner, SIM.name),
            "port": SIM.http_port,
            "seed": spec.sim.seed,
            "tick_rate": spec.sim.tick_rate,
            "initial_cash": spec.sim.initial_cash,
            "account_type": str(spec.sim.account_type),
            "multiplier": spec.sim.multiplier,
            "hard_to_borrow": list(spec.sim.hard_to_borrow),
            "session": str(spec.sim.session),
            "start_at": spec.sim.start_at.isoformat() if spec.sim.start_at else None,
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
    env: list[dict[str, Any]] = []
    if svc is RISK_MANAGER and inp.spec.halted:
        # Kill switch: the risk-manager starts in HALT and rejects every new order, even if an
        # execution-engine were still running. Settings reads TS_<SECTION>__<FIELD> from env.
        env.append({"name": "TS_RISK__HALTED", "value": "true"})
    if inp.spec.mode != "sim" and creds is not None and svc.uses_broker:
        env += [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": creds.secret_name, "key": key}}}
            for var, key in (
                ("ALPACA_API_KEY", creds.api_key_key),
                ("ALPACA_SECRET_KEY", creds.secret_key_key),
            )
        ]
    return env


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
    if svc in STATEFUL:
        if on_claim(spec, svc):
            state: dict[str, Any] = {"persistentVolumeClaim": {"claimName": state_claim(owner, svc)}}
        else:
            state = {"emptyDir": {}}
        volumes.append({"name": "state", **state})
        mounts.append({"name": "state", "mountPath": STATE_DIR})
    if curve_enabled(spec) and svc is not SIM:
        secret = {"secretName": curve_secret_name(owner, spec), "defaultMode": SECRET_FILE_MODE}
        volumes.append({"name": "curve", "secret": secret})
        mounts.append({"name": "curve", "mountPath": CURVE_DIR, "readOnly": True})
    if svc is RISK_MANAGER:
        secret = {"secretName": control_secret_name(owner), "defaultMode": SECRET_FILE_MODE}
        volumes.append({"name": "control", "secret": secret})
        mounts.append({"name": "control", "mountPath": CONTROL_DIR, "readOnly": True})
    if svc is SIGNAL_BRIDGE and spec.signal_bridge.model is not None:
        volumes.append({"name": "model", "configMap": {"name": spec.signal_bridge.model.config_map}})
        mounts.append({"name": "model", "mountPath": MODEL_DIR, "readOnly": True})
    return volumes, mounts


def _section(spec: TradingSystemSpec, svc: Service) -> Any:
    """The spec section of a service (``spec.marketData`` ...)."""
    return getattr(spec, svc.spec_field)


def on_claim(spec: TradingSystemSpec, svc: Service) -> bool:
    """Whether ``svc`` keeps its state on a PersistentVolumeClaim (else an emptyDir, or none)."""
    return svc in STATEFUL and _section(spec, svc).storage == "persistentVolumeClaim"


def state_claim(owner: Owner, svc: Service) -> str:
    """The claim of a service's state. The execution-engine's keeps its first name, ``<name>-state``,
    so a claim made before the risk-manager had one stays bound to it."""
    return child_name(owner, "state" if svc is EXECUTION_ENGINE else f"{svc.name}-state")


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
    if svc.replicas is Replicas.ONE_UNLESS_HALTED:
        return 0 if spec.halted else 1
    if svc.replicas is Replicas.ONE:
        return 1
    return int(_section(spec, svc).replicas)


def _deployment(inp: Inputs, svc: Service, replicas: int, config_hash: str) -> dict[str, Any]:
    owner = inp.owner
    args = [svc.name, "--config", CONFIG_PATH]
    if svc is SIM:
        args += ["--host", "0.0.0.0"]
    volumes, mounts = _volumes(inp, svc)
    ports = [{"name": "metrics", "containerPort": svc.http_port}]
    if svc.pub_port is not None:
        ports.insert(0, {"name": "zmq", "containerPort": svc.pub_port})
    if svc.control_port is not None:
        ports.append({"name": "control", "containerPort": svc.control_port})
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
        # Probed every second: a replaced pod joins its Service (so its subscribers reach its PUB
        # port) when the probe first succeeds; at 10 s a first probe that came too early left the
        # links down ~12 s instead of ~4 s (measured, tests/kind/test_pod_replacement.py).
        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 1},
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
            # The execution engine must never run twice (duplicate orders), and state on a claim
            # must never have two writers (the last to write would undo the other): Recreate.
            "strategy": {"type": "Recreate"}
            if svc is EXECUTION_ENGINE or on_claim(inp.spec, svc)
            else {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector(owner, svc.name)},
            "template": {
                "metadata": {
                    # Ours win a clash: the selector and the roll-on-change hashes depend on them.
                    "labels": {**inp.spec.pod_labels, **labels(owner, svc.name)},
                    "annotations": {
                        **inp.spec.pod_annotations,
                        HASH_ANNOTATION: config_hash,
                        **_secret_hashes(inp, svc),
                    },
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
    if svc.pub_port is not None:
        ports.insert(0, {"name": "zmq", "port": svc.pub_port, "targetPort": "zmq"})
    if svc.control_port is not None:
        ports.append({"name": "control", "port": svc.control_port, "targetPort": "control"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, child_name(owner, svc.name), svc.name),
        "spec": {"selector": selector(owner, svc.name), "ports": ports},
    }


def _network_policy(inp: Inputs, svc: Service, in_scope: set[str]) -> dict[str, Any]:
    owner = inp.owner
    peers = [
        {"podSelector": {"matchLabels": selector(owner, name)}}
        for name in (s.name for s in subscribers(svc))
        if name in in_scope
    ]
    # Metrics/probe port open to the configured scrapers only (kubelet probes are not subject to
    # NetworkPolicy); the ZMQ (or simulator API) port only to neighbours; the risk-manager's
    # control port only to its clients (the operator by default).
    rules: list[dict[str, Any]] = [
        {"from": [peer(scrapers(inp.spec))], "ports": [{"port": svc.http_port, "protocol": "TCP"}]}
    ]
    if svc.pub_port is not None and peers:
        rules.append({"from": peers, "ports": [{"port": svc.pub_port, "protocol": "TCP"}]})
    if svc.control_port is not None:
        rules.append({"from": [control_peer(inp)], "ports": [{"port": svc.control_port, "protocol": "TCP"}]})
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


def peer(sel: PeerSelector) -> dict[str, Any]:
    """A NetworkPolicy ``from`` entry: both selectors in one entry means AND, not OR."""
    return {
        "namespaceSelector": {"matchLabels": dict(sel.namespace_labels)},
        "podSelector": {"matchLabels": dict(sel.pod_labels)},
    }


def scrapers(spec: TradingSystemSpec) -> PeerSelector:
    return spec.security.metrics_scrapers or DEFAULT_SCRAPERS


def control_peer(inp: Inputs) -> dict[str, Any]:
    """Who may call the control port: ``security.controlClients``, else the operator's pods in
    the operator's namespace (any namespace if the operator does not know its own)."""
    chosen = inp.spec.security.control_clients
    if chosen is None:
        ns = {"kubernetes.io/metadata.name": inp.operator_namespace} if inp.operator_namespace else {}
        chosen = PeerSelector(namespace_labels=ns, pod_labels=dict(OPERATOR_POD_LABELS))
    return peer(chosen)


def curve_enabled(spec: TradingSystemSpec) -> bool:
    """``security.curve.enabled``; unset means on for real money (mode live), off otherwise."""
    enabled = spec.security.curve.enabled
    return spec.mode == "live" if enabled is None else enabled


def curve_secret_name(owner: Owner, spec: TradingSystemSpec) -> str:
    return spec.security.curve.keys_secret or child_name(owner, "curve")


def control_secret_name(owner: Owner) -> str:
    return child_name(owner, "control")


def _secret_hashes(inp: Inputs, svc: Service) -> dict[str, str]:
    out: dict[str, str] = {}
    if svc is RISK_MANAGER and inp.control_token_hash:
        out[CONTROL_HASH_ANNOTATION] = inp.control_token_hash
    if svc is not SIM and inp.curve_hash:
        out[CURVE_HASH_ANNOTATION] = inp.curve_hash
    return out


def _secret(owner: Owner, component: str, rotation: str, data: Mapping[str, str]) -> dict[str, Any]:
    meta = _meta(owner, child_name(owner, component), component)
    meta["annotations"] = {ROTATION_ANNOTATION: rotation}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def control_secret(owner: Owner, token: str, rotation: str) -> dict[str, Any]:
    """The owned Secret with the control bearer token (``token`` is generated by the caller)."""
    return _secret(owner, "control", rotation, {CONTROL_TOKEN_KEY: token})


def curve_cert(public: bytes, secret: bytes | None = None) -> str:
    """A ZMQ certificate file as ``zmq.auth.load_certificate`` reads it (public, or both keys)."""
    keys = f'    public-key = "{public.decode()}"\n'
    if secret is not None:
        keys += f'    secret-key = "{secret.decode()}"\n'
    return "metadata\ncurve\n" + keys


def curve_secret(owner: Owner, pairs: Mapping[str, tuple[bytes, bytes]], rotation: str) -> dict[str, Any]:
    """The owned Secret with a CurveZMQ key pair per pipeline service, in the file layout of
    ``tradingsystem keys`` (``<service>.key``, ``<service>.key_secret``). ``pairs`` maps
    service -> (public, secret), Z85, generated by the caller."""
    data: dict[str, str] = {}
    for name, (public, secret) in pairs.items():
        data[f"{name}.key"] = curve_cert(public)
        data[f"{name}.key_secret"] = curve_cert(public, secret)
    return _secret(owner, "curve", rotation, data)


def _pvc(inp: Inputs, svc: Service) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(inp.owner, state_claim(inp.owner, svc), svc.name),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": _section(inp.spec, svc).storage_size}},
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
                        },
                        # Which TradingSystem: its PrometheusRule selects only its own series
                        # (``rules.scoped``), even beside another system in the same namespace.
                        {
                            "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_instance"],
                            "targetLabel": SYSTEM_LABEL,
                        },
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
        "spec": {"groups": scoped(inp.rule_groups, {"namespace": owner.namespace, SYSTEM_LABEL: owner.name})},
    }


def render(inp: Inputs) -> Rendered:
    spec, owner = inp.spec, inp.owner
    config_map = _config_map(inp)
    # Pods roll when the rendered config or the referenced Secret's data changes.
    config_hash = digest(config_map["data"], inp.secret_hash)
    svcs = services(spec)
    desired = {s.name: spec_replicas(spec, s) for s in svcs}
    obs = inp.observed
    gated = gate(GateInputs(tuple(desired), desired, obs.available, obs.replicas))
    manifests: list[dict[str, Any]] = [config_map]
    manifests += [_pvc(inp, s) for s in STATEFUL if on_claim(spec, s)]
    in_scope = {s.name for s in svcs}
    for svc in svcs:
        manifests.append(_deployment(inp, svc, gated.replicas[svc.name], config_hash))
        manifests.append(_service(owner, svc))
        if spec.security.network_policy:
            manifests.append(_network_policy(inp, svc, in_scope))
    if spec.monitoring.service_monitor and inp.service_monitor_crd:
        manifests.append(_service_monitor(inp))
    if spec.monitoring.prometheus_rule and inp.prometheus_rule_crd and inp.rule_groups:
        manifests.append(_prometheus_rule(inp))
    return Rendered(manifests=manifests, desired=desired, waiting_on=gated.waiting_on)
