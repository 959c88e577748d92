"""Stopping a control plane, or Ctrl-C on ``tradingsystem-dev dev-cluster``, leaves no process and no
data behind."""

from __future__ import annotations

import base64
import json
import os
import selectors
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradingsystem_testing.controlplane import K8S_VERSION, ControlPlane

REPO = Path(__file__).resolve().parents[2]


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (every component gets paths in its data dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:  # exited while we looked
                continue
    return pids


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.k8s
def test_stop_leaves_no_processes_behind() -> None:
    cp = ControlPlane(controller_manager=True).start()
    pids = cp.pids
    data_dir = str(cp.dir)
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    assert all(pid_exists(pid) for pid in pids.values())
    assert sorted(processes_mentioning(data_dir)) == sorted(pids.values())

    cp.stop()

    assert [name for name, pid in pids.items() if pid_exists(pid)] == []
    for pid in pids.values():  # each ran as its own process group: nothing of the group may survive
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    assert processes_mentioning(data_dir) == []
    assert not Path(data_dir).exists()
    cp.stop()  # idempotent


def read_line_with(proc: subprocess.Popen[bytes], prefix: str, timeout: float) -> str:
    """The first stdout line starting with ``prefix``; raw os.read so no buffered line hides from select."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break  # EOF: the command died
                seen += chunk
                for line in seen.decode(errors="replace").splitlines(keepends=True):
                    if line.startswith(prefix) and line.endswith("\n"):
                        return line.strip()
    pytest.fail(f"no line starting with {prefix!r} within {timeout:.0f}s (exit code {proc.poll()}): {seen!r}")


def apiserver_version(kubeconfig: Path) -> dict[str, Any]:
    """GET /version as the kubeconfig's user: what `kubectl version` asks first."""
    config = yaml.safe_load(kubeconfig.read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    pem = kubeconfig.parent / "probe"
    pem.mkdir(exist_ok=True)
    for name, key in (("ca", "certificate-authority-data"), ("cert", "client-certificate-data")):
        (pem / name).write_bytes(base64.b64decode(cluster.get(key) or user[key]))
    (pem / "key").write_bytes(base64.b64decode(user["client-key-data"]))
    context = ssl.create_default_context(cafile=str(pem / "ca"))
    context.load_cert_chain(str(pem / "cert"), str(pem / "key"))
    with urllib.request.urlopen(f"{cluster['server']}/version", context=context, timeout=10) as resp:
        return dict(json.load(resp))


def test_make_dev_cluster_runs_the_dev_cli() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "--no-print-directory", "dev-cluster"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert dry_run.stdout.splitlines()[-1].endswith("/tradingsystem-dev dev-cluster")


@pytest.mark.k8s
def test_dev_cluster_prints_kubeconfig_answers_and_cleans_up_on_ctrl_c() -> None:
    dev_cli = Path(sys.executable).with_name("tradingsystem-dev")  # the installed entry point
    proc = subprocess.Popen([str(dev_cli), "dev-cluster", "--no-prometheus-crds"], stdout=subprocess.PIPE)
    try:
        kubeconfig = Path(read_line_with(proc, "export KUBECONFIG=", 90).removeprefix("export KUBECONFIG="))
        assert kubeconfig.is_file()
        data_dir = str(kubeconfig.parent)
        assert len(processes_mentioning(data_dir)) == 3  # etcd, kube-apiserver, kube-controller-manager
        assert apiserver_version(kubeconfig)["gitVersion"] == K8S_VERSION

        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
    assert processes_mentioning(data_dir) == []
    assert not kubeconfig.exists()


@pytest.mark.k8s
def test_components_die_with_a_killed_parent() -> None:
    """SIGKILL (or os._exit from a timeout) skips every cleanup; PDEATHSIG must still stop the components."""
    script = (
        "import time\n"
        "from tradingsystem_testing.controlplane import ControlPlane\n"
        "cp = ControlPlane(controller_manager=False).start()\n"
        "print('DIR', cp.dir, flush=True)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        data_dir = read_line_with(parent, "DIR ", 90).removeprefix("DIR ")
        assert len(processes_mentioning(data_dir)) == 2  # etcd, kube-apiserver
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout:
            parent.stdout.close()
    deadline = time.monotonic() + 20
    while processes_mentioning(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = processes_mentioning(data_dir)
    for pid in leftovers:  # do not leak into other tests even when failing
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(data_dir, ignore_errors=True)  # nobody was left to remove it
    assert leftovers == []
