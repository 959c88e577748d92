"""render.py: scheduling fields and pod pass-through reach every pod template (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from tradingsystem_operator.crd import build_crd
from tradingsystem_operator.models import TradingSystemSpec
from tradingsystem_operator.render import HASH_ANNOTATION

from .test_render import COMMON_LABELS, deployments, make_spec

DEDICATED = {"node-role.example.com/trading": "true"}
TOLERATE = [{"key": "dedicated", "operator": "Equal", "value": "trading", "effect": "NoSchedule"}]
ZONE_SPREAD = [
    {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
]
ANTI = {
    "podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 50,
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "tradingsystem"}},
                    "topologyKey": "kubernetes.io/hostname",
                },
            }
        ]
    }
}
SHARED = {
    "nodeSelector": DEDICATED,
    "tolerations": TOLERATE,
    "affinity": ANTI,
    "topologySpreadConstraints": ZONE_SPREAD,
    "priorityClassName": "trading-critical",
}


def pod_spec(dep: dict[str, Any]) -> dict[str, Any]:
    return dict(dep["spec"]["template"]["spec"])


def pods(**overrides: Any) -> dict[str, dict[str, Any]]:
    return {name: pod_spec(d) for name, d in deployments(spec=make_spec(**overrides)).items()}


def test_the_shared_default_reaches_every_service() -> None:
    for name, spec in pods(scheduling=SHARED).items():
        assert spec["nodeSelector"] == DEDICATED, name
        assert spec["tolerations"] == TOLERATE, name
        assert spec["affinity"] == ANTI, name
        assert spec["priorityClassName"] == "trading-critical", name


def test_a_service_field_replaces_the_defaults_field_and_inherits_the_rest() -> None:
    own = {"nodeSelector": {"pool": "sim"}, "priorityClassName": "low"}
    out = pods(scheduling=SHARED, sim={"scheduling": own})
    assert (out["demo-sim"]["nodeSelector"], out["demo-sim"]["priorityClassName"]) == ({"pool": "sim"}, "low")
    assert out["demo-sim"]["tolerations"] == TOLERATE
    assert out["demo-market-data"]["nodeSelector"] == DEDICATED


def test_an_empty_value_on_a_service_clears_the_default() -> None:
    out = pods(scheduling=SHARED, executionEngine={"scheduling": {"tolerations": []}})
    assert not out["demo-execution-engine"].get("tolerations")
    assert out["demo-risk-manager"]["tolerations"] == TOLERATE


def test_nothing_set_adds_no_scheduling_field() -> None:
    for spec in pods().values():
        keys = {"nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName"}
        assert not keys & spec.keys()
        assert "imagePullSecrets" not in spec


def test_a_spread_constraint_without_a_selector_counts_the_services_own_pods() -> None:
    spread = pods(scheduling=SHARED)["demo-signal-bridge"]["topologySpreadConstraints"]
    assert spread == [
        {
            **ZONE_SPREAD[0],
            "labelSelector": {
                "matchLabels": {
                    "app.kubernetes.io/instance": "demo",
                    "app.kubernetes.io/component": "signal-bridge",
                }
            },
        }
    ]


def test_a_spread_constraints_own_selector_is_kept() -> None:
    mine = [{**ZONE_SPREAD[0], "labelSelector": {"matchLabels": {"team": "quant"}}}]
    spread = pods(scheduling={"topologySpreadConstraints": mine})["demo-sim"]["topologySpreadConstraints"]
    assert spread[0]["labelSelector"] == {"matchLabels": {"team": "quant"}}


def test_pod_labels_and_annotations_pass_through_but_ours_win() -> None:
    clash = {"team": "quant", "app.kubernetes.io/component": "mine"}
    notes = {"example.com/owner": "desk-7", HASH_ANNOTATION: "forged"}
    deps = deployments(spec=make_spec(podLabels=clash, podAnnotations=notes))
    for name, dep in deps.items():
        meta = dep["spec"]["template"]["metadata"]
        assert meta["labels"]["team"] == "quant", name
        assert meta["labels"]["app.kubernetes.io/component"] == name.removeprefix("demo-"), name
        assert meta["labels"].keys() >= COMMON_LABELS, name
        assert meta["annotations"]["example.com/owner"] == "desk-7", name
        assert meta["annotations"][HASH_ANNOTATION] != "forged", name


def test_image_pull_secrets_reach_every_pod() -> None:
    for spec in pods(imagePullSecrets=[{"name": "regcred"}]).values():
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]


@pytest.mark.parametrize(
    "scheduling",
    [
        {"tolerations": [{"operator": "Sometimes"}]},
        {"priorityClassName": "Not_A_Name"},
        {
            "topologySpreadConstraints": [
                {"maxSkew": 0, "topologyKey": "z", "whenUnsatisfiable": "DoNotSchedule"}
            ]
        },
        {
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}
            }
        },
    ],
)
def test_malformed_scheduling_is_refused_by_the_model(scheduling: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="scheduling"):
        TradingSystemSpec.model_validate(
            {"image": "ghcr.io/example/tradingsystem:0.1.0", "symbols": ["AAPL"], "scheduling": scheduling}
        )


def _undescribed(node: dict[str, Any], path: str) -> list[str]:
    out = []
    for name, sub in (node.get("properties") or {}).items():
        here = f"{path}.{name}"
        if not sub.get("description"):
            out.append(here)
        out += _undescribed(sub, here)
        if isinstance(sub.get("items"), dict):
            out += _undescribed(sub["items"], f"{here}[]")
    return out


def test_kubectl_explain_describes_every_scheduling_and_pass_through_field() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    fields = ("scheduling", "podAnnotations", "podLabels", "imagePullSecrets")
    assert [f".{f}" for f in fields if not spec["properties"][f].get("description")] == []
    nested = [spec["properties"]["scheduling"], spec["properties"]["imagePullSecrets"]["items"]]
    nested += [
        spec["properties"][s]["properties"]["scheduling"] for s in ("marketData", "sim", "executionEngine")
    ]
    assert [p for n in nested for p in _undescribed(n, "")] == []
