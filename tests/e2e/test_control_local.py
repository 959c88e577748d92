"""`tradingsystem run`'s control path: a 0600 token generated in the run directory, the control
port on loopback only, strangers refused, the supervisor's own calls authenticated, and the
token in no log, config file or metrics page."""

from __future__ import annotations

import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from e2e_helpers import pipeline_settings, risk_state, running_pipeline

from tradingsystem.supervisor import scrape, total

pytestmark = pytest.mark.e2e


def status_of(url: str, authorization: str | None = None) -> int:
    headers = {"Authorization": authorization} if authorization else {}
    req = urllib.request.Request(url, data=b'{"action": "halt"}', headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_run_guards_control_with_a_private_token_that_never_leaks(tmp_path: Path) -> None:
    settings = pipeline_settings(tmp_path, symbols=["AAPL"], sim={"tick_rate": 10})
    with running_pipeline(settings, tmp_path / "run") as p:
        assert p.control is not None
        token_file = tmp_path / "run" / "control-token"
        assert p.token_path == token_file and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        rs = p.settings.risk
        assert (rs.control_host, rs.control_token_file) == ("127.0.0.1", token_file)
        url = f"http://127.0.0.1:{rs.control_port}/control"
        assert status_of(url) == 401
        assert status_of(url, "Bearer wrong") == 403
        assert risk_state(p)["state"] == "ACTIVE"  # neither stranger halted it
        assert p.summary()["risk_state"] == "ACTIVE"  # the supervisor's own call carries the token
        metrics = scrape(p.url("risk-manager", "/metrics"))
        assert total(metrics, "tradingsystem_control_refused_total") == 2
        pages = [
            urllib.request.urlopen(p.url(s, "/metrics"), timeout=5).read().decode()
            for s in p.procs
            if s != "sim"
        ]
    written = [
        f.read_text(errors="replace")
        for f in (tmp_path / "run").iterdir()
        if f.name != "control-token" and f.is_file()
    ]
    assert written and not [t for t in [*written, *pages] if token in t]
