"""The monitoring harness's pure parts: the build script's output, our manifests, the API client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradingsystem_testing.prometheus_operator import (
    RELEASE_LABEL,
    MonitoringImages,
    PrometheusAPI,
    PrometheusError,
    StackSettings,
    next_steps,
    parse_images,
    query_path,
    render,
)

VALUES = {
    "namespace": "monitoring",
    "name": "ts-test",
    "operator_image": "tradingsystem-local/prometheus-operator:v0.85.0-abc",
    "reloader_image": "tradingsystem-local/prometheus-config-reloader:v0.85.0-abc",
    "prometheus_image": "tradingsystem-local/prometheus:v3.5.0-def",
    "prometheus_version": "v3.5.0",
    "interval": "5s",
    "release": RELEASE_LABEL["release"],
}


def _docs(name: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(render(name, VALUES))}


def test_the_build_scripts_output_names_the_images_the_version_and_the_crds() -> None:
    out = "operator=o:1\nreloader=r:1\nprometheus=p:1\nprometheus-version=v3.5.0\ncrds=/c/crds\n"
    assert parse_images(out) == MonitoringImages("o:1", "r:1", "p:1", "v3.5.0", Path("/c/crds"))


def test_the_crd_files_are_the_six_the_prometheus_controller_reads() -> None:
    images = parse_images("operator=o\nreloader=r\nprometheus=p\nprometheus-version=v1\ncrds=/c\n")
    assert {p.name for p in images.crd_files} == {
        f"monitoring.coreos.com_{k}.yaml"
        for k in (
            "prometheuses",
            "servicemonitors",
            "podmonitors",
            "probes",
            "scrapeconfigs",
            "prometheusrules",
        )
    }


def test_the_prometheus_object_selects_by_the_release_label_and_declares_the_real_version() -> None:
    spec = _docs("prometheus.yaml")["Prometheus"]["spec"]
    assert spec["serviceMonitorSelector"] == {"matchLabels": RELEASE_LABEL}
    assert spec["ruleSelector"] == {"matchLabels": RELEASE_LABEL}
    assert spec["serviceMonitorNamespaceSelector"] == spec["ruleNamespaceSelector"] == {}
    assert (spec["version"], spec["image"]) == ("v3.5.0", VALUES["prometheus_image"])


def test_the_operator_runs_our_reloader_image_without_root_or_a_writable_root_filesystem() -> None:
    pod = _docs("prometheus-operator.yaml")["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert f"--prometheus-config-reloader={VALUES['reloader_image']}" in container["args"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_operators_cluster_role_grants_no_wildcard_and_no_write_on_what_it_only_reads() -> None:
    rules = _docs("prometheus-operator.yaml")["ClusterRole"]["rules"]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)
    writes = {"create", "update", "patch", "delete"}
    read_only = [r for r in rules if "servicemonitors" in r["resources"] or "namespaces" in r["resources"]]
    assert read_only and all(not writes & set(r["verbs"]) for r in read_only)


def test_a_missing_placeholder_value_stops_rendering() -> None:
    with pytest.raises(KeyError):
        render("prometheus.yaml", {k: v for k, v in VALUES.items() if k != "release"})


def test_query_parameters_are_url_encoded() -> None:
    assert query_path("query", {"query": 'up{job="a"}'}) == "/api/v1/query?query=up%7Bjob%3D%22a%22%7D"


def test_an_api_error_raises_with_prometheus_message_and_a_scalar_is_one_sample() -> None:
    bodies = {
        "/api/v1/query?query=bad%28": {"status": "error", "errorType": "bad_data", "error": "parse error"},
        "/api/v1/query?query=time%28%29": {
            "status": "success",
            "data": {"resultType": "scalar", "result": [1.0, "1"]},
        },
    }
    api = PrometheusAPI(lambda path: json.dumps(bodies[path]))
    with pytest.raises(PrometheusError, match="bad_data: parse error"):
        api.query("bad(")
    assert api.query("time()") == [{"metric": {}, "value": [1.0, "1"]}]


def test_the_next_steps_name_the_label_the_chart_and_the_tradingsystem_need() -> None:
    text = next_steps(StackSettings())
    assert "--set serviceMonitor.labels.release=kube-prometheus-stack" in text
    assert "spec.monitoring.labels: {release: kube-prometheus-stack}" in text
    assert "/api/v1/namespaces/monitoring/services/http:prometheus:web/proxy/api/v1/targets" in text
