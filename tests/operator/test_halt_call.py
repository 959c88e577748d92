"""The operator's fast halt (``control.halt``) against a real ``tradingsystem risk-manager``
process on loopback: the right token halts it at once, a wrong one is refused and counted, and
the token is in none of its logs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from tradingsystem.common.control import ControlClient, write_token
from tradingsystem.supervisor import scrape, total
from tradingsystem_operator.control import control_url, halt
from tradingsystem_testing import free_port

DEADLINE_S = 60.0


@dataclass
class RiskProcess:
    proc: subprocess.Popen[bytes]
    control: str
    metrics: str
    token: SecretStr
    log: Path


@pytest.fixture
def risk_manager(tmp_path: Path) -> Iterator[RiskProcess]:
    token = write_token(tmp_path / "token")
    control_port, http_port = free_port(), free_port()
    config = {
        "log_format": "json",
        "bus": {k: f"tcp://127.0.0.1:{free_port()}" for k in ("market_data", "signals", "risk", "execution")},
        "risk": {
            "http_port": http_port,
            "control_port": control_port,
            "control_token_file": str(tmp_path / "token"),
            "reconcile_on_start": False,
            "state_path": str(tmp_path / "risk.sqlite"),  # a fresh book per test, not ./var
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    log = tmp_path / "risk-manager.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tradingsystem.cli",
                "risk-manager",
                "--config",
                str(tmp_path / "config.yaml"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "risk-manager not ready"
            time.sleep(0.1)
        yield RiskProcess(
            proc, control_url("127.0.0.1", control_port), f"http://127.0.0.1:{http_port}", token, log
        )
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_operators_halt_call_halts_a_running_risk_manager(risk_manager: RiskProcess) -> None:
    result = asyncio.run(halt(risk_manager.control, risk_manager.token, "spec.halted on trading/demo"))
    print(f"halt call answered {result.status} in {result.seconds * 1000:.1f} ms")
    assert (result.status, result.state) == (200, "HALTED")
    status, state = ControlClient(risk_manager.control, risk_manager.token).state()
    assert (status, state["state"], state["kill_switch"]) == (200, "HALTED", True)
    # The configuration's halt (spec.halted decides it at each start), not a stored control halt.
    assert state["reason"] == "config: spec.halted on trading/demo"


def test_a_wrong_token_is_refused_counted_and_the_token_never_logged(risk_manager: RiskProcess) -> None:
    result = asyncio.run(halt(risk_manager.control, SecretStr("not-the-token"), "stranger"))
    assert result.status == 403 and not result.ok
    assert ControlClient(risk_manager.control, risk_manager.token).state()[1]["state"] == "ACTIVE"
    metrics = scrape(risk_manager.metrics + "/metrics")
    assert total(metrics, "tradingsystem_control_refused_total", reason="wrong_token") == 1
    asyncio.run(halt(risk_manager.control, risk_manager.token, "owner"))
    page = urllib.request.urlopen(risk_manager.metrics + "/metrics", timeout=5).read().decode()
    risk_manager.proc.terminate()
    risk_manager.proc.wait(10)
    secret = risk_manager.token.get_secret_value()
    assert secret not in risk_manager.log.read_text() and secret not in page
    assert "control config_halt" in risk_manager.log.read_text()  # the log is there, the token is not


def test_an_unreachable_risk_manager_is_reported_not_raised() -> None:
    result = asyncio.run(halt(control_url("127.0.0.1", free_port()), SecretStr("t"), "nobody home"))
    assert (result.status, result.ok) == (0, False)
