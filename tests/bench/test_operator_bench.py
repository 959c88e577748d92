"""Smoke test of the operator benchmark with one TradingSystem: it converges, the operator's RSS is
read, the bare-client floor is measured, the resync runs during the idle window and makes no
API write.
No timing assertions: the numbers depend on the machine.

Its own control plane, not the session's: the write count covers all clients, and namespaces that
other tests left Terminating keep the namespace controller deleting."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import operator_apply
from tradingsystem_testing.controlplane import ControlPlane

pytestmark = pytest.mark.k8s


def test_one_tradingsystem_converges_and_the_idle_operator_writes_nothing(tmp_path: Path) -> None:
    with ControlPlane(controller_manager=True) as cp:
        cp.install_crds([operator_apply.CRD_FILE])
        result = operator_apply.measure(cp, 1, resync_s=1.0, idle_s=4.0, log=tmp_path / "operator.log")
    assert len(result.latencies) == 1 and result.latencies[0] > 0
    assert result.rss_mb > 0
    assert len(result.floor) == 1 and result.floor[0] > 0  # the bare client wrote the same objects
    assert result.idle_passes >= 2  # the resync did reconcile during the window...
    assert result.idle_writes.total() == 0, result.idle_writes  # ...and wrote nothing
