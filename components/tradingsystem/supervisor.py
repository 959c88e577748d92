"""``tradingsystem run``: the simulator and the four services as separate processes.

The supervisor writes the validated settings to one YAML file (secrets excluded: children
inherit ``ALPACA_*`` from the environment), starts the processes in the catalogue's
``start_order`` (consumers first; see ``common/services.py``), waits for each ``/readyz``, then prints a live summary read from the services' own endpoints
until Ctrl-C or ``duration``. ``Pipeline`` is also what the end-to-end tests use.

The risk-manager's control port is bound to 127.0.0.1 and guarded by a bearer token: a fresh
one in ``<run dir>/control-token`` (mode 0600, path printed once), or the user's
``--control-token-file``; the supervisor's own ``/state`` reads carry it.

No service outlives the supervisor: SIGTERM, SIGHUP, Ctrl-C and a closed output pipe
(``tradingsystem run | head``) stop them in order, and on Linux each child also gets SIGTERM
from the kernel if the supervisor dies any other way (SIGKILL, OOM), see ``die_with_parent``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tradingsystem.common.config import Mode, Settings
from tradingsystem.common.control import ControlClient, read_token, token_from_settings, write_token
from tradingsystem.common.services import (
    BY_NAME,
    EXECUTION_ENGINE,
    MARKET_DATA,
    PIPELINE,
    RISK_MANAGER,
    SIGNAL_BRIDGE,
    SIM,
    start_order,
)


def die_with_parent() -> list[str]:
    """argv prefix that makes a child get SIGTERM (a graceful stop) when this process dies,
    even by SIGKILL or a closed terminal, so no service outlives its supervisor.

    ``setpriv --pdeathsig`` (util-linux) sets Linux's PR_SET_PDEATHSIG, then execs the command
    under the same pid. The kernel ties the signal to the *thread* that forked, so it is only
    used from the main thread: from a worker thread the child would stop when that thread
    ended. Without setpriv (not Linux) children are stopped only by an orderly shutdown.
    """
    setpriv = shutil.which("setpriv")
    if setpriv and threading.current_thread() is threading.main_thread():
        return [setpriv, "--pdeathsig", "TERM", "--"]
    return []


def http_port(settings: Settings, name: str) -> int:
    """The configured HTTP port of a catalogue service (the simulator's is its API port)."""
    if name == SIM.name:
        return settings.sim.port
    port: int = getattr(settings, BY_NAME[name].section).http_port
    return port


def settings_yaml(settings: Settings) -> str:
    # The control token travels as a file path (risk.control_token_file), never inline.
    exclude = {"alpaca": {"api_key", "secret_key"}, "risk": {"control_token"}}
    data = settings.model_dump(mode="json", exclude=exclude)
    return yaml.safe_dump(data, sort_keys=False)


def get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


def scrape(url: str, timeout: float = 2.0) -> dict[str, float]:
    """Flatten a /metrics page to {'name{label=value,...}': value} (sums over nothing)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def total(metrics: dict[str, float], name: str, **labels: str) -> float:
    """Sum of samples of ``name`` whose labels include ``labels``."""
    want = [f"{k}={v}" for k, v in labels.items()]
    acc = 0.0
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base == name and all(w in rest for w in want):
            acc += value
    return acc


@dataclass
class Pipeline:
    """Start/stop the simulator (sim mode) and the four services as child processes."""

    settings: Settings
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tradingsystem-")))
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    control: ControlClient | None = None  # the risk-manager's control port, set by start()

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yaml"

    @property
    def token_path(self) -> Path:
        """Where the control token is: the user's file, or one generated in the run directory."""
        return self.settings.risk.control_token_file or self.workdir / "control-token"

    def _prepare_control(self) -> None:
        """Control stays on loopback; its token is a 0600 file that the risk-manager reads.

        A token given inline (TS_RISK__CONTROL_TOKEN) is written to such a file too, so the
        children's config names a path, never the token.
        """
        rs = self.settings.risk
        if rs.control_token_file is not None:
            token = read_token(rs.control_token_file)
        else:
            token = write_token(self.token_path, token_from_settings(rs))
        risk = rs.model_copy(
            update={"control_host": "127.0.0.1", "control_token_file": self.token_path, "control_token": None}
        )
        self.settings = self.settings.model_copy(update={"risk": risk})
        self.control = ControlClient(f"http://127.0.0.1:{risk.control_port}", token, timeout=5.0)

    def url(self, name: str, path: str) -> str:
        host = "127.0.0.1"
        port = http_port(self.settings, name)
        return f"http://{host}:{port}{path}"

    def start_process(self, name: str) -> subprocess.Popen[bytes]:
        cmd = [
            *die_with_parent(),
            sys.executable,
            "-m",
            "tradingsystem.cli",
            name,
            "--config",
            str(self.config_path),
        ]
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            # An inherited inline token would clash with the file the config names.
            env={k: v for k, v in {**os.environ, **self.env}.items() if k != "TS_RISK__CONTROL_TOKEN"},
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        path = "/v2/clock" if name == SIM.name else "/readyz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; see {self.workdir / (name + '.log')}"
                )
            status, _ = get_json(self.url(name, path), timeout=1.0)
            # The simulator answers 403 without keys: that still proves it serves.
            if status == 200 or (name == SIM.name and status in (401, 403)):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready after {timeout:.0f}s; see {self.workdir / (name + '.log')}")

    def start(self, timeout: float = 60.0) -> Pipeline:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._prepare_control()
        self.config_path.write_text(settings_yaml(self.settings))
        for svc in start_order(with_sim=self.settings.mode is Mode.SIM):
            self.start_process(svc.name)
            self.wait_ready(svc.name, timeout)
        return self

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop_process(name)

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> dict[str, Any]:
        md = scrape(self.url(MARKET_DATA.name, "/metrics"))
        sb = scrape(self.url(SIGNAL_BRIDGE.name, "/metrics"))
        rm = scrape(self.url(RISK_MANAGER.name, "/metrics"))
        ee = scrape(self.url(EXECUTION_ENGINE.name, "/metrics"))
        _, state = self.control.state() if self.control is not None else (0, None)
        state = state or {}
        return {
            "ticks": total(md, "tradingsystem_marketdata_ticks_total"),
            "dropped": total(md, "tradingsystem_messages_dropped_total"),
            "signals": total(sb, "tradingsystem_signals_total"),
            "approved": total(rm, "tradingsystem_risk_orders_approved_total"),
            "rejected": total(rm, "tradingsystem_risk_rejects_total"),
            "fills": total(ee, "tradingsystem_fills_total"),
            "risk_state": state.get("state", "?"),
            "positions": state.get("positions", {}),
            "pnl": state.get("pnl", {}),
        }


