"""Issue #13, "Must show" 1-4: the monitoring chain, real, in the kind cluster.

The Prometheus operator (built from its Go module) runs a Prometheus (also built from its Go module) that selects
ServiceMonitors and PrometheusRules by the `release` label, as kube-prometheus-stack users
configure it. Our chart (its own ServiceMonitor, PrometheusRule and dashboard ConfigMaps on) and a
sim TradingSystem with ``spec.monitoring.labels`` carrying that label are then scraped, their rules
loaded (the operator's alerts once, though a second, idle TradingSystem brings its own
PrometheusRule), every dashboard panel's query answered, an alert goes pending -> firing -> resolved for a
real cause, and turning the ServiceMonitor off removes its targets. One module, run in file order
on one cluster; every wait is bounded; timings are printed, never asserted.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kind_helpers import REPO, Cluster, in_cluster, operator_release

from tradingsystem_testing.kind import KindEnvironment
from tradingsystem_testing.prometheus_operator import (
    RELEASE_LABEL,
    PrometheusAPI,
    PrometheusStack,
    StackSettings,
    ensure_monitoring_images,
)

# Cold runs build the Prometheus operator from source inside the first fixture.
pytestmark = [pytest.mark.timeout(3600)]

NAMESPACE = "ts-monitoring"  # the chart and the TradingSystem
RELEASE = "ts"
TS = "mon-sim"
# Only its simulator runs: it is here for its PrometheusRule (not scraped: no ServiceMonitor).
IDLE_TS = "mon-idle"
INTERVAL = "5s"
# Grafana's $__rate_interval for a 5 s scrape interval is 20 s; a minute is what a default
# (15 s) data source gives and is robust to a missed scrape.
RATE_INTERVAL = "1m"
PIPELINE_JOBS = {
    f"tradingsystem-{s}" for s in ("market-data", "signal-bridge", "risk-manager", "execution-engine")
}
OPERATOR_JOB = "tradingsystem-operator"
RULES_DIR = REPO / "monitoring" / "rules"
FIGURES: dict[str, float] = {}


def _figure(name: str, seconds: float) -> None:
    FIGURES[name] = seconds
    print(f"\n[monitoring] {name}: {seconds:.0f} s")


@pytest.fixture(scope="module")
def stack(kind_env: KindEnvironment) -> Iterator[PrometheusStack]:
    images = ensure_monitoring_images(kind_env.dockerd)
    stack = PrometheusStack(kind_env.cluster, images, StackSettings(interval=INTERVAL))
    try:
        stack.install()
        yield stack
    finally:
        stack.uninstall()
        print(f"\n[monitoring] figures (s): { {k: round(v) for k, v in FIGURES.items()} }")


@pytest.fixture(scope="module")
def prom(stack: PrometheusStack) -> PrometheusAPI:
    api = stack.api()
    in_cluster(lambda: api.call("status/buildinfo"), "the Prometheus API", timeout=600)
    _figure("Prometheus CR apply -> API answers", time.monotonic() - stack.prometheus_applied_at)
    return api


def _targets(prom: PrometheusAPI, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    return [t for t in prom.active_targets() if t["labels"].get("namespace") == namespace]


def _up_jobs(prom: PrometheusAPI) -> set[str]:
    return {t["labels"]["job"] for t in _targets(prom) if t["health"] == "up"}


def _ts_manifest(image: str) -> str:
    doc = yaml.safe_load((REPO / "examples" / "sim.yaml").read_text())
    doc["metadata"]["name"] = TS
    doc["spec"]["image"] = image
    doc["spec"]["monitoring"] = {"labels": dict(RELEASE_LABEL), "interval": INTERVAL}
    return yaml.safe_dump(doc)


def _idle_ts_manifest(image: str) -> str:
    doc = yaml.safe_load((REPO / "examples" / "sim.yaml").read_text())
    doc["metadata"]["name"] = IDLE_TS
    spec = doc["spec"]
    spec["image"] = image
    spec["halted"] = True  # no execution-engine
    for section in ("marketData", "signalBridge", "riskManager"):
        spec.setdefault(section, {})["replicas"] = 0
    spec["monitoring"] = {"labels": dict(RELEASE_LABEL), "serviceMonitor": False}
    return yaml.safe_dump(doc)


@pytest.fixture(scope="module")
def system(kind_env: KindEnvironment, product_image: str, prom: PrometheusAPI) -> Iterator[Cluster]:
    """The chart with its ServiceMonitor and dashboards on, and a sim TradingSystem trading."""
    label = next(iter(RELEASE_LABEL.items()))
    helm_args = [
        "--set", "serviceMonitor.enabled=true",
        "--set", f"serviceMonitor.labels.{label[0]}={label[1]}",
        "--set", f"serviceMonitor.interval={INTERVAL}",
        "--set", "serviceMonitor.scrapeTimeout=4s",
        "--set", "grafanaDashboards.enabled=true",
    ]  # fmt: skip
    with operator_release(kind_env, NAMESPACE, RELEASE, helm_args) as cluster:
        t0 = time.monotonic()
        cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=_ts_manifest(product_image))
        cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=_idle_ts_manifest(product_image))
        in_cluster(
            lambda: _up_jobs(prom) & PIPELINE_JOBS, "a first pipeline target scraped", timeout=600, every=1
        )
        _figure("TradingSystem apply -> first pipeline target up", time.monotonic() - t0)
        want = PIPELINE_JOBS | {OPERATOR_JOB}
        in_cluster(lambda: _up_jobs(prom) >= want, "all five targets up", timeout=600, every=1)
        _figure("TradingSystem apply -> all targets up", time.monotonic() - t0)
        yield cluster


def test_every_target_is_up_and_discovered_only_through_our_service_monitors(
    system: Cluster, prom: PrometheusAPI
) -> None:
    targets = _targets(prom)
    assert {t["labels"]["job"] for t in targets} == PIPELINE_JOBS | {OPERATOR_JOB}
    assert [t["scrapeUrl"] for t in targets if t["health"] != "up"] == []
    pools = {t["scrapePool"].rsplit("/", 1)[0] for t in targets}
    assert pools == {
        f"serviceMonitor/{NAMESPACE}/{TS}-metrics",
        f"serviceMonitor/{NAMESPACE}/{RELEASE}-tradingsystem-operator",
    }
    config = prom.call("status/config")["yaml"]
    assert "static_configs" not in config
    # The labels the rules and dashboards select on, as Prometheus stores them.
    series = prom.query(f'up{{namespace="{NAMESPACE}"}} == 1')
    assert {s["metric"]["job"] for s in series} == PIPELINE_JOBS | {OPERATOR_JOB}


def test_the_operators_replica_gauges_name_the_tradingsystem_and_its_namespace(
    system: Cluster, prom: PrometheusAPI
) -> None:
    # TradingSystemServiceUnavailable compares these; honorLabels keeps their `namespace`.
    expr = f'tradingsystem_operator_service_desired_replicas{{namespace="{NAMESPACE}",tradingsystem="{TS}"}}'
    series = in_cluster(lambda: prom.query(expr), "the operator's replica gauges scraped", timeout=120)
    assert {s["metric"]["service"] for s in series} >= {
        j.removeprefix("tradingsystem-") for j in PIPELINE_JOBS
    }


Groups = dict[str, list[str]]  # group name -> its rules' names


def _rule_file_groups(name: str = "tradingsystem.rules.yaml") -> Groups:
    doc = yaml.safe_load((RULES_DIR / name).read_text())
    return {g["name"]: [r.get("alert") or r["record"] for r in g["rules"]] for g in doc["groups"]}


def _loaded_rule_files(prom: PrometheusAPI) -> list[Groups]:
    """The rules API's groups by rule file, in a stable order: the Prometheus operator writes one
    rule file per PrometheusRule it selects."""
    files: dict[str, Groups] = {}
    for g in prom.rule_groups():
        files.setdefault(g["file"], {})[g["name"]] = [r["name"] for r in g["rules"]]
    return sorted(files.values(), key=lambda groups: sorted(groups))


def test_the_rules_api_lists_the_operators_group_once_and_each_systems_groups_once_per_system(
    system: Cluster, prom: PrometheusAPI
) -> None:
    # One rule file per PrometheusRule: the chart's, mon-sim's and mon-idle's.
    operator, systems = _rule_file_groups("operator.rules.yaml"), _rule_file_groups()
    want = sorted([operator, systems, systems], key=lambda groups: sorted(groups))
    deadline = time.monotonic() + 300
    got = _loaded_rule_files(prom)
    while got != want and time.monotonic() < deadline:
        time.sleep(5)
        got = _loaded_rule_files(prom)
    assert got == want
    assert all(r["health"] == "ok" for g in prom.rule_groups() for r in g["rules"])


def _records() -> list[str]:
    return [r for names in _rule_file_groups().values() for r in names if ":" in r]


def test_every_recording_rule_produces_series(system: Cluster, prom: PrometheusAPI) -> None:
    def empty() -> list[str] | None:
        missing = [r for r in _records() if not prom.query(f'{r}{{namespace="{NAMESPACE}"}}')]
        return missing or None

    deadline = time.monotonic() + 420
    missing = empty()
    while missing and time.monotonic() < deadline:
        time.sleep(10)
        missing = empty()
    assert missing is None, f"recording rules without a series after minutes of trading: {missing}"


# --- dashboards --------------------------------------------------------------------------------


def _dashboards(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """The dashboards as the Grafana sidecar reads them: the chart's labelled ConfigMaps."""
    cms = cluster.json("-n", NAMESPACE, "get", "configmaps", "-l", "grafana_dashboard=1")["items"]
    out = {}
    for cm in cms:
        assert cm["metadata"]["annotations"]["grafana_folder"] == "TradingSystem"
        for body in cm["data"].values():
            d = json.loads(body)
            out[d["title"]] = d
    return out


