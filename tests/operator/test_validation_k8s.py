"""The real API server refuses bad TradingSystems with messages a person understands.

Table-driven: each case is a spec change against a valid base, created with dryRun=All. The risk
limits are checked twice (CEL in the API server, pydantic in the service): both must agree.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from tradingsystem.common.config import LIVE_CONFIRMATION, RiskSettings, SimSettings
from tradingsystem_operator.models import RiskLimits, SimSpec

G, V, P = "tradingsystem.dev", "v1alpha1", "tradingsystems"
BASE: dict[str, Any] = {"image": "ghcr.io/example/tradingsystem:0.1.0", "symbols": ["AAPL", "MSFT"]}
CREDS = {"secretName": "alpaca"}
LIVE = {"mode": "live", "liveAcknowledgement": LIVE_CONFIRMATION, "credentials": CREDS}
MERGE = "application/merge-patch+json"
DROP = object()  # remove the key from BASE

VALID: list[tuple[str, dict[str, Any]]] = [
    ("minimal-sim", {}),
    ("paper", {"mode": "paper", "credentials": CREDS}),
    ("live-acknowledged", LIVE),
    ("share-class-symbol", {"symbols": ["BRK.B", "SPY"]}),
    ("curve-keys-generated", {"security": {"curve": {"enabled": True}}}),
    (
        "sim-cash-account-in-regular-hours",
        {
            "sim": {
                "accountType": "cash",
                "multiplier": 1,
                "session": "regular",
                "startAt": "2026-12-07T14:25:00Z",
                "hardToBorrow": ["GME", "BRK.B"],
            }
        },
    ),
    (
        "peers-chosen",
        {
            "security": {
                "metricsScrapers": {"namespaceLabels": {"team": "obs"}, "podLabels": {"app": "vm"}},
                "controlClients": {"podLabels": {"app.kubernetes.io/name": "tradingsystem-operator"}},
            }
        },
    ),
    (
        "everything",
        {
            "halted": True,
            "paused": True,
            "logLevel": "DEBUG",
            "signalBridge": {
                "strategy": "ma_crossover",
                "params": {"fast": 5, "slow": 20.5},
                "model": {"configMap": "models", "key": "m.onnx"},
            },
            "security": {"networkPolicy": False, "curve": {"enabled": True, "keysSecret": "zmq-keys"}},
            "executionEngine": {
                "storage": "persistentVolumeClaim",
                "storageSize": "2Gi",
                "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
            },
            "monitoring": {"labels": {"release": "kps"}, "interval": "15s"},
        },
    ),
]

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no-image", {"image": DROP}, "spec.image: Required value"),
    ("no-symbols", {"symbols": DROP}, "spec.symbols: Required value"),
    ("empty-symbols", {"symbols": []}, "should have at least 1 items"),
    ("lowercase-symbol", {"symbols": ["aapl"]}, "spec.symbols[0]"),
    ("duplicate-symbol", {"symbols": ["AAPL", "AAPL"]}, "Duplicate value"),
    ("long-symbol", {"symbols": ["ABCDEFGHIJK"]}, "should match"),
    ("numeric-symbol", {"symbols": ["1ABC"]}, "should match"),
    ("bad-mode", {"mode": "yolo"}, 'Unsupported value: "yolo"'),
    ("live-no-ack", {**LIVE, "liveAcknowledgement": DROP}, "set spec.liveAcknowledgement to"),
    ("live-wrong-ack", {**LIVE, "liveAcknowledgement": "yes"}, "mode live trades real money"),
    ("paper-no-secret", {"mode": "paper"}, "need spec.credentials.secretName"),
    ("live-no-secret", {**LIVE, "credentials": DROP}, "need spec.credentials.secretName"),
    (
        "secret-without-name",
        {"mode": "paper", "credentials": {"apiKeyKey": "K"}},
        "secretName: Required value",
    ),
    ("secret-bad-name", {"mode": "paper", "credentials": {"secretName": "Bad_Name"}}, "secretName"),
    ("secret-empty-key", {"mode": "paper", "credentials": {**CREDS, "apiKeyKey": ""}}, "apiKeyKey"),
    (
        "notional-over-exposure",
        {"riskManager": {"limits": {"maxOrderNotional": 1e9}}},
        "maxOrderNotional must not exceed maxGrossExposure",
    ),
    (
        "qty-over-position",
        {"riskManager": {"limits": {"maxOrderQty": 1000}}},
        "maxOrderQty must not exceed maxPositionQty",
    ),
    (
        "base-over-max",
        {"riskManager": {"limits": {"orderQty": 200}}},
        "orderQty must not exceed maxOrderQty",
    ),
    ("negative-limit", {"riskManager": {"limits": {"maxOrderQty": -1}}}, "should be greater than 0"),
    ("zero-loss-limit", {"riskManager": {"limits": {"dailyLossLimit": 0}}}, "dailyLossLimit"),
    ("band-over-100", {"riskManager": {"limits": {"priceBandPct": 150}}}, "less than or equal to 100"),
    ("bad-sizing", {"riskManager": {"limits": {"sizing": "martingale"}}}, 'Unsupported value: "martingale"'),
    ("two-publishers", {"marketData": {"replicas": 2}}, "less than or equal to 1"),
    ("negative-replicas", {"signalBridge": {"replicas": -1}}, "greater than or equal to 0"),
    ("image-with-space", {"image": "bad image"}, "spec.image"),
    ("image-uppercase", {"image": "Ghcr.io/X/Y"}, "spec.image"),
    ("curve-bad-secret-name", {"security": {"curve": {"keysSecret": "Bad_Name"}}}, "keysSecret"),
    ("unknown-storage", {"executionEngine": {"storage": "hostPath"}}, 'Unsupported value: "hostPath"'),
    ("bad-quantity", {"sim": {"resources": {"limits": {"memory": "lots"}}}}, "limits.memory"),
    ("bad-interval", {"monitoring": {"interval": "1h"}}, "interval"),
    ("bad-strategy-name", {"signalBridge": {"strategy": "Bad-Strategy"}}, "strategy"),
    ("param-not-number", {"signalBridge": {"params": {"fast": "five"}}}, "must be of type number"),
    ("bad-log-level", {"logLevel": "TRACE"}, 'Unsupported value: "TRACE"'),
    ("halted-not-bool", {"halted": "yes"}, "must be of type boolean"),
    ("zero-tick-rate", {"sim": {"tickRate": 0}}, "tickRate"),
    ("sim-bad-account-type", {"sim": {"accountType": "ira"}}, 'Unsupported value: "ira"'),
    ("sim-multiplier-3", {"sim": {"multiplier": 3}}, 'supported values: "1", "2", "4"'),
    (
        "sim-cash-on-margin",
        {"sim": {"accountType": "cash", "multiplier": 2}},
        "a cash account's sim.multiplier must be 1",
    ),
    ("sim-bad-session", {"sim": {"session": "24x5"}}, 'Unsupported value: "24x5"'),
    ("sim-start-without-offset", {"sim": {"startAt": "tomorrow"}}, "spec.sim.startAt"),
    ("sim-lowercase-htb", {"sim": {"hardToBorrow": ["gme"]}}, "spec.sim.hardToBorrow[0]"),
]


def body(name: str, changes: dict[str, Any]) -> dict[str, Any]:
    spec = {**BASE, **changes}
    spec = {k: v for k, v in spec.items() if v is not DROP}
    return {"apiVersion": f"{G}/{V}", "kind": "TradingSystem", "metadata": {"name": name}, "spec": spec}


async def dry_create(api: client.ApiClient, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    return dict(await custom.create_namespaced_custom_object(G, V, namespace, P, obj, dry_run="All"))


async def refusal(api: client.ApiClient, namespace: str, obj: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as err:
        await dry_create(api, namespace, obj)
    assert err.value.status == 422, err.value.body
    return str(json.loads(err.value.body)["message"])


@pytest.mark.parametrize(("case", "changes"), VALID, ids=[c for c, _ in VALID])
async def test_valid_specs_are_accepted_with_defaults(
    k8s_api: client.ApiClient, namespace: str, tradingsystem_crd: str, case: str, changes: dict[str, Any]
) -> None:
    created = await dry_create(k8s_api, namespace, body(case, changes))
    spec = created["spec"]
    assert spec["riskManager"]["limits"]["maxGrossExposure"] == 250000  # server-side defaults
    assert spec["executionEngine"]["maxAttempts"] == 5


@pytest.mark.parametrize(("case", "changes", "expected"), INVALID, ids=[c for c, _, _ in INVALID])
async def test_invalid_specs_are_refused_with_a_readable_message(
    k8s_api: client.ApiClient,
    namespace: str,
    tradingsystem_crd: str,
    case: str,
    changes: dict[str, Any],
    expected: str,
) -> None:
    message = await refusal(k8s_api, namespace, body(case, changes))
    assert expected in message


async def test_name_longer_than_40_is_refused(
    k8s_api: client.ApiClient, namespace: str, tradingsystem_crd: str
) -> None:
    assert "at most 40 characters" in await refusal(k8s_api, namespace, body("x" * 41, {}))


async def test_switching_to_live_in_place_is_refused_but_leaving_live_is_not(
    k8s_api: client.ApiClient, namespace: str, tradingsystem_crd: str
) -> None:
    custom = client.CustomObjectsApi(k8s_api)
    await custom.create_namespaced_custom_object(
        G, V, namespace, P, body("paper", {"mode": "paper", "credentials": CREDS})
    )
    with pytest.raises(ApiException) as err:
        await custom.patch_namespaced_custom_object(
            G, V, namespace, P, "paper", {"spec": LIVE}, dry_run="All", _content_type=MERGE
        )
    assert "cannot be changed to live on an existing TradingSystem" in json.loads(err.value.body)["message"]
    await custom.create_namespaced_custom_object(G, V, namespace, P, body("live", LIVE))
    patched = await custom.patch_namespaced_custom_object(
        G, V, namespace, P, "live", {"spec": {"mode": "paper"}}, _content_type=MERGE
    )
    assert patched["spec"]["mode"] == "paper"


# Risk limits (camelCase, the rest defaulted): around every bound and every cross-field rule.
LIMIT_CASES: list[dict[str, Any]] = [
    {},
    {"sizing": "fixed"},
    {"orderQty": 100},  # == maxOrderQty
    {"orderQty": 100.5},
    {"maxOrderQty": 5},  # under the default orderQty
    {"maxOrderQty": 5, "orderQty": 5},
    {"maxOrderQty": 500},  # == maxPositionQty
    {"maxOrderQty": 501},
    {"maxPositionQty": 99},  # under the default maxOrderQty
    {"maxOrderNotional": 250_000},  # == maxGrossExposure
    {"maxOrderNotional": 250_001},
    {"maxGrossExposure": 49_999},  # under the default maxOrderNotional
    {"orderQty": 1, "maxOrderQty": 1, "maxPositionQty": 1, "maxOrderNotional": 1, "maxGrossExposure": 1},
    {"orderQty": 0},
    {"maxOpenPositions": 0},
    {"dailyLossLimit": 0.01},
    {"priceBandPct": 100},
    {"priceBandPct": 100.1},
]


def _service_accepts(camel: dict[str, Any]) -> bool:
    snake = {name: camel[f.alias] for name, f in RiskLimits.model_fields.items() if f.alias in camel}
    try:
        RiskSettings.model_validate(snake)
    except ValidationError:
        return False
    return True


async def test_the_api_server_and_the_service_accept_and_refuse_the_same_limits(
    k8s_api: client.ApiClient, namespace: str, tradingsystem_crd: str
) -> None:
    verdicts = []
    for i, limits in enumerate(LIMIT_CASES):
        try:
            await dry_create(k8s_api, namespace, body(f"limits-{i}", {"riskManager": {"limits": limits}}))
            api_accepts = True
        except ApiException as exc:
            assert exc.status == 422, exc.body
            api_accepts = False
        verdicts.append((limits, api_accepts, _service_accepts(limits)))
    assert [v for v in verdicts if v[1] != v[2]] == []
    assert {v[1] for v in verdicts} == {True, False}  # the table has both kinds


# Simulator account settings: every multiplier around the rules, for both account types.
SIM_CASES: list[dict[str, Any]] = [
    {},
    *({"multiplier": m} for m in (0, 1, 2, 3, 4, 8)),
    {"accountType": "cash"},
    *({"accountType": "cash", "multiplier": m} for m in (1, 2, 4)),
    {"accountType": "margin", "multiplier": 4},
    {"hardToBorrow": ["GME"]},
    {"startAt": "2026-12-07T09:30:00-05:00"},
]


def _simulator_accepts(camel: dict[str, Any]) -> bool:
    snake = {name: camel[f.alias] for name, f in SimSpec.model_fields.items() if f.alias in camel}
    try:
        SimSettings.model_validate(snake)
    except ValidationError:
        return False
    return True


async def test_the_api_server_and_the_simulator_accept_and_refuse_the_same_account_settings(
    k8s_api: client.ApiClient, namespace: str, tradingsystem_crd: str
) -> None:
    verdicts = []
    for i, sim in enumerate(SIM_CASES):
        try:
            await dry_create(k8s_api, namespace, body(f"sim-{i}", {"sim": sim}))
            api_accepts = True
        except ApiException as exc:
            assert exc.status == 422, exc.body
            api_accepts = False
        verdicts.append((sim, api_accepts, _simulator_accepts(sim)))
    assert [v for v in verdicts if v[1] != v[2]] == []
    assert {v[1] for v in verdicts} == {True, False}
