"""Helpers for the end-to-end tests: settings on free ports and reads of the services.

Everything here talks to the processes over their real interfaces (HTTP on 127.0.0.1),
never to their objects. Tests wait with ``tradingsystem_testing.eventually``: a condition
polled until a generous deadline, so a loaded machine makes a test slower, not red.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tradingsystem.common.config import Settings
from tradingsystem.supervisor import Pipeline, get_json, scrape, settings_yaml, total
from tradingsystem_testing import free_port


def pipeline_settings(workdir: Path, **sections: Any) -> Settings:
    """Settings with every bus endpoint, HTTP port and the simulator on free loopback ports.

    ``sections`` are merged into the defaults per section (``risk={"max_order_qty": 50}``).
    """

    def bus() -> str:
        return f"tcp://127.0.0.1:{free_port()}"

    base: dict[str, Any] = {
        "mode": "sim",
        "log_format": "text",
        "bus": {
            "market_data": bus(),
            "signals": bus(),
            "risk": bus(),
            "execution": bus(),
            "heartbeat_interval_s": 0.5,
        },
        "market_data": {"http_port": free_port()},
        "signals": {"http_port": free_port()},
        "risk": {
            "http_port": free_port(),
            "control_port": free_port(),
            "state_path": str(workdir / "risk.sqlite"),
        },
        "execution": {"http_port": free_port(), "db_path": str(workdir / "execution.sqlite")},
        "sim": {"port": free_port()},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            base[name] = {**base.get(name, {}), **values}
        else:
            base[name] = values
    return Settings(**base)


def metric(p: Pipeline, process: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` (with ``labels``) on ``process``'s /metrics page."""
    return total(scrape(p.url(process, "/metrics")), name, **labels)


def post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def ledger(p: Pipeline) -> dict[str, Any]:
    status, snap = get_json(p.url("sim", "/_sim/ledger"), timeout=5)
    assert status == 200, f"GET /_sim/ledger answered {status}"
    return snap


def risk_state(p: Pipeline) -> dict[str, Any]:
    assert p.control is not None
    status, state = p.control.state()
    assert status == 200, f"GET /state answered {status}"
    return state


def control(p: Pipeline, action: str, reason: str = "e2e") -> dict[str, Any]:
    assert p.control is not None
    status, body = p.control.control(action, reason)
    assert status == 200
    return body


def rejects(p: Pipeline, reason: str) -> float:
    return metric(p, "risk-manager", "tradingsystem_risk_rejects_total", reason=reason)


def restart_risk_manager(p: Pipeline, **risk: Any) -> None:
    """Restart only the risk manager with changed ``risk`` settings; the rest keeps running.

    The new process reconciles its positions from the simulator at start, as in production.
    """
    p.stop_process("risk-manager")
    p.settings = p.settings.model_copy(update={"risk": p.settings.risk.model_copy(update=risk)}, deep=True)
    p.config_path.write_text(settings_yaml(p.settings))
    p.start_process("risk-manager")
    p.wait_ready("risk-manager")


def stop_and_check(p: Pipeline) -> None:
    """Stop every child and check that none is left running."""
    children = list(p.procs.values())
    p.stop()
    alive = [c.args for c in children if c.poll() is None]
    assert not alive, f"still running after stop: {alive}"


@contextmanager
def running_pipeline(settings: Settings, workdir: Path) -> Iterator[Pipeline]:
    """The simulator and the four services, started in order and always stopped.

    Config, logs and the execution store live in ``workdir`` (kept by pytest for a look
    after a failure, but only the last few runs' and not on a CI machine: so a failure also
    prints the end of every log, which pytest shows with the failure).
    """
    pipeline = Pipeline(settings, workdir=workdir)
    try:
        pipeline.start(timeout=90)
        yield pipeline
    except BaseException:
        print_log_tails(workdir)
        raise
    finally:
        stop_and_check(pipeline)


def print_log_tails(workdir: Path, lines: int = 40) -> None:
    for log in sorted(workdir.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"\n--- last {len(tail)} lines of {log.name} ---", *tail, sep="\n")
