"""An offline kind cluster for tests and dev: binaries, images, cluster, our image loaded.

``KindEnvironment.up()`` does everything in order — host guard (egress DROP rules, sysctls
saved), private dockerd, binaries (hack/build-kind-binaries.sh), images
(hack/build-kind-images.sh), ``kind create cluster`` with KUBECONFIG set first, CoreDNS without an
upstream — and ``down()`` undoes it. Every step is cached and idempotent; see docs/kind.md.

Set ``TS_KIND_NODE_IMAGE=kindest/node:v1.34.x`` where a registry is reachable to use the stock node
image instead of the one assembled here.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tradingsystem_testing.docker import (
    REPO_ROOT,
    Dockerd,
    HostGuard,
    cache_root,
    log,
    run,
)

K8S_VERSION = "v1.34.4"
NODE_IMAGE_ENV = "TS_KIND_NODE_IMAGE"


def project_version() -> str:
    import tomllib

    return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"])


@dataclass(frozen=True)
class KindSettings:
    """One cluster's settings. No I/O."""

    name: str = "kind"  # kind's default: the README's `kind load docker-image` needs no --name
    k8s_version: str = K8S_VERSION
    # None: assemble the node image offline; else a stock image such as kindest/node:v1.34.x.
    stock_node_image: str | None = field(default_factory=lambda: os.environ.get(NODE_IMAGE_ENV) or None)
    image_tag: str = field(default_factory=lambda: f"tradingsystem:{project_version()}")

    @property
    def kubeconfig(self) -> Path:
        return cache_root() / "kind" / f"{self.name}.kubeconfig"

    @property
    def assets(self) -> Path:
        return cache_root() / f"k8s-{self.k8s_version}"


def kind_config(*, static_cni: bool) -> str:
    """The cluster config. The offline node image carries a static CNI instead of kindnetd. No I/O."""
    lines = ["kind: Cluster", "apiVersion: kind.x-k8s.io/v1alpha4"]
    if static_cni:
        lines += ["networking:", "  disableDefaultCNI: true"]
    lines += ["nodes:", "- role: control-plane"]
    return "\n".join(lines) + "\n"


_FORWARD_BLOCK = re.compile(r"^[ \t]*forward[ \t]+\.[^\n{]*(\{[^}]*\})?[ \t]*\n", re.MULTILINE)


def corefile_without_upstream(corefile: str) -> str:
    """CoreDNS answers cluster names only: nothing in the cluster needs outside names. No I/O."""
    return _FORWARD_BLOCK.sub("", corefile)


