"""Every metric name used by the alert rules and dashboards is one the code exports.

Prometheus' PromQL parser is Go-only, so ``metric_names`` is a small scanner: it skips
comments, strings, label matchers ``{...}``, ranges ``[...]``, Grafana variables, numbers, functions
(an identifier followed by ``(``), keywords and the label lists of ``by``/``without``/
``on``/``ignoring``/``group_left``/``group_right``. What remains are metric names.
"""

from __future__ import annotations

import re
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics import MetricWrapperBase
from promhelpers import MONITORING, dashboard_exprs, load_rules, rule_exprs

import tradingsystem_operator.metrics as operator_metrics
from tradingsystem.common import metrics as service_metrics

KEYWORDS = {
    # aggregation operators
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    # binary operators and modifiers
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan",
}  # fmt: skip
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Series Prometheus itself creates for every target or alert.
PROMETHEUS_BUILTIN = {
    "up",
    "ALERTS",
    "ALERTS_FOR_STATE",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "gauge": ("",),
    "stateset": ("",),
    "enum": ("",),
}
TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<var>\$\{[^}]*\}|\$\w+)
      | (?P<num>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[a-z]*)
      | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
      | (?P<open>[{\[(])
      | (?P<close>[}\])])
      | (?P<other>\S)
    """,
    re.VERBOSE,
)


def _tokens(expr: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "", m.group()) for m in TOKEN.finditer(expr)]


def _skip_group(tokens: list[tuple[str, str]], i: int) -> int:
    """Index after the bracket group that opens at ``tokens[i]``."""
    depth = 0
    for j in range(i, len(tokens)):
        kind = tokens[j][0]
        depth += kind == "open"
        depth -= kind == "close"
        if depth == 0:
            return j + 1
    raise ValueError("unbalanced brackets")


def metric_names(expr: str) -> set[str]:
    tokens = _tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "open" and text in "{[":
            i = _skip_group(tokens, i)  # label matchers, ranges, subqueries
            continue
        if kind == "ident":
            if text in LABEL_LIST_KEYWORDS and nxt == "(":
                i = _skip_group(tokens, i + 1)
                continue
            if text not in KEYWORDS and nxt != "(":
                names.add(text)
        i += 1
    return names


def exported_names(module: ModuleType) -> set[str]:
    names: set[str] = set()
    for obj in vars(module).values():
        if isinstance(obj, MetricWrapperBase):
            for family in obj.describe():
                names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def default_collector_names() -> set[str]:
    """process_*/python_* series every prometheus_client process exports."""
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    return {s.name for family in registry.collect() for s in family.samples}


def test_scanner_finds_metrics_and_nothing_else() -> None:
    expr = """
        histogram_quantile(0.99, sum by (service, le) (rate(a_bucket{x="b{c}", y=~"$ns"}[$__rate_interval])))
        / on (job) group_left (instance) b_total offset 5m
        and max without (code) (c:recorded:ratio) > bool 1e3
        or label_replace(up{job=~"t-.+"}, "service", "$1", "job", "t-(.+)") == 0
        unless count(d[5m:1m]) > 0.5 * e  # not_a_metric
    """
    assert metric_names(expr) == {"a_bucket", "b_total", "c:recorded:ratio", "up", "d", "e"}


def test_exported_names_know_prometheus_client_suffixes() -> None:
    names = exported_names(service_metrics)
    assert {"tradingsystem_orders_total", "tradingsystem_build_info", "tradingsystem_orders_open"} <= names
    assert "tradingsystem_hop_latency_seconds_bucket" in names
    assert "tradingsystem_hop_latency_seconds" not in names  # a histogram has no bare series


def _all_exprs() -> list[tuple[str, str]]:
    return [*rule_exprs(), *dashboard_exprs()]


def test_rules_and_all_dashboards_are_scanned() -> None:
    boards = {where.split(":", 1)[0] for where, _ in dashboard_exprs()}
    assert boards == {p.name for p in (MONITORING / "dashboards").glob("*.json")}
    assert len(boards) >= 3
    assert len(list(rule_exprs())) == sum(len(g["rules"]) for g in load_rules()["groups"])


def known_names() -> set[str]:
    recorded = {rule["record"] for g in load_rules()["groups"] for rule in g["rules"] if "record" in rule}
    return (
        exported_names(service_metrics)
        | exported_names(operator_metrics)
        | default_collector_names()
        | PROMETHEUS_BUILTIN
        | recorded
    )


def test_an_unexported_name_is_caught() -> None:
    names = metric_names("sum(rate(tradingsystem_orders_open_total[5m])) / tradingsystem_orders_open")
    assert names - known_names() == {"tradingsystem_orders_open_total"}


@pytest.mark.parametrize(("where", "expr"), _all_exprs(), ids=[where for where, _ in _all_exprs()])
def test_every_referenced_metric_is_exported(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    assert names <= known_names(), f"{where}: unknown metrics {sorted(names - known_names())}"
