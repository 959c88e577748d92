"""Smoke test of the CurveZMQ hop benchmark in a tiny configuration: both hops, plain and Curve,
deliver every message and the table gives the Curve row as a ratio to the plain one.
No timing assertions: the numbers depend on the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import curve_hop
from tradingsystem.common.bus import gen_curve_keypair

pytestmark = pytest.mark.e2e


def test_plain_and_curve_hops_count_every_message_and_are_compared(tmp_path: Path) -> None:
    for name in (curve_hop.SERVER, curve_hop.CLIENT):
        gen_curve_keypair(tmp_path, name)
    hops = (
        curve_hop.hop(500, 1_000, None),
        curve_hop.hop(500, 1_000, tmp_path),
        curve_hop.hop(2_000, None, None),
        curve_hop.hop(2_000, None, tmp_path),
    )
    assert [(h.curve, h.received) for h in hops] == [(False, 500), (True, 500), (False, 2_000), (True, 2_000)]
    table = curve_hop.table([hops], 1_000)
    assert "| plain |" in table and "| curve |" in table and "1.00x" in table
