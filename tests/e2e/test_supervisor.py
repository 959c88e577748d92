"""`tradingsystem run` never leaves its services behind: not when it is SIGKILLed, not when
the reader of its output goes away.

Each test starts a real `tradingsystem run` (simulator + four services as processes) on
free loopback ports and finds its children in /proc.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_helpers import pipeline_settings

from tradingsystem.common.services import START_ORDER
from tradingsystem.supervisor import settings_yaml
from tradingsystem_testing import eventually

pytestmark = pytest.mark.e2e

READY_LINE = b"all services ready"
DEADLINE_S = 60.0  # one process exiting; reached only when something is broken
START_DEADLINE_S = 180.0  # five Python processes starting on a loaded 2-core machine


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, ...), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None and int(fields[1]) == pid:
            kids.append(int(entry.name))
    return kids


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan may wait a while for a reaper that never comes)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    children: list[int]

    def survivors(self) -> list[int]:
        return [pid for pid in self.children if running(pid)]


@contextmanager
def tradingsystem_run(tmp_path: Path) -> Iterator[Run]:
    """A real `tradingsystem run`, its stdout a pipe we read until every service is ready."""
    settings = pipeline_settings(tmp_path, symbols=["AAPL"], sim={"tick_rate": 10})
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(settings))
    with (tmp_path / "supervisor.stderr").open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tradingsystem.cli", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=tmp_path,
            env={**os.environ, "TMPDIR": str(tmp_path)},  # its logs land in tmp_path
        )
    assert proc.stdout is not None
    run = Run(proc, [])
    try:
        out = b""
        deadline = time.monotonic() + START_DEADLINE_S
        while READY_LINE not in out:
            assert time.monotonic() < deadline, f"not ready in time; output so far: {out!r}"
            assert proc.poll() is None, f"exited with {proc.returncode}: {out!r}"
            if select.select([proc.stdout], [], [], 1.0)[0]:
                out += os.read(proc.stdout.fileno(), 4096)
        run.children = children_of(proc.pid)
        assert len(run.children) == 1 + len(START_ORDER)  # the simulator and the four services
        yield run
    finally:
        # Clean up by pid whatever the outcome, so a failing test leaves nothing running.
        for pid in [proc.pid, *run.children]:
            with suppress(ProcessLookupError):
                if running(pid):
                    os.kill(pid, signal.SIGKILL)
        proc.wait(DEADLINE_S)
        proc.stdout.close()


def test_sigkilling_tradingsystem_run_stops_every_service_it_started(tmp_path: Path) -> None:
    with tradingsystem_run(tmp_path) as run:
        run.proc.kill()
        run.proc.wait(DEADLINE_S)
        assert eventually(lambda: not run.survivors() or None, "every child of the killed supervisor to stop")


def test_tradingsystem_run_stops_its_services_and_exits_when_its_output_pipe_closes(tmp_path: Path) -> None:
    with tradingsystem_run(tmp_path) as run:
        assert run.proc.stdout is not None
        run.proc.stdout.close()  # like `tradingsystem run | head -3` once head has its lines
        assert run.proc.wait(DEADLINE_S) == 0
        assert eventually(lambda: not run.survivors() or None, "every child to stop")
        assert b"Traceback" not in (tmp_path / "supervisor.stderr").read_bytes()