def format_summary(s: dict[str, Any]) -> str:
    def qty(p: Any) -> float:
        return float(p.get("qty", 0)) if isinstance(p, dict) else float(p)

    pos = " ".join(f"{sym}{qty(p):+g}" for sym, p in sorted(s["positions"].items()) if qty(p)) or "flat"
    pnl = s["pnl"] or {}
    return (
        f"{time.strftime('%H:%M:%S')}  ticks {s['ticks']:,.0f} (dropped {s['dropped']:,.0f})  "
        f"signals {s['signals']:,.0f}  orders {s['approved']:,.0f} (rejected {s['rejected']:,.0f})  "
        f"fills {s['fills']:,.0f}  pos {pos}  "
        f"P&L realized {float(pnl.get('realized', 0)):+,.2f} unrealized {float(pnl.get('unrealized', 0)):+,.2f}  "
        f"risk {s['risk_state']}"
    )


@contextlib.contextmanager
def _stop_signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (terminal closed) stop the pipeline in order, as Ctrl-C does."""

    def _raise(*_: object) -> None:
        raise KeyboardInterrupt

    stops = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _raise) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(text: str, end: str = "\n", file: TextIO | None = None) -> None:
    """Print, ignoring an output that has gone away: the pipeline must still be stopped."""
    with contextlib.suppress(BrokenPipeError):
        print(text, end=end, file=file or sys.stdout, flush=True)


def _detach_stdout() -> None:
    """Point stdout at /dev/null once its reader is gone, so nothing else fails writing to it
    (including the interpreter's flush at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run_all(settings: Settings, duration: float | None = None) -> int:
    pipeline = Pipeline(settings)
    tty = sys.stdout.isatty()
    _say(
        f"starting {'simulator + ' if settings.mode is Mode.SIM else ''}{len(PIPELINE)} services "
        f"(mode={settings.mode.value}, symbols={','.join(settings.symbols)}); logs in {pipeline.workdir}"
    )
    with _stop_signals_as_interrupt():
        try:
            pipeline.start()
            print(
                f"control token in {pipeline.token_path} (POST /control, GET /state on "
                f"127.0.0.1:{pipeline.settings.risk.control_port} with 'Authorization: Bearer <token>')",
                flush=True,
            )
            print("all services ready; Ctrl-C to stop", flush=True)
            end = time.monotonic() + duration if duration else None
            while end is None or time.monotonic() < end:
                line = format_summary(pipeline.summary())
                print(("\r" + line + "\x1b[K") if tty else line, end="" if tty else "\n", flush=True)
                time.sleep(1.0 if tty else 5.0)
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:  # whoever read our output is gone (e.g. `| head`): stop, quietly
            _detach_stdout()
        except (RuntimeError, TimeoutError) as exc:
            _say(f"\ntradingsystem: {exc}", file=sys.stderr)
            return 1
        finally:
            _say("\nstopping...")
            pipeline.stop()
    return 0
