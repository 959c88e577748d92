"""Fixtures: the real simulator on a free port, settings pointing every endpoint at free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tradingsystem.common.config import Settings
from tradingsystem_testing import eventually, free_port
from tradingsystem_testing.sim import SimulatorThread

SYMBOL = "AAPL"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread([SYMBOL], seed=7, tick_rate=50) as s:
        eventually(lambda: s.call(lambda: SYMBOL in s.ledger.quotes), "first quote")
        yield s


def sim_env(sim: SimulatorThread, tmp_path: Path, **execution: Any) -> dict[str, str]:
    """TS_* environment for an engine against ``sim`` (also used for subprocesses)."""
    env = {
        "TS_MODE": "sim",
        "TS_SYMBOLS": f'["{SYMBOL}"]',
        "TS_SIM__HOST": "127.0.0.1",
        "TS_SIM__PORT": str(sim.port),
        "TS_BUS__RISK": f"tcp://127.0.0.1:{free_port()}",
        "TS_BUS__EXECUTION": f"tcp://127.0.0.1:{free_port()}",
        "TS_EXECUTION__HTTP_PORT": str(free_port()),
        "TS_EXECUTION__DB_PATH": str(tmp_path / "execution.sqlite"),
        "TS_EXECUTION__BACKOFF_BASE_S": "0.05",
        "TS_EXECUTION__BACKOFF_MAX_S": "0.5",
        "TS_LOG_FORMAT": "text",
    }
    env.update({f"TS_EXECUTION__{k.upper()}": str(v) for k, v in execution.items()})
    return env


@pytest.fixture
def make_settings(
    sim: SimulatorThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    def make(**execution: Any) -> Settings:
        for k, v in sim_env(sim, tmp_path, **execution).items():
            monkeypatch.setenv(k, v)
        return Settings()

    return make


def ledger_orders(sim: SimulatorThread, cid: str) -> list[dict[str, Any]]:
    return [o for o in sim.call(sim.ledger.snapshot)["orders"] if o["client_order_id"] == cid]


def ledger_positions(sim: SimulatorThread) -> dict[str, float]:
    positions = sim.call(sim.ledger.snapshot)["positions"]
    return {s: float(p["qty"]) for s, p in positions.items() if float(p["qty"])}
