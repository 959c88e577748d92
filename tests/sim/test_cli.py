"""`tradingsystem sim` as its own process: serves on the port it logs, stops cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests


@contextlib.contextmanager
def serve(*flags: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``tradingsystem sim --port 0 FLAGS`` until the block ends; yields the process and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradingsystem.cli", "sim", "--port", "0", *flags],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
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


@pytest.fixture
def sim_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {"ALPACA_API_KEY": "cli-key", "ALPACA_SECRET_KEY": "cli-very-secret"}
    with serve("--symbols", "SPY", "--tick-rate", "5", env=env) as served:
        yield served


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


def test_cli_flags_choose_the_account_the_session_and_the_start() -> None:
    flags = ["--symbols", "SPY,GME", "--account-type", "margin", "--multiplier", "4"]
    flags += ["--hard-to-borrow", "gme", "--session", "regular", "--start-at", "2026-12-05T15:00:00Z"]
    env = {"ALPACA_API_KEY": "", "ALPACA_SECRET_KEY": ""}  # accept any key pair
    with serve(*flags, env=env) as (_, url):
        keys = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
        clock = requests.get(f"{url}/v2/clock", headers=keys, timeout=5).json()
        assert (clock["is_open"], clock["next_open"][:16]) == (
            False,
            "2026-12-07T14:30",
        )  # Monday 09:30 New York
        assert requests.get(f"{url}/v2/account", headers=keys, timeout=5).json()["multiplier"] == "4"
        assert requests.get(f"{url}/v2/assets/GME", headers=keys, timeout=5).json()["easy_to_borrow"] is False


def test_cli_rejects_a_cash_account_with_margin_naming_the_field() -> None:
    cmd = [sys.executable, "-m", "tradingsystem.cli", "sim", "--account-type", "cash", "--multiplier", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "sim.multiplier" in done.stderr