def _panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query target, rows included."""
    out = []
    for panel in dashboard["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            out += [(p["title"], t["expr"]) for t in p.get("targets", []) if t.get("expr")]
    return out


def _fill(expr: str, variables: dict[str, str]) -> str:
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in re.sub(r"\$(labels|value)\b", "", expr), f"unfilled variable in {expr}"
    return expr


def _variables(dashboard: dict[str, Any], prom: PrometheusAPI) -> dict[str, str]:
    """Template variables filled from the live system, as Grafana would (label_values queries)."""
    values = {"__rate_interval": RATE_INTERVAL, "__interval": INTERVAL, "__range": "1h"}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["definition"])
        assert m, f"{dashboard['title']}: variable {var['name']} is not a label_values query"
        found = prom.label_values(m.group(2), m.group(1))
        assert NAMESPACE in found or var["name"] != "namespace", f"{var['name']} offers {found}"
        values[var["name"]] = NAMESPACE if var["name"] == "namespace" else "|".join(map(re.escape, found))
    return values


def _alerts_panel(expr: str) -> bool:
    # Shows firing alerts: empty while nothing fires, proven in the alert test while one does.
    return expr.lstrip().startswith("sum by (alertname") and "ALERTS" in expr


def test_every_dashboard_panel_query_returns_series_after_minutes_of_trading(
    system: Cluster, prom: PrometheusAPI
) -> None:
    dashboards = _dashboards(system)
    assert set(dashboards) == {
        "TradingSystem / Pipeline",
        "TradingSystem / Trading",
        "TradingSystem / Health",
    }
    queries = []
    for title, d in sorted(dashboards.items()):
        variables = _variables(d, prom)
        queries += [(f"{title} / {panel}", _fill(e, variables)) for panel, e in _panel_queries(d)]
    checked = [(name, e) for name, e in queries if not _alerts_panel(e)]
    print(f"\n[monitoring] {len(checked)} panel queries ({len(queries) - len(checked)} alert tables)")

    def empty() -> list[str]:
        return [f"{name}: {e}" for name, e in checked if not prom.query(e)]

    # Counters of rare events (fills, rejects) need a few minutes of simulated trading.
    deadline = time.monotonic() + 480
    missing = empty()
    while missing and time.monotonic() < deadline:
        time.sleep(15)
        missing = empty()
    assert missing == [], "panels without data:\n" + "\n".join(missing)


# --- an alert for a real cause -------------------------------------------------------------------


def _alert_state(prom: PrometheusAPI, name: str) -> str | None:
    states = [
        a["state"]
        for a in prom.alerts()
        if a["labels"]["alertname"] == name and a["labels"].get("namespace") == NAMESPACE
    ]
    return states[0] if states else None


def test_halting_trading_takes_the_halted_alert_pending_then_firing_then_resolved(
    system: Cluster, prom: PrometheusAPI
) -> None:
    alert = "TradingSystemTradingHalted"  # for: 1m, as shipped
    patch = ["-n", NAMESPACE, "patch", "tradingsystem", TS, "--type=merge", "-p"]
    system.kubectl(*patch, json.dumps({"spec": {"halted": True}}))
    t0 = time.monotonic()
    in_cluster(lambda: _alert_state(prom, alert) == "pending", f"{alert} pending", timeout=300, every=1)
    _figure("halt -> alert pending", time.monotonic() - t0)
    in_cluster(lambda: _alert_state(prom, alert) == "firing", f"{alert} firing", timeout=300, every=1)
    _figure("halt -> alert firing", time.monotonic() - t0)
    # Once, from mon-sim's own PrometheusRule: mon-idle's, in the same namespace, is scoped to
    # mon-idle's series (unscoped, each system's copy would raise it: twice).
    firing = [
        a
        for a in prom.alerts()
        if a["labels"]["alertname"] == alert and a["labels"].get("namespace") == NAMESPACE
    ]
    assert [a["labels"].get("tradingsystem") for a in firing] == [TS]
    # The Health dashboard's "Firing alerts" table shows it.
    health = _dashboards(system)["TradingSystem / Health"]
    tables = [e for _, e in _panel_queries(health) if _alerts_panel(e)]
    assert tables, "the Health dashboard has no firing-alerts table"
    for expr in tables:
        assert alert in {s["metric"]["alertname"] for s in prom.query(expr)}
    system.kubectl(*patch, json.dumps({"spec": {"halted": False}}))
    t1 = time.monotonic()
    in_cluster(lambda: _alert_state(prom, alert) is None, f"{alert} resolved", timeout=300, every=1)
    _figure("resume -> alert resolved", time.monotonic() - t1)


def test_turning_the_service_monitor_off_removes_the_targets_within_the_reload_interval(
    system: Cluster, prom: PrometheusAPI
) -> None:
    patch = {"spec": {"monitoring": {"serviceMonitor": False}}}
    system.kubectl("-n", NAMESPACE, "patch", "tradingsystem", TS, "--type=merge", "-p", json.dumps(patch))
    t0 = time.monotonic()
    in_cluster(
        lambda: (
            not system.kubectl(
                "-n", NAMESPACE, "get", "servicemonitor", f"{TS}-metrics", "--ignore-not-found"
            )
        ),
        "the ServiceMonitor deleted by the operator",
    )
    in_cluster(
        lambda: {t["labels"]["job"] for t in _targets(prom)} == {OPERATOR_JOB},
        "only the operator's target left",
        timeout=300,
        every=1,
    )
    _figure("serviceMonitor off -> targets gone", time.monotonic() - t0)