def parse_key_values(text: str) -> dict[str, str]:
    """``key=value`` lines (what hack/build-kind-images.sh prints). No I/O."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@dataclass(frozen=True)
class Images:
    python: str  # local Python 3.11 base (debootstrap)
    python_build: str  # + host CA bundle and PIP_CERT, for building here
    node: str


def ensure_binaries(dockerd: Dockerd) -> Path:
    """kind, kubelet, kubeadm, ... (and the control plane): built from Go modules once, cached."""
    out = run(["bash", str(REPO_ROOT / "hack" / "build-kind-binaries.sh")], env=dockerd.env, stream=True)
    return Path(out.stdout.strip().splitlines()[-1])


def ensure_images(dockerd: Dockerd, settings: KindSettings) -> Images:
    env = dict(dockerd.env)
    if settings.stock_node_image:
        env["KIND_NODE_IMAGE"] = settings.stock_node_image
    out = run(["bash", str(REPO_ROOT / "hack" / "build-kind-images.sh")], env=env, stream=True)
    kv = parse_key_values(out.stdout)
    return Images(python=kv["python"], python_build=kv["python-build"], node=kv["node"])


class KindCluster:
    """``kind`` and ``kubectl`` against one named cluster through the private dockerd."""

    def __init__(self, settings: KindSettings, dockerd: Dockerd) -> None:
        self.settings = settings
        self.dockerd = dockerd
        self.kind_bin = str(settings.assets / "kind")
        self.kubectl_bin = str(settings.assets / "kubectl")

    @property
    def env(self) -> dict[str, str]:
        path = f"{self.settings.assets}:{os.environ.get('PATH', '')}"
        return {
            **self.dockerd.env,
            "KUBECONFIG": str(self.settings.kubeconfig),
            "KIND_CLUSTER_NAME": self.settings.name,  # kind commands without --name
            "PATH": path,
        }

    def exists(self) -> bool:
        out = run([self.kind_bin, "get", "clusters"], env=self.env, quiet=True).stdout
        return self.settings.name in out.split()

    def create(self, node_image: str) -> None:
        """Create (or reuse) the cluster; wait for the node, kube-proxy and DNS."""
        self.settings.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        name = self.settings.name
        if self.exists():
            log(f"reusing kind cluster {name}")
            run([self.kind_bin, "export", "kubeconfig", "--name", name], env=self.env)
        else:
            log(f"creating kind cluster {name} from {node_image}")
            # KUBECONFIG is set in env first: kind must never write the user's default kubeconfig.
            run(
                [self.kind_bin, "create", "cluster", "--name", name, "--image", node_image, "--config", "-"],
                env=self.env,
                input=kind_config(static_cni=self.settings.stock_node_image is None),
                stream=True,
            )
        self.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=300s")
        self.kubectl("-n", "kube-system", "rollout", "status", "daemonset/kube-proxy", "--timeout=300s")
        self._dns_without_upstream()

    def _dns_without_upstream(self) -> None:
        corefile = self.kubectl(
            "-n", "kube-system", "get", "configmap", "coredns", "-o", "jsonpath={.data.Corefile}", quiet=True
        ).stdout
        patched = corefile_without_upstream(corefile)
        if patched != corefile:
            import json

            self.kubectl(
                "-n", "kube-system", "patch", "configmap", "coredns", "--type=merge",
                "-p", json.dumps({"data": {"Corefile": patched}}), quiet=True,
            )  # fmt: skip
            log("CoreDNS: upstream `forward` removed (cluster names only)")
            # Also the kick: CoreDNS pods that dialled the API before kube-proxy's rules existed
            # hang ~30 s; new ones start clean and read the new Corefile.
            self.kubectl("-n", "kube-system", "delete", "pod", "-l", "k8s-app=kube-dns", "--wait=false")
        self.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=300s")

    def delete(self) -> None:
        if self.exists():
            run([self.kind_bin, "delete", "cluster", "--name", self.settings.name], env=self.env)
        if not run([self.kind_bin, "get", "clusters"], env=self.env, quiet=True).stdout.split():
            self.dockerd.docker("network", "rm", "kind", check=False, quiet=True)

    def load_image(self, tag: str) -> None:
        run([self.kind_bin, "load", "docker-image", tag, "--name", self.settings.name], env=self.env)

    def kubectl(
        self, *args: str, check: bool = True, quiet: bool = False, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run([self.kubectl_bin, *args], env=self.env, check=check, quiet=quiet, input=input)


def build_product_image(dockerd: Dockerd, images: Images, tag: str) -> None:
    """The README's `docker build -t TAG .`, on the local base (+ CA) and the host's network."""
    run(
        [
            "docker",
            "build",
            "--network=host",
            f"--build-arg=PYTHON_IMAGE={images.python_build}",
            "-t",
            tag,
            ".",
        ],
        cwd=REPO_ROOT,
        env={**dockerd.env, "DOCKER_BUILDKIT": "0"},
        stream=True,
    )


class KindEnvironment:
    """Everything up to a working cluster with our image loaded, and back down."""

    def __init__(self, settings: KindSettings | None = None) -> None:
        self.settings = settings or KindSettings()
        self.guard = HostGuard()
        self.dockerd = Dockerd()
        self.cluster = KindCluster(self.settings, self.dockerd)
        self.started_dockerd = False
        self.images: Images | None = None
        self.timings: dict[str, float] = {}

    def _timed(self, step: str, fn: Callable[[], object]) -> object:
        t0 = time.monotonic()
        result = fn()
        self.timings[step] = time.monotonic() - t0
        log(f"{step}: {self.timings[step]:.0f} s")
        return result

    def prepare(self) -> Images:
        """Guard, dockerd, binaries and images: all a cluster needs, none created yet."""
        self.guard.engage()  # before any bridge exists
        self.started_dockerd = bool(self._timed("dockerd", self.dockerd.start))
        self._timed("binaries", lambda: ensure_binaries(self.dockerd))
        images = self._timed("images", lambda: ensure_images(self.dockerd, self.settings))
        assert isinstance(images, Images)
        self.images = images
        return images

    def create_cluster(self) -> None:
        assert self.images is not None, "prepare() first"
        node = self.images.node
        self._timed("cluster", lambda: self.cluster.create(node))

    def up(self, *, load_product_image: bool = True) -> None:
        images = self.prepare()
        self.create_cluster()
        if load_product_image:
            self._timed(
                "image build", lambda: build_product_image(self.dockerd, images, self.settings.image_tag)
            )
            self._timed("kind load", lambda: self.cluster.load_image(self.settings.image_tag))

    def down(self, *, stop_dockerd: bool = True) -> None:
        """Delete the cluster; stop dockerd and restore the host unless someone else's dockerd."""
        if self.dockerd.responsive():
            self.cluster.delete()
        if stop_dockerd:
            self.dockerd.stop()
            self.guard.release()

    def next_steps(self) -> str:
        s = self.settings
        return "\n".join(
            [
                "Cluster ready. Next:",
                f"  export KUBECONFIG={s.kubeconfig} DOCKER_HOST=unix://{self.dockerd.paths.socket}",
                f"  export PATH={s.assets}:$PATH        # kind, kubectl, helm built here",
                "  kubectl create namespace trading",
                "  helm install ts helm/tradingsystem-operator -n trading --wait",
                "  kubectl -n trading apply -f examples/sim.yaml && kubectl -n trading get ts -w",
                "When done: make kind-down",
            ]
        )
