"""`tradingsystem sim` as its own process: serves on the port it logs, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests


@pytest.fixture
def sim_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "ALPACA_API_KEY": "cli-key", "ALPACA_SECRET_KEY": "cli-very-secret"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tradingsystem.cli",
            "sim",
            "--port",
            "0",
            "--symbols",
            "SPY",
            "--tick-rate",
            "5",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    url = ""
    lines = []
    while time.monotonic() < deadline and not url:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"serving (http://127\.0\.0\.1:\d+)", line)
        url = m.group(1) if m else ""
    try:
        assert url, f"no URL logged: {lines}"
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_cli_serves_with_configured_keys_and_never_logs_the_secret(
    sim_process: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = sim_process
    good = {"APCA-API-KEY-ID": "cli-key", "APCA-API-SECRET-KEY": "cli-very-secret"}
    assert requests.get(f"{url}/v2/assets", headers=good, timeout=5).json()[0]["symbol"] == "SPY"
    bad = {"APCA-API-KEY-ID": "cli-key", "APCA-API-SECRET-KEY": "other"}
    assert requests.get(f"{url}/v2/assets", headers=bad, timeout=5).status_code == 403
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert proc.stderr is not None
    assert "cli-very-secret" not in proc.stderr.read()
