"""render.py, the security side (pure): who may reach which port, the owned Secrets (control
token, CurveZMQ keys), their mounts, and rotation rolling only the pods that use them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
import zmq

from tradingsystem.common.bus import Publisher, Subscriber, load_curve
from tradingsystem.common.config import LIVE_CONFIRMATION, Settings
from tradingsystem.common.wire import Heartbeat
from tradingsystem_operator.control import new_control_secret, new_curve_secret, token_from_data
from tradingsystem_operator.models import TradingSystemSpec
from tradingsystem_operator.render import (
    CONTROL_HASH_ANNOTATION,
    CURVE_HASH_ANNOTATION,
    HASH_ANNOTATION,
    ROTATION_ANNOTATION,
    Inputs,
    Owner,
    render,
)

OWNER = Owner(name="demo", namespace="trading", uid="0b7c2a4e-1111-2222-3333-444455556666")
CREDS = {"secretName": "alpaca"}


def make_spec(**overrides: Any) -> TradingSystemSpec:
    body: dict[str, Any] = {"image": "ghcr.io/example/tradingsystem:0.1.0", "symbols": ["AAPL", "MSFT"]}
    return TradingSystemSpec.model_validate({**body, **overrides})


def make_inputs(spec: TradingSystemSpec | None = None, **kw: Any) -> Inputs:
    return Inputs(owner=OWNER, spec=spec or make_spec(), **kw)


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def config_of(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(yaml.safe_load(by_kind(manifests, "ConfigMap")["demo-config"]["data"]["config.yaml"]))


KPS_SCRAPERS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}
LIVE = {"mode": "live", "liveAcknowledgement": LIVE_CONFIRMATION, "credentials": CREDS}


def policies(**kw: Any) -> dict[str, dict[str, Any]]:
    return by_kind(render(make_inputs(**kw)).manifests, "NetworkPolicy")


def rule_for(policy: dict[str, Any], port: int) -> dict[str, Any]:
    (rule,) = [r for r in policy["spec"]["ingress"] if {"port": port, "protocol": "TCP"} in r["ports"]]
    return rule


def pod(manifests: list[dict[str, Any]], service: str) -> dict[str, Any]:
    return dict(by_kind(manifests, "Deployment")[f"demo-{service}"]["spec"]["template"])


def test_metrics_ports_admit_kube_prometheus_stack_by_default_not_the_world() -> None:
    got = policies()
    ports = {"demo-market-data": 8081, "demo-signal-bridge": 8082, "demo-risk-manager": 8083}
    for name, port in {**ports, "demo-execution-engine": 8084}.items():
        assert rule_for(got[name], port)["from"] == [KPS_SCRAPERS], name
    # Every ingress rule names its peers: none is open to any source.
    assert all(r.get("from") for p in got.values() for r in p["spec"]["ingress"])


def test_metrics_scrapers_are_configurable() -> None:
    scrapers = {"namespaceLabels": {"team": "obs"}, "podLabels": {"app": "vmagent"}}
    got = policies(spec=make_spec(security={"metricsScrapers": scrapers}))
    assert rule_for(got["demo-signal-bridge"], 8082)["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"team": "obs"}},
            "podSelector": {"matchLabels": {"app": "vmagent"}},
        }
    ]


def test_the_control_port_admits_only_the_operators_pods_in_its_namespace() -> None:
    got = policies(operator_namespace="tradingsystem-system")
    assert rule_for(got["demo-risk-manager"], 8093)["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tradingsystem-system"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "tradingsystem-operator"}},
        }
    ]
    others = [n for n in got if n != "demo-risk-manager"]
    assert not [
        n
        for n in others
        for r in got[n]["spec"]["ingress"]
        if {"port": 8093, "protocol": "TCP"} in r["ports"]
    ]


def test_without_its_namespace_the_operator_is_matched_by_pod_labels_in_any_namespace() -> None:
    rule = rule_for(policies()["demo-risk-manager"], 8093)
    assert rule["from"][0]["namespaceSelector"] == {"matchLabels": {}}


def test_control_clients_are_configurable() -> None:
    clients = {"namespaceLabels": {"kubernetes.io/metadata.name": "ops"}, "podLabels": {"app": "oncall"}}
    rule = rule_for(policies(spec=make_spec(security={"controlClients": clients}))["demo-risk-manager"], 8093)
    assert rule["from"][0]["podSelector"] == {"matchLabels": {"app": "oncall"}}


def test_the_risk_manager_alone_mounts_the_control_token_and_serves_the_control_port() -> None:
    out = render(make_inputs()).manifests
    risk = pod(out, "risk-manager")["spec"]
    assert {"name": "control", "secret": {"secretName": "demo-control", "defaultMode": 0o440}} in risk[
        "volumes"
    ]
    assert {"name": "control", "containerPort": 8093} in risk["containers"][0]["ports"]
    for svc in ("market-data", "signal-bridge", "execution-engine", "sim"):
        assert "control" not in [v["name"] for v in pod(out, svc)["spec"]["volumes"]], svc
    config = config_of(out)
    assert {k: config["risk"][k] for k in ("control_host", "control_port", "control_token_file")} == {
        "control_host": "0.0.0.0",
        "control_port": 8093,
        "control_token_file": "/var/run/tradingsystem/control/token",
    }
    Settings.model_validate(config)  # still a valid document for every service


@pytest.mark.parametrize(
    ("spec", "on"),
    [
        ({}, False),
        ({"mode": "paper", "credentials": CREDS}, False),
        (LIVE, True),
        ({**LIVE, "security": {"curve": {"enabled": False}}}, False),
        ({"security": {"curve": {"enabled": True}}}, True),
    ],
)
def test_curve_is_on_by_default_for_live_only(spec: dict[str, Any], on: bool) -> None:
    out = render(make_inputs(spec=make_spec(**spec))).manifests
    assert config_of(out)["bus"]["curve"]["enabled"] is on
    volumes = pod(out, "execution-engine")["spec"]["volumes"]
    assert ({"name": "curve", "secret": {"secretName": "demo-curve", "defaultMode": 0o440}} in volumes) is on


def test_the_control_secret_is_owned_and_records_its_rotation_request() -> None:
    secret = new_control_secret(OWNER, "2026-12-01")
    assert secret["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert secret["metadata"]["annotations"] == {ROTATION_ANNOTATION: "2026-12-01"}
    token = token_from_data(secret["data"]).get_secret_value()
    assert (
        len(token) >= 43
        and token != token_from_data(new_control_secret(OWNER, "")["data"]).get_secret_value()
    )


def test_generated_curve_keys_load_per_service_and_carry_a_zmq_hop(tmp_path: Path) -> None:
    secret = new_curve_secret(OWNER, "")
    assert sorted(secret["data"]) == sorted(
        f"{s}{ext}"
        for s in ("market-data", "signal-bridge", "risk-manager", "execution-engine")
        for ext in (".key", ".key_secret")
    )
    for key, value in secret["data"].items():  # a mounted Secret: one file per key
        (tmp_path / key).write_bytes(base64.b64decode(value))
    server = load_curve(tmp_path, "risk-manager")
    client = load_curve(tmp_path, "execution-engine", server="risk-manager")
    assert b"secret" not in (tmp_path / "risk-manager.key").read_bytes()  # public file holds no secret key
    ctx = zmq.Context()
    pub = Publisher("tcp://127.0.0.1:*", service="risk-manager", curve=server, ctx=ctx)
    sub = Subscriber(pub.sock.getsockopt(zmq.LAST_ENDPOINT).decode(), curve=client, ctx=ctx)
    try:
        for _ in range(200):  # bounded: the Curve handshake and subscription take a moment
            pub.publish(Heartbeat(service="risk-manager"))
            if sub.sock.poll(50):
                assert isinstance(sub.recv().msg, Heartbeat)
                break
        else:
            raise AssertionError("no message over the Curve hop")
    finally:
        sub.close()
        pub.close()
        ctx.destroy(linger=0)


def test_a_token_rotation_rolls_only_the_risk_manager_and_a_key_rotation_only_the_pipeline() -> None:
    spec = make_spec(security={"curve": {"enabled": True}})

    def hashes(**kw: Any) -> dict[str, tuple[str, ...]]:
        out = render(make_inputs(spec=spec, **kw)).manifests
        return {
            n: tuple(
                pod(out, n)["metadata"]["annotations"].get(a, "")
                for a in (HASH_ANNOTATION, CONTROL_HASH_ANNOTATION, CURVE_HASH_ANNOTATION)
            )
            for n in ("sim", "market-data", "signal-bridge", "risk-manager", "execution-engine")
        }

    base = hashes(control_token_hash="t1", curve_hash="k1")
    token = hashes(control_token_hash="t2", curve_hash="k1")
    keys = hashes(control_token_hash="t1", curve_hash="k2")
    assert [n for n in base if base[n] != token[n]] == ["risk-manager"]
    assert [n for n in base if base[n] != keys[n]] == [
        "market-data",
        "signal-bridge",
        "risk-manager",
        "execution-engine",
    ]


def test_no_token_or_key_material_in_rendered_children() -> None:
    out = render(
        make_inputs(spec=make_spec(security={"curve": {"enabled": True}}), control_token_hash="t")
    ).manifests
    text = repr(out)
    assert "secret-key" not in text and "public-key" not in text
    assert not [m for m in out if m["kind"] == "Secret"]  # generated only by the I/O shell
