"""The Prometheus operator and a Prometheus in the kind cluster, and a client for its HTTP API.

``ensure_monitoring_images`` builds (once, cached) the operator and config-reloader images from
their Go modules, and a Prometheus image built from its Go module (hack/build-monitoring-images.sh);
``PrometheusStack`` loads them into the cluster, server-side applies the operator's CRDs and our
manifests (hack/monitoring/*.yaml), waits until Prometheus runs, and removes it all again.
``PrometheusAPI`` reads Prometheus' API through the API server's service proxy: no port-forward,
nothing bound on the host. See docs/kind.md ("Monitoring").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from tradingsystem_testing.docker import REPO_ROOT, Dockerd, log, run
from tradingsystem_testing.kind import KindCluster, parse_key_values

MANIFESTS = REPO_ROOT / "hack" / "monitoring"
# kube-prometheus-stack selects ServiceMonitors and PrometheusRules by its Helm release's name.
RELEASE_LABEL = {"release": "kube-prometheus-stack"}
# The CRDs the Prometheus controller reads; without the others (Alertmanager, ThanosRuler,
# PrometheusAgent) the operator leaves those controllers off.
CRDS = ("prometheuses", "servicemonitors", "podmonitors", "probes", "scrapeconfigs", "prometheusrules")


@dataclass(frozen=True)
class MonitoringImages:
    operator: str
    reloader: str
    prometheus: str
    prometheus_version: str  # what the Prometheus image really runs, e.g. v3.5.0
    crds: Path  # the operator's full CRDs, from its Go module

    @property
    def all(self) -> tuple[str, str, str]:
        return (self.operator, self.reloader, self.prometheus)

    @property
    def crd_files(self) -> list[Path]:
        return [self.crds / f"monitoring.coreos.com_{plural}.yaml" for plural in CRDS]


def parse_images(text: str) -> MonitoringImages:
    """What hack/build-monitoring-images.sh prints. No I/O."""
    kv = parse_key_values(text)
    return MonitoringImages(
        operator=kv["operator"],
        reloader=kv["reloader"],
        prometheus=kv["prometheus"],
        prometheus_version=kv["prometheus-version"],
        crds=Path(kv["crds"]),
    )


def ensure_monitoring_images(dockerd: Dockerd) -> MonitoringImages:
    """Build what is missing (Go build: minutes cold, nothing warm) under the session's dockerd."""
    out = run(["bash", str(REPO_ROOT / "hack" / "build-monitoring-images.sh")], env=dockerd.env, stream=True)
    return parse_images(out.stdout)


def render(name: str, values: Mapping[str, str]) -> str:
    """One of hack/monitoring/*.yaml with its ``$placeholders`` filled; a missing one raises. No I/O
    beyond reading the template."""
    return Template((MANIFESTS / name).read_text()).substitute(values)


@dataclass(frozen=True)
class StackSettings:
    namespace: str = "monitoring"  # where the operator's default metricsScrapers expect Prometheus
    name: str = "ts-test"
    interval: str = "30s"  # scrape and rule evaluation (kube-prometheus-stack's); tests use 5s
    release: str = RELEASE_LABEL["release"]


