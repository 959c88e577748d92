"""Helpers for the monitoring tests. A real Prometheus (Debian's ``prometheus`` package) on loopback, for end-to-end checks.

``start_prometheus(targets, rule_for={...})`` writes a config derived from the shipped static
example (same job naming), loads the shipped rule file with only selected ``for:`` durations
shortened (the expressions stay the real ones), starts Prometheus on a free port with a
temporary TSDB, waits until it is ready and returns a small HTTP API client.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tradingsystem_testing import eventually

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
# tradingsystem.rules.yaml (per TradingSystem) and operator.rules.yaml (once, from the Helm chart).
RULE_FILES = sorted((MONITORING / "rules").glob("*.rules.yaml"))
STATIC_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
RULE_TESTS = sorted((MONITORING / "tests").glob("*.yaml"))


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: install Debian's prometheus package (apt-get install prometheus)"
    return path


def load_rules() -> dict[str, Any]:
    """Every shipped rule file's groups, as one rule file."""
    return {"groups": [g for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"]]}


def alert_rules(groups: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """alertname -> rule, from the shipped rule files."""
    doc = groups or load_rules()
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


class Prometheus:
    """The parts of the HTTP API the tests use."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant vector query: [{"metric": {...}, "value": [ts, "v"]}, ...]."""
        data = self._get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/alerts")["alerts"])

    def alert(self, name: str, **labels: str) -> dict[str, Any] | None:
        """The active (pending or firing) alert ``name`` whose labels include ``labels``."""
        for alert in self.alerts():
            if alert["labels"]["alertname"] == name and labels.items() <= alert["labels"].items():
                return dict(alert)
        return None

    def wait_pending_then_firing(self, name: str, timeout: float = 30.0, **labels: str) -> dict[str, Any]:
        """Poll until the alert fires; it must have been seen pending first (``for:`` honoured)."""
        seen: list[str | None] = []

        def firing() -> dict[str, Any] | None:
            alert = self.alert(name, **labels)
            seen.append(alert["state"] if alert else None)
            return alert if alert and alert["state"] == "firing" else None

        alert = eventually(firing, f"{name} {labels} firing", timeout=timeout, every=0.2)
        assert "pending" in seen, f"{name} never seen pending before firing: {seen}"
        return alert


def prometheus_config(targets: dict[str, list[str]], interval: str, rule_file: Path) -> dict[str, Any]:
    """The static example with its targets replaced; jobs keep the example's names."""
    config = yaml.safe_load(STATIC_CONFIG.read_text())
    known = {job["job_name"] for job in config["scrape_configs"]}
    unknown = set(targets) - known - {"tradingsystem-operator"}
    assert not unknown, f"job names outside the convention: {unknown}"
    config["global"] = {
        "scrape_interval": interval,
        "evaluation_interval": interval,
        "scrape_timeout": interval,
    }
    config["rule_files"] = [str(rule_file)]
    config["scrape_configs"] = [
        {"job_name": job, "static_configs": [{"targets": addrs}]} for job, addrs in targets.items()
    ]
    return config


def is_ready(url: str) -> bool:
    """Prometheus at ``url`` answers /-/ready (a probe for ``eventually``)."""
    with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
        return bool(resp.status == 200)


def rule_exprs() -> Iterator[tuple[str, str]]:
    for group in load_rules()["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                # label_values(<series selector>, <label>): only the selector names a metric.
                inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"]["query"])
                assert inner, var["query"]
                yield f"{path.name}: ${var['name']}", inner.group(1)


# start_prometheus(targets, rule_for=None, interval="1s") -> Prometheus (the conftest fixture).
StartPrometheus = Callable[..., Prometheus]
