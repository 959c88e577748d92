"""Operator test fixtures: the TradingSystem CRD installed in the session's control plane."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tradingsystem_operator.controlplane import ControlPlane

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "tradingsystems.yaml"


@pytest.fixture(scope="session")
def tradingsystem_crd(control_plane: ControlPlane, kubeconfig: Path) -> str:
    """The committed CRD applied and Established (bounded wait)."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    name = str(control_plane.apply(crd)["metadata"]["name"])
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = control_plane.request("GET", path)
        conditions = ((body.get("status") or {}).get("conditions") or []) if status == 200 else []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return name
        time.sleep(0.2)
    raise TimeoutError(f"CRD {name} not Established within 30 s")
