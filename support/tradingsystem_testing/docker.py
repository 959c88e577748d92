"""A private dockerd for tests and dev, and the host guard around it (egress firewall, sysctls).

The daemon has its own data root (cached, so images survive), exec root, pidfile and socket — never
the system's — runs in the host network namespace, and uses ``hack/oci-capfilter`` as its default
runtime (runc minus the capabilities this machine lacks, so ``--privileged`` works). See
docs/kind.md.

``HostGuard`` is the ABSOLUTE RULE made code: before any bridge exists it inserts DROP rules from
every docker bridge to the outside interface, and it records the host sysctls that dockerd and the
kubelet change so that ``release()`` can restore them. Its state lives in a file under /run, so
``kind-up`` in one process and ``kind-down`` in another share it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_ROOT = Path(os.environ.get("TRADINGSYSTEM_RUN_DIR", "/run/tradingsystem-docker"))

# What dockerd (forwarding) and the kubelet inside kind's privileged node write host-wide.
HOST_SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "vm.overcommit_memory",
    "kernel.panic",
    "kernel.panic_on_oops",
)
DOCKER_BRIDGES = ("br-+", "docker0")
RULE_COMMENT = "tradingsystem-no-egress"
# Debian packages the runtime needs; .ci/run installs them (hack/install-container-runtime.sh).
RUNTIME_COMMANDS = ("dockerd", "containerd", "runc", "debootstrap", "iptables", "docker")


class ContainerRuntimeUnavailable(RuntimeError):
    """Containers cannot run here (a missing command or capability); the message says which."""


def cache_root() -> Path:
    if env := os.environ.get("TRADINGSYSTEM_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tradingsystem"


def log(message: str) -> None:
    print(f"[kind] {message}", file=sys.stderr, flush=True)


def runtime_unavailable_reason() -> str | None:
    """Why containers cannot run on this machine, or None when they can. No side effects."""
    if os.geteuid() != 0:
        return "containers need root (dockerd, iptables, sysctls)"
    missing = [c for c in RUNTIME_COMMANDS if shutil.which(c) is None]
    if missing:
        return f"missing {', '.join(missing)}: run `bash hack/install-container-runtime.sh` (Debian packages)"
    status = Path("/proc/self/status").read_text()
    cap_eff = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)
    if not cap_eff >> 21 & 1:  # CAP_SYS_ADMIN: mounts, namespaces
        return "no CAP_SYS_ADMIN: this machine cannot create containers"
    return None


# --- egress firewall and sysctls --------------------------------------------------------------


def outside_interface() -> str:
    """The interface the default route leaves by (`ip route get` only looks the route up)."""
    out = subprocess.run(
        ["ip", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[out.index("dev") + 1]


@dataclass(frozen=True)
class FirewallRule:
    tool: str  # iptables | ip6tables
    chain: str
    spec: tuple[str, ...]


def egress_rules(outside: str) -> list[FirewallRule]:
    """DROP (not REJECT: its ICMP replies would leave too) from each docker bridge outwards. No I/O.

    IPv4 rules go into DOCKER-USER, the chain dockerd evaluates before its own ACCEPTs; dockerd
    keeps no IPv6 chains here, so IPv6 rules go straight into FORWARD.
    """
    rules = []
    for bridge in DOCKER_BRIDGES:
        spec = ("-i", bridge, "-o", outside, "-m", "comment", "--comment", RULE_COMMENT, "-j", "DROP")
        rules.append(FirewallRule("iptables", "DOCKER-USER", spec))
        rules.append(FirewallRule("ip6tables", "FORWARD", spec))
    return rules


def _ok(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


class HostGuard:
    """Egress DROP rules + saved sysctls, kept until ``release()``; state in ``RUN_ROOT``."""

    def __init__(self, run_root: Path = RUN_ROOT) -> None:
        self.state_file = run_root / "host-state.json"

    @property
    def engaged(self) -> bool:
        return self.state_file.exists()

    def engage(self) -> None:
        """Idempotent: records the host's values only the first time, (re)inserts missing rules."""
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.state_file.exists():
            state = {
                "sysctls": {k: _sysctl(k) for k in HOST_SYSCTLS},
                "forward_policy": _forward_policy(),
                "outside": outside_interface(),
                # kind bind-mounts /lib/modules; docker creates it (empty) on the host if missing.
                "lib_modules_existed": Path("/lib/modules").exists(),
            }
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1))
            tmp.replace(self.state_file)
            log(f"saved host sysctls {state['sysctls']}")
        state = json.loads(self.state_file.read_text())
        if not _ok("iptables", "-n", "-L", "DOCKER-USER"):
            _run("iptables", "-N", "DOCKER-USER")
        if not _ok("iptables", "-C", "FORWARD", "-j", "DOCKER-USER"):
            _run("iptables", "-I", "FORWARD", "1", "-j", "DOCKER-USER")
        for rule in egress_rules(state["outside"]):
            if not _ok(rule.tool, "-C", rule.chain, *rule.spec):
                _run(rule.tool, "-I", rule.chain, "1", *rule.spec)
        log(f"egress DROP rules in place: docker bridges -> {state['outside']}")

    def release(self) -> None:
        """Restore sysctls and the FORWARD policy, remove our rules. Call after dockerd stopped."""
        if not self.state_file.exists():
            return
        state = json.loads(self.state_file.read_text())
        for key, value in state["sysctls"].items():
            if value is not None and _sysctl(key) != value:
                _run("sysctl", "-qw", f"{key}={value}")
        if state.get("forward_policy"):
            _run("iptables", "-P", "FORWARD", state["forward_policy"])
        for rule in egress_rules(state["outside"]):
            while _ok(rule.tool, "-D", rule.chain, *rule.spec):
                pass
        modules = Path("/lib/modules")
        if not state.get("lib_modules_existed", True) and modules.is_dir() and not any(modules.iterdir()):
            modules.rmdir()
        self.state_file.unlink()
        log(f"restored host sysctls {state['sysctls']}, removed egress rules")


