"""Operator test fixtures: the TradingSystem CRD installed in the session's control plane.

The prometheus-operator CRDs are the root fixture ``prometheus_crds`` (tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tradingsystem_testing.controlplane import ControlPlane

# Drift-correction period of the operator under test (read at its startup): short, so drift is
# corrected within seconds; a test that must prove a trigger other than the resync sets it long.
os.environ.setdefault("TRADINGSYSTEM_OPERATOR_RESYNC_S", "2")
CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "tradingsystems.yaml"


@pytest.fixture(scope="session")
def tradingsystem_crd(control_plane: ControlPlane, kubeconfig: Path) -> str:
    return control_plane.install_crds([CRD_FILE])[0]
