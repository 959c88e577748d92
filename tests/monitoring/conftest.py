"""Fixtures for the monitoring tests; ``promhelpers`` is importable from the test modules
(pytest runs in importlib mode)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tradingsystem.common.config import Settings
from tradingsystem.supervisor import Pipeline

sys.path.insert(0, str(Path(__file__).parent))

from promhelpers import (
    Prometheus,
    StartPrometheus,
    alert_rules,
    is_ready,
    load_rules,
    prometheus_config,
    tool,
)

from tradingsystem_testing import eventually, free_port


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        targets: dict[str, list[str]], rule_for: dict[str, str] | None = None, interval: str = "1s"
    ) -> Prometheus:
        rules = load_rules()
        for name, duration in (rule_for or {}).items():
            alert_rules(rules)[name]["for"] = duration
        rule_file = tmp_path / "rules.yaml"
        rule_file.write_text(yaml.safe_dump(rules))
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(prometheus_config(targets, interval, rule_file)))
        for _attempt in range(3):  # the free port can be taken between probe and bind
            port = free_port()
            log = (tmp_path / f"prometheus-{port}.log").open("wb")
            proc = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={tmp_path / f'tsdb-{port}'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            eventually(
                lambda proc=proc, url=url: proc.poll() is not None or is_ready(url),
                "prometheus to be ready or exit",
                every=0.1,
                ignore=(OSError,),
            )
            if proc.poll() is None:
                return Prometheus(url)
        raise AssertionError(f"prometheus did not start; see logs in {tmp_path}")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    """The simulator and the four services as processes, every port a free one."""

    def endpoint() -> str:
        return f"tcp://127.0.0.1:{free_port()}"

    def start(attempt: int) -> Pipeline:
        settings = Settings.model_validate(
            {
                "sim": {"port": free_port()},
                "bus": {
                    "market_data": endpoint(),
                    "signals": endpoint(),
                    "risk": endpoint(),
                    "execution": endpoint(),
                },
                "market_data": {"http_port": free_port()},
                "signals": {"http_port": free_port()},
                "risk": {"http_port": free_port(), "control_port": free_port()},
                "execution": {
                    "http_port": free_port(),
                    "db_path": str(tmp_path / f"execution-{attempt}.sqlite"),
                },
            }
        )
        running = Pipeline(settings, workdir=tmp_path / f"pipeline-{attempt}")
        try:
            return running.start()
        except (RuntimeError, TimeoutError):
            running.stop()  # start() leaves the processes it did start running
            raise

    try:
        running = start(1)
    except RuntimeError:  # a process exited: one of the free ports was taken by another test meanwhile
        running = start(2)
    try:
        yield running
    finally:
        running.stop()
