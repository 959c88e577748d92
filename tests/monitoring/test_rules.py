"""The shipped alert rules: valid for promtool, unit-tested per alert, documented."""

from __future__ import annotations

import subprocess

import yaml
from promhelpers import RULE_FILES, RULE_TESTS, STATIC_CONFIG, alert_rules, tool

from tradingsystem.common.config import Settings


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules_passes() -> None:
    assert RULE_FILES
    result = _run(tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    result = _run(tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_static_scrape_config_is_valid() -> None:
    result = _run(tool("promtool"), "check", "config", str(STATIC_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_static_scrape_config_loads_every_rule_file() -> None:
    rule_files = yaml.safe_load(STATIC_CONFIG.read_text())["rule_files"]
    assert sorted((STATIC_CONFIG.parent / f).resolve() for f in rule_files) == RULE_FILES


def test_static_scrape_config_follows_the_job_convention_and_default_ports() -> None:
    defaults = Settings()
    ports = {
        "market-data": defaults.market_data.http_port,
        "signal-bridge": defaults.signals.http_port,
        "risk-manager": defaults.risk.http_port,
        "execution-engine": defaults.execution.http_port,
    }
    jobs = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in yaml.safe_load(STATIC_CONFIG.read_text())["scrape_configs"]
    }
    assert jobs == {f"tradingsystem-{svc}": [f"127.0.0.1:{port}"] for svc, port in ports.items()}


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = set(alert_rules())
    assert firing | quiet <= alerts, f"tests for unknown alerts: {(firing | quiet) - alerts}"
    assert alerts - firing == set(), "alerts without a firing test"
    assert alerts - quiet == set(), "alerts without a not-firing test"


def test_every_alert_has_severity_summary_description_runbook() -> None:
    for name, rule in alert_rules().items():
        assert name.startswith("TradingSystem"), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name


def test_the_brief_alerts_exist() -> None:
    required = {
        "TradingSystemServiceDown",
        "TradingSystemMarketDataStale",
        "TradingSystemHighMessageLatency",
        "TradingSystemBrokerErrorRateHigh",
        "TradingSystemBrokerRateLimited",
        "TradingSystemOrderRejectRateHigh",
        "TradingSystemDailyLossLimitNear",
        "TradingSystemDailyLossLimitHit",
        "TradingSystemTradingHalted",
        "TradingSystemCircuitBreakerTripped",
        "TradingSystemOperatorReconcileErrors",
    }
    assert required <= set(alert_rules())
