"""rules.py: PrometheusRule groups from monitoring/rules/*.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tradingsystem_operator.models import TradingSystemSpec
from tradingsystem_operator.render import Inputs, Owner, render
from tradingsystem_operator.rules import OPERATOR_RULES, load_rule_groups

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"

GROUP = "- name: g1\n  rules:\n  - alert: Down\n    expr: up == 0\n"


def test_reads_rule_files_and_prometheusrule_manifests(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text("groups:\n" + GROUP)
    (tmp_path / "rules" / "b.yml").write_text(
        "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nspec:\n  groups:\n"
        "  - name: g2\n    rules:\n    - record: x\n      expr: sum(up)\n"
    )
    (tmp_path / "rules" / "empty.yaml").write_text("")
    groups = load_rule_groups(tmp_path)
    assert [g["name"] for g in groups] == ["g1", "g2"]
    assert groups[0]["rules"][0]["alert"] == "Down"


def test_no_rules_dir_means_no_groups(tmp_path: Path) -> None:
    assert load_rule_groups(tmp_path) == ()


def test_the_operator_rule_file_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text("groups:\n" + GROUP)
    (tmp_path / "rules" / OPERATOR_RULES).write_text("groups:\n" + GROUP.replace("g1", "op"))
    assert [g["name"] for g in load_rule_groups(tmp_path)] == ["g1"]


def _alerts(groups: Any) -> set[str]:
    return {r.get("alert") or r["record"] for g in groups for r in g["rules"]}


def test_a_tradingsystems_prometheus_rule_carries_every_shipped_rule_but_the_operators() -> None:
    spec = TradingSystemSpec.model_validate({"image": "ts:1", "symbols": ["AAPL"]})
    inp = Inputs(
        owner=Owner(name="demo", namespace="trading", uid="u"),
        spec=spec,
        prometheus_rule_crd=True,
        rule_groups=load_rule_groups(MONITORING),
    )
    [rule] = [m for m in render(inp).manifests if m["kind"] == "PrometheusRule"]
    shipped = yaml.safe_load((MONITORING / "rules" / "tradingsystem.rules.yaml").read_text())["groups"]
    operator = yaml.safe_load((MONITORING / "rules" / OPERATOR_RULES).read_text())["groups"]
    assert _alerts(operator), "operator.rules.yaml has no rule"
    assert _alerts(rule["spec"]["groups"]) == _alerts(shipped)
    assert not _alerts(rule["spec"]["groups"]) & _alerts(operator)
