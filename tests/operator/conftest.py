"""Operator test fixtures: CRDs installed in the session's control plane."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradingsystem_operator.controlplane import PROMETHEUS_CRDS_DIR, ControlPlane, locate_assets

# Drift-correction period of the operator under test (read at its startup): short, so drift is
# corrected within seconds; a test that must prove a trigger other than the resync sets it long.
os.environ.setdefault("TRADINGSYSTEM_OPERATOR_RESYNC_S", "2")
CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "tradingsystems.yaml"


def install(control_plane: ControlPlane, docs: list[dict[str, Any]], timeout: float = 30.0) -> list[str]:
    """Apply CRDs and wait (bounded) until each is Established.

    A CRD's status may still be empty (conditions: null) right after it is created.
    """
    names = [str(control_plane.apply(doc)["metadata"]["name"]) for doc in docs]
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            status, body = control_plane.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            conditions = ((body.get("status") or {}).get("conditions") or []) if status == 200 else []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                pending.discard(name)
        time.sleep(0.2)
    if pending:
        raise TimeoutError(f"CRDs not Established within {timeout} s: {sorted(pending)}")
    return names


@pytest.fixture(scope="session")
def tradingsystem_crd(control_plane: ControlPlane, kubeconfig: Path) -> str:
    return install(control_plane, [yaml.safe_load(CRD_FILE.read_text())])[0]


@pytest.fixture(scope="session")
def monitoring_crds(control_plane: ControlPlane) -> list[str]:
    """prometheus-operator's CRDs (ServiceMonitor, PrometheusRule, ...)."""
    crd_dir = locate_assets([PROMETHEUS_CRDS_DIR])[PROMETHEUS_CRDS_DIR]
    docs = [d for f in sorted(crd_dir.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return install(control_plane, [d for d in docs if d.get("kind") == "CustomResourceDefinition"])