class PrometheusStack:
    """Install the operator and one Prometheus into a namespace of a kind cluster, and remove them."""

    def __init__(self, cluster: KindCluster, images: MonitoringImages, settings: StackSettings) -> None:
        self.cluster = cluster
        self.images = images
        self.settings = settings
        self.prometheus_applied_at = 0.0  # time.monotonic() of the Prometheus CR's kubectl apply

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return str(self.cluster.kubectl(*args, quiet=True, input=input, check=check).stdout)

    def install(self) -> None:
        s, images = self.settings, self.images
        for image in images.all:
            self.cluster.load_image(image)
        # The Prometheus CRD is larger than a client-side apply's last-applied annotation allows.
        for crd in images.crd_files:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        names = [f"{plural}.monitoring.coreos.com" for plural in CRDS]
        self.kubectl("wait", "--for=condition=Established", *[f"crd/{n}" for n in names], "--timeout=120s")
        self.kubectl("create", "namespace", s.namespace)
        values = {
            "namespace": s.namespace,
            "name": s.name,
            "operator_image": images.operator,
            "reloader_image": images.reloader,
            "prometheus_image": images.prometheus,
            "prometheus_version": images.prometheus_version,
            "interval": s.interval,
            "release": s.release,
        }
        self.kubectl("apply", "-f", "-", input=render("prometheus-operator.yaml", values))
        self.kubectl(
            "-n", s.namespace, "rollout", "status", "deployment/prometheus-operator", "--timeout=300s"
        )
        log(f"prometheus-operator running ({images.operator})")
        self.prometheus_applied_at = time.monotonic()
        self.kubectl("apply", "-f", "-", input=render("prometheus.yaml", values))

    def uninstall(self) -> None:
        s = self.settings
        # The Prometheus first, while its operator can still remove the StatefulSet it made.
        self.kubectl(
            "-n", s.namespace, "delete", "prometheus", "--all", "--wait=true", "--timeout=120s", check=False
        )
        self.kubectl("delete", "namespace", s.namespace, "--wait=true", "--timeout=180s", check=False)
        for kind in ("clusterrolebinding", "clusterrole"):
            for suffix in ("prometheus-operator", "prometheus"):
                self.kubectl("delete", kind, f"{s.namespace}-{suffix}", "--ignore-not-found", check=False)
        for crd in self.images.crd_files:
            self.kubectl("delete", "-f", str(crd), "--ignore-not-found", "--wait=true", check=False)

    def api(self) -> PrometheusAPI:
        s = self.settings
        base = f"/api/v1/namespaces/{s.namespace}/services/http:prometheus:web/proxy"
        return PrometheusAPI(lambda path: self.kubectl("get", "--raw", base + path))


def next_steps(settings: StackSettings) -> str:
    """What to type to get a TradingSystem scraped by this Prometheus. No I/O."""
    s = settings
    label = f"{next(iter(RELEASE_LABEL))}={s.release}"
    api = f"/api/v1/namespaces/{s.namespace}/services/http:prometheus:web/proxy/api/v1"
    return "\n".join(
        [
            f"Prometheus operator and Prometheus {s.name!r} running in namespace {s.namespace}; they pick up",
            f"ServiceMonitors and PrometheusRules labelled {label} in every namespace:",
            "  helm install ts helm/tradingsystem-operator -n trading --wait \\",
            f"    --set serviceMonitor.enabled=true --set serviceMonitor.labels.{label} \\",
            "    --set grafanaDashboards.enabled=true",
            f"  spec.monitoring.labels: {{{next(iter(RELEASE_LABEL))}: {s.release}}}   # in the TradingSystem",
            f"  kubectl get --raw '{api}/targets?state=active'",
            f"  kubectl get --raw '{api}/query?query=up'",
        ]
    )


class PrometheusError(RuntimeError):
    pass


def query_path(endpoint: str, params: Mapping[str, str]) -> str:
    """``/api/v1/<endpoint>?k=v`` with the values URL-encoded. No I/O."""
    from urllib.parse import urlencode

    return f"/api/v1/{endpoint}" + (f"?{urlencode(params)}" if params else "")


class PrometheusAPI:
    """Prometheus' HTTP API (v1) through a ``GET path -> body`` function."""

    def __init__(self, get: Callable[[str], str]) -> None:
        self._get = get

    def call(self, endpoint: str, **params: str) -> Any:
        body = json.loads(self._get(query_path(endpoint, params)))
        if body.get("status") != "success":
            raise PrometheusError(f"{endpoint} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) ``expr`` evaluates to now."""
        data = self.call("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self.call("targets", state="active")["activeTargets"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.call("rules")["groups"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.call("alerts")["alerts"])

    def label_values(self, label: str, match: str) -> list[str]:
        return list(self.call(f"label/{label}/values", **{"match[]": match}))
