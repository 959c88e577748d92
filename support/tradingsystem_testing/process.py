"""The operator as a child process (``tradingsystem-operator run``), for benchmarks and tests that
need its own PID (RSS, SIGKILL) and the real ``run`` path: metrics server and liveness probe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tradingsystem_testing.ports import free_port


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    metrics_port: int
    liveness_port: int

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for pid {self.proc.pid}")

    def get(self, port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return str(resp.read().decode())

    def reconciles(self) -> dict[str, float]:
        """``tradingsystem_operator_reconciles_total`` by result; {} until /metrics serves."""
        try:
            text = self.get(self.metrics_port, "/metrics")
        except OSError:  # the process is still importing kopf or binding its port
            return {}
        return {
            s.labels["result"]: s.value
            for fam in text_string_to_metric_families(text)
            if fam.name == "tradingsystem_operator_reconciles"
            for s in fam.samples
            if s.name.endswith("_total")
        }

    def gauge(self, name: str) -> float | None:
        """An unlabelled gauge from /metrics, e.g. ``tradingsystem_operator_is_leader``; None until
        /metrics serves."""
        try:
            text = self.get(self.metrics_port, "/metrics")
        except OSError:
            return None
        return next(
            (s.value for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name),
            None,
        )

    def is_leader(self) -> bool | None:
        """This process reconciles (holds the Lease); None until /metrics serves."""
        value = self.gauge("tradingsystem_operator_is_leader")
        return None if value is None else value == 1

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies or the OOM killer strikes."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def operator_process(
    kubeconfig: Path,
    namespace: str,
    log: Path,
    resync_s: float = 60.0,
    extra_args: Sequence[str] = (),
) -> Iterator[OperatorProcess]:
    """One namespace-scoped operator on free 127.0.0.1 ports (``extra_args`` appended to ``run``,
    e.g. ``--leader-elect``); stopped (SIGTERM, then SIGKILL) on exit."""
    metrics_port, liveness_port = free_port(), free_port()
    # Without KUBERNETES_* (set inside a pod) kopf logs in with the kubeconfig, not in-cluster.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(KUBECONFIG=str(kubeconfig), TRADINGSYSTEM_OPERATOR_RESYNC_S=str(resync_s))
    argv = [
        *(sys.executable, "-m", "tradingsystem_operator.main", "run", "--namespace", namespace),
        *("--metrics-port", str(metrics_port), "--liveness", f"http://127.0.0.1:{liveness_port}/healthz"),
        *extra_args,
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    op = OperatorProcess(proc, metrics_port, liveness_port)
    try:
        yield op
    finally:
        op.stop()
