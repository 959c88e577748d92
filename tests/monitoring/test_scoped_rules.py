"""A TradingSystem's PrometheusRule (the operator's scoped copy of the shipped rules) sees only
its own series: promtool evaluates it over the series of three systems that would all fire."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from promhelpers import MONITORING, tool

from tradingsystem_operator.rules import load_rule_groups, scoped

MINE = {"namespace": "trading", "tradingsystem": "demo"}
# Same name elsewhere, another system beside it: both halted, both rejecting everything.
OTHERS = (
    {"namespace": "elsewhere", "tradingsystem": "demo"},
    {"namespace": "trading", "tradingsystem": "other"},
)


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in {"job": "tradingsystem-risk-manager", **labels}.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _labels(**extra: str) -> str:
    return (
        "{"
        + ",".join(
            f'{k}="{v}"' for k, v in sorted({**MINE, "job": "tradingsystem-risk-manager", **extra}.items())
        )
        + "}"
    )


def test_a_systems_scoped_rules_alert_and_record_only_for_that_system(tmp_path: Path) -> None:
    rules = tmp_path / "demo.rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": scoped(load_rule_groups(MONITORING), MINE)}))
    series = []
    for labels in (MINE, *OTHERS):
        series += [
            _series("tradingsystem_risk_state", {**labels, "state": "HALTED"}, "1x20"),
            _series("tradingsystem_risk_rejects_total", {**labels, "reason": "halted"}, "0+10x20"),
            _series("tradingsystem_risk_orders_approved_total", labels, "0x20"),
        ]
    halted = "TradingSystemTradingHalted"
    severity = next(
        r["labels"]["severity"]
        for g in load_rule_groups(MONITORING)
        for r in g["rules"]
        if r.get("alert") == halted
    )
    test = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": f'ALERTS{{alertname="{halted}",alertstate="firing"}}',
                        "eval_time": "5m",
                        "exp_samples": [
                            {
                                "labels": "ALERTS"
                                + _labels(
                                    alertname=halted, alertstate="firing", severity=severity, state="HALTED"
                                ),
                                "value": 1,
                            }
                        ],
                    },
                    {
                        "expr": "instance:tradingsystem_risk_rejects:ratio_rate10m",
                        "eval_time": "10m",
                        "exp_samples": [
                            {
                                "labels": "instance:tradingsystem_risk_rejects:ratio_rate10m" + _labels(),
                                "value": 1,
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "demo.test.yaml").write_text(yaml.safe_dump(test))
    result = subprocess.run(
        [tool("promtool"), "test", "rules", "demo.test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