def _sysctl(key: str) -> str | None:
    path = Path("/proc/sys") / key.replace(".", "/")
    return path.read_text().strip() if path.exists() else None


def _forward_policy() -> str | None:
    out = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    return next((line.split()[2] for line in out.splitlines() if line.startswith("-P FORWARD")), None)


# --- dockerd ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DockerdPaths:
    """Where the private daemon keeps things. No I/O."""

    data_root: Path
    exec_root: Path
    pidfile: Path
    socket: Path
    log: Path
    runtime: Path

    @classmethod
    def default(cls) -> DockerdPaths:
        cache = cache_root() / "docker"
        return cls(
            data_root=cache / "data",
            exec_root=RUN_ROOT / "exec",
            pidfile=RUN_ROOT / "dockerd.pid",
            socket=RUN_ROOT / "docker.sock",
            log=cache / "dockerd.log",
            runtime=cache / "oci-capfilter",
        )


RUNTIME_NAME = "ts-runc"


def dockerd_argv(paths: DockerdPaths) -> list[str]:
    """The daemon's command line. No I/O."""
    return [
        "dockerd",
        f"--data-root={paths.data_root}",
        f"--exec-root={paths.exec_root}",
        f"--pidfile={paths.pidfile}",
        f"--host=unix://{paths.socket}",
        "--storage-driver=overlay2",
        f"--add-runtime={RUNTIME_NAME}={paths.runtime}",
        f"--default-runtime={RUNTIME_NAME}",
        "--log-level=warn",
    ]


class Dockerd:
    """Start/stop the private daemon; ``env`` points the docker CLI (and kind) at it."""

    def __init__(self, paths: DockerdPaths | None = None) -> None:
        self.paths = paths or DockerdPaths.default()

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.paths.socket}"}

    def pid(self) -> int | None:
        try:
            pid = int(self.paths.pidfile.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def responsive(self) -> bool:
        return self.paths.socket.exists() and (
            subprocess.run(["docker", "version"], env=self.env, capture_output=True).returncode == 0
        )

    def start(self, timeout: float = 90.0) -> bool:
        """Start unless already running; True when this call started it."""
        if self.pid() is not None and self.responsive():
            return False
        reason = runtime_unavailable_reason()
        if reason:
            raise ContainerRuntimeUnavailable(reason)
        p = self.paths
        for d in (p.data_root, p.exec_root, p.log.parent):
            d.mkdir(parents=True, exist_ok=True)
        # A copy outside the worktree: the daemon may outlive it.
        shutil.copy2(REPO_ROOT / "hack" / "oci-capfilter", p.runtime)
        p.runtime.chmod(0o755)
        log(f"starting dockerd (data root {p.data_root}, socket {p.socket})")
        with p.log.open("ab") as out:
            subprocess.Popen(
                dockerd_argv(p),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.responsive():
            if time.monotonic() > deadline:
                tail = p.log.read_text(errors="replace")[-2000:] if p.log.exists() else ""
                raise ContainerRuntimeUnavailable(f"dockerd did not answer within {timeout:.0f} s:\n{tail}")
            time.sleep(0.5)
        log("dockerd ready")
        return True

    def stop(self, timeout: float = 60.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        log(f"stopping dockerd (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        # Wait for the process itself: dockerd removes its pidfile before it has finished.
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def docker(
        self, *args: str, input: bytes | None = None, check: bool = True, quiet: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], env=self.env, input=input, check=check, quiet=quiet)


class CommandFailed(RuntimeError):
    """A command exited non-zero; the message carries its output (its own error says what to do)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has exited
    except OSError:
        return False


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | str | None = None,
    check: bool = True,
    quiet: bool = False,
    stream: bool = False,
    cwd: Path | None = None,
    timeout: float | None = 3600,
) -> subprocess.CompletedProcess[str]:
    """Run a command, stdout captured; ``stream``: its stderr (progress lines) passes through."""
    if not quiet:
        log("$ " + " ".join(argv))
    proc = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        input=input.decode() if isinstance(input, bytes) else input,
        stdout=subprocess.PIPE,
        stderr=None if stream else subprocess.PIPE,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or "")[-3000:] + (proc.stdout or "")[-1000:]
        raise CommandFailed(f"{' '.join(argv[:4])} ... exited {proc.returncode}:\n{detail}")
    return proc
