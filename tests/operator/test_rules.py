"""rules.py: PrometheusRule groups from monitoring/rules/*.yaml."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradingsystem_operator.models import TradingSystemSpec
from tradingsystem_operator.render import Inputs, Owner, render
from tradingsystem_operator.rules import OPERATOR_RULES, load_rule_groups, scope_expr, scoped

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


SYSTEM = {"namespace": "trading", "tradingsystem": "demo"}
ADDED = 'namespace="trading",tradingsystem="demo"'


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ("up == 0", f"up{{{ADDED}}} == 0"),
        (
            'tradingsystem_risk_state{state="HALTED"} == 1',
            f'tradingsystem_risk_state{{state="HALTED",{ADDED}}} == 1',
        ),
        (
            "histogram_quantile(0.99, rate(tradingsystem_hop_latency_seconds_bucket[5m]))",
            f"histogram_quantile(0.99, rate(tradingsystem_hop_latency_seconds_bucket{{{ADDED}}}[5m]))",
        ),
        (
            "instance:tradingsystem_x:ratio_rate5m > 0.1",
            f"instance:tradingsystem_x:ratio_rate5m{{{ADDED}}} > 0.1",
        ),
        # Strings stay as written, even when they look like a selector or hold a brace.
        (
            'label_replace(up{job=~"tradingsystem-.+"}, "s", "$1", "job", "tradingsystem_(up)")',
            f'label_replace(up{{job=~"tradingsystem-.+",{ADDED}}}, "s", "$1", "job", "tradingsystem_(up)")',
        ),
        ('tradingsystem_a{reason="}"}', f'tradingsystem_a{{reason="}}",{ADDED}}}'),
        # Grouping labels, functions and other names are not series of ours.
        (
            "sum without (topic) (increase(tradingsystem_g_total[5m]))",
            f"sum without (topic) (increase(tradingsystem_g_total{{{ADDED}}}[5m]))",
        ),
        ("time() - tradingsystem_t > 120", f"time() - tradingsystem_t{{{ADDED}}} > 120"),
    ],
)
def test_scoping_adds_the_systems_matchers_to_every_selector_of_our_series(expr: str, want: str) -> None:
    assert scope_expr(expr, SYSTEM) == want


def test_scoping_escapes_the_values_it_adds() -> None:
    assert scope_expr("up", {"tradingsystem": 'a"b'}) == 'up{tradingsystem="a\\"b"}'


_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
}


def _unscoped_series(expr: str) -> list[str]:
    """Names in ``expr`` that select series but carry no TradingSystem matcher: an independent
    reading (strings, scoped selectors, grouping lists and ranges removed; what is left that is
    not a function call, a keyword or a number is a series)."""
    rest = re.sub(r"[A-Za-z_:][\w:]*\{[^{}]*" + re.escape(ADDED) + r"\}", " ", expr)
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', '""', rest)
    rest = re.sub(r"\[[^\]]*\]", " ", _GROUPING.sub(" ", rest))
    names = re.findall(r"(?<![\w.])([A-Za-z_:][\w:]*)(?!\w*\s*\()", rest)
    return [n for n in names if n not in _KEYWORDS]


def test_every_shipped_per_system_rule_scoped_selects_only_that_systems_series() -> None:
    groups = scoped(load_rule_groups(MONITORING), SYSTEM)
    exprs = [str(r["expr"]) for g in groups for r in g["rules"]]
    assert len(exprs) > 20
    assert {e: _unscoped_series(e) for e in exprs if _unscoped_series(e)} == {}


def test_the_independent_reading_would_see_a_series_the_scoping_missed() -> None:
    assert _unscoped_series(scope_expr("process_resident_memory_bytes > 1 and up", SYSTEM)) == [
        "process_resident_memory_bytes"
    ]
