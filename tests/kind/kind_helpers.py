"""Helpers for the kind tests: the README's install commands, API-server proxy reads, waits."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tradingsystem.common.services import RISK_MANAGER
from tradingsystem_operator.render import CONTROL_DIR, CONTROL_TOKEN_KEY
from tradingsystem_testing import eventually
from tradingsystem_testing.kind import KindEnvironment

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "trading"  # the README's
T = TypeVar("T")


def readme_install_commands(readme: str) -> list[str]:
    """The shell commands of the README's "Install on Kubernetes" block, comments dropped."""
    section = readme.split("## Install on Kubernetes", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "README: no ```bash block under 'Install on Kubernetes'"
    commands = []
    for line in block.group(1).splitlines():
        cmd = line.split(" #", 1)[0].strip()
        if cmd and not cmd.startswith("#"):
            commands.append(cmd)
    return commands


def localize(command: str, python_image: str) -> str:
    """This machine reaches package registries, not image registries, and only from the host:
    `docker build` gets the local Python base and the host's network. Nothing else changes."""
    words = shlex.split(command)
    if words[:2] != ["docker", "build"]:
        return command
    words[2:2] = ["--network", "host", "--build-arg", f"PYTHON_IMAGE={python_image}"]
    return shlex.join(words)


def in_cluster(probe: Callable[[], T | None], what: str, timeout: float = 300.0, every: float = 2.0) -> T:
    """``eventually`` with the cluster's pace: minutes, and errors count as "not yet" (the API and
    the pods answer with errors while things start)."""
    return eventually(probe, what, timeout=timeout, every=every, ignore=(Exception,))


class Cluster:
    """kubectl reads and writes for the tests, through the environment's kubeconfig."""

    def __init__(self, env: KindEnvironment, namespace: str = NAMESPACE) -> None:
        self.env = env
        self.ns = namespace

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> str:
        return str(self.env.cluster.kubectl(*args, check=check, quiet=True, input=input).stdout)

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def proxy(self, service: str, port: str, path: str) -> Any:
        """GET through the API server's service proxy: no port-forward, nothing bound on the host."""
        raw = self.kubectl(
            "get", "--raw", f"/api/v1/namespaces/{self.ns}/services/http:{service}:{port}/proxy{path}"
        )
        return json.loads(raw)

    def ledger(self, ts: str) -> dict[str, Any]:
        return dict(self.proxy(f"{ts}-sim", "http", "/_sim/ledger"))

    def risk_state(self, ts: str) -> dict[str, Any]:
        """The risk-manager's ``GET /state``, from inside its pod with the operator's token.

        The control port answers only with the bearer token (and its NetworkPolicy admits only the
        operator), and the API server's service proxy does not pass an Authorization header on.
        """
        token_file = f"{CONTROL_DIR}/{CONTROL_TOKEN_KEY}"
        port = RISK_MANAGER.control_port
        script = (
            "import urllib.request as u;"
            f"t=open({token_file!r}).read().strip();"
            f"r=u.Request('http://127.0.0.1:{port}/state',headers={{'Authorization':'Bearer '+t}});"
            "print(u.urlopen(r,timeout=5).read().decode())"
        )
        out = self.kubectl("-n", self.ns, "exec", f"deploy/{ts}-risk-manager", "--", "python", "-c", script)
        return dict(json.loads(out))

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return list(self.json("-n", self.ns, "get", "pods", "-l", selector)["items"])

    def ts_row(self, name: str) -> dict[str, str]:
        """`kubectl get tradingsystems` as a user sees it: column -> value."""
        lines = self.kubectl("-n", self.ns, "get", "tradingsystems", name).splitlines()
        header, row = lines[0], lines[1]
        starts = [m.start() for m in re.finditer(r"\S+", header)]
        cols = [header[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
        vals = [row[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
        return dict(zip(cols, vals, strict=True))


def positions_match(ledger: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """Differences between the risk-manager's book and the simulator's ledger (empty: equal)."""
    book, theirs = state["positions"], ledger["positions"]
    diffs = []
    for symbol in sorted(set(book) | set(theirs)):
        mine = book.get(symbol, {"qty": 0.0, "avg_price": 0.0})
        t = theirs.get(symbol, {"qty": "0", "avg_entry_price": "0"})
        if mine["qty"] != float(t["qty"]) or (
            mine["qty"] and mine["avg_price"] != float(t["avg_entry_price"])
        ):
            diffs.append(
                f"{symbol}: risk {mine['qty']}@{mine['avg_price']} vs sim {t['qty']}@{t['avg_entry_price']}"
            )
    return diffs


def settled_and_equal(cluster: Cluster, ts: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(ledger, risk state) once every order is final at the broker, risk has no open order and
    the books agree."""
    snap = cluster.ledger(ts)
    if any(o["status"] in ("new", "accepted", "pending_new", "partially_filled") for o in snap["orders"]):
        return None
    state = cluster.risk_state(ts)
    if state["open_orders"] != 0 or positions_match(snap, state):
        return None
    return snap, state


@contextmanager
def operator_release(
    env: KindEnvironment, namespace: str, release: str = "ts", helm_args: Sequence[str] = ()
) -> Iterator[Cluster]:
    """A namespace with the chart installed (``helm install --wait``) for one test module, then
    every TradingSystem deleted (children collected), the release uninstalled and the namespace
    gone. The product image must be loaded already (the ``product_image`` fixture)."""
    cluster = Cluster(env, namespace)
    cluster.kubectl("create", "namespace", namespace)
    subprocess.run(
        ["helm", "install", release, str(REPO / "helm" / "tradingsystem-operator"), "-n", namespace,
         "--wait", "--timeout", "10m", *helm_args],
        env=env.cluster.env, check=True, timeout=900,
    )  # fmt: skip
    try:
        yield cluster
    finally:
        cluster.kubectl(
            "-n", namespace, "delete", "tradingsystems", "--all", "--wait=true", "--timeout=180s", check=False
        )
        subprocess.run(
            ["helm", "uninstall", release, "-n", namespace, "--wait"],
            env=env.cluster.env, check=False, timeout=300,
        )  # fmt: skip
        cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=180s", check=False)
