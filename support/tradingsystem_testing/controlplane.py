"""A real Kubernetes control plane (etcd + kube-apiserver [+ kube-controller-manager]) on loopback.

Used by the test suite (one per pytest session), the operator benchmark and
``tradingsystem-dev dev-cluster``. It starts the binaries the way controller-runtime's envtest does: free 127.0.0.1 ports, a temporary
data directory, generated certificates (CA, one serving certificate, an admin client certificate in
``system:masters`` and a service-account key pair) and RBAC authorization, so permission tests mean
something. Every process runs in its own process group and is stopped (TERM, then KILL) by ``stop()``,
which also runs on ``with`` exit, on interpreter exit and, through ``PR_SET_PDEATHSIG``, when the
parent itself is killed.

No kopf or Kubernetes client here on purpose: the few API calls it needs (readiness, CRD apply) are
plain HTTPS requests, so this module can start a cluster before any client library is configured.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from tradingsystem_testing.ports import free_port
from tradingsystem_testing.waiting import WaitTimeout, eventually

K8S_VERSION = "v1.34.4"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
FIELD_MANAGER = "tradingsystem-controlplane"
_REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = _REPO_ROOT / "hack" / "build-control-plane.sh"
PROMETHEUS_CRDS_DIR = "prometheus-operator-crds"
# Controllers that only make sense with a cloud provider; everything else on-by-default runs.
_CLOUD_CONTROLLERS = ("cloud-node-lifecycle-controller", "service-lb-controller", "node-route-controller")


class ControlPlaneError(RuntimeError):
    """The control plane could not be located, started or talked to."""


class _PortTaken(ControlPlaneError):
    """A port picked as free was grabbed by someone else before our process bound it."""


def cache_dir() -> Path:
    """Where hack/build-control-plane.sh caches the binaries (same rules as the script)."""
    root = os.environ.get("TRADINGSYSTEM_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tradingsystem"
    )
    return Path(root) / f"k8s-{K8S_VERSION}"


def locate_assets(names: Iterable[str]) -> dict[str, Path]:
    """Find each binary (or asset dir) in $KUBEBUILDER_ASSETS, then the cache; build what is missing."""
    names = list(names)
    dirs = [Path(d) for d in (os.environ.get("KUBEBUILDER_ASSETS"), str(cache_dir())) if d]

    def find() -> dict[str, Path]:
        found: dict[str, Path] = {}
        for name in names:
            for d in dirs:
                if (d / name).exists():
                    found[name] = d / name
                    break
        return found

    found = find()
    if len(found) < len(names):
        missing = sorted(set(names) - set(found))
        print(f"[control-plane] missing {', '.join(missing)}: running {BUILD_SCRIPT}", flush=True)
        subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.DEVNULL)
        found = find()
        if len(found) < len(names):
            raise ControlPlaneError(f"{BUILD_SCRIPT} did not produce {sorted(set(names) - set(found))}")
    return found


# --- certificates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """PEM files in the control plane's directory."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def generate_certs(directory: Path) -> Certs:
    """A throw-away CA, a 127.0.0.1 serving cert, a system:masters client cert, a SA key pair.

    EC P-256 everywhere: generating RSA keys would cost more than the rest of start-up prep.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    directory.mkdir(parents=True, exist_ok=True)

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def builder(
        subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("tradingsystem-dev-ca")
    ca = (
        builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        stem: str, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        b = builder(subject, ca_name, key).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        (directory / f"{stem}.crt").write_bytes(
            b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        )
        write_key(directory / f"{stem}.key", key)

    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    write_key(directory / "ca.key", ca_key)
    leaf(
        "serving",
        name("127.0.0.1"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        ],
    )
    leaf("admin", name("tradingsystem-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, [])
    sa_key = ec.generate_private_key(ec.SECP256R1())
    write_key(directory / "sa.key", sa_key)
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Certs(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "serving.crt",
        serving_key=directory / "serving.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )


# --- processes ---------------------------------------------------------------------------------


def _pdeathsig_prefix() -> list[str]:
    """Make the child die with us even if we are SIGKILLed or os._exit()ed (e.g. a test timeout).

    The kernel ties PDEATHSIG to the *thread* that forked, so only use it from the main thread:
    from a worker thread the control plane would die as soon as that thread ended.
    """
    setpriv = shutil.which("setpriv")
    if setpriv and threading.current_thread() is threading.main_thread():
        return [setpriv, "--pdeathsig", "KILL", "--"]
    return []


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.popen.poll() is None:
            return
        tail = self.log_tail()
        cls = _PortTaken if "address already in use" in tail else ControlPlaneError
        raise cls(f"{self.name} exited with code {self.popen.returncode}; last log lines:\n{tail}")

    def stop(self, timeout: float) -> None:
        """TERM the whole process group, KILL it if it does not exit in time; always reap."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        # The leader may be gone while a grandchild still holds the group: KILL whatever is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw.rstrip("s")) if raw else default


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) on free 127.0.0.1 ports.

    >>> with ControlPlane() as cp:
    ...     print(cp.kubeconfig)
    """

    def __init__(
        self,
        *,
        controller_manager: bool = True,
        attach_output: bool | None = None,
        service_cidr: str = SERVICE_CLUSTER_IP_RANGE,
    ) -> None:
        self.with_controller_manager = controller_manager
        self.service_cidr = service_cidr  # a /24 holds ~250 Services; the scale benchmark needs more
        # envtest's switch: stream the components' logs to our stderr instead of files.
        self.attach_output = (
            attach_output
            if attach_output is not None
            else bool(os.environ.get("KUBEBUILDER_ATTACH_CONTROL_PLANE_OUTPUT"))
        )
        self.start_timeout = _env_seconds("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT", 60.0)
        self.stop_timeout = _env_seconds("KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT", 20.0)
        self.dir: Path | None = None
        self.certs: Certs | None = None
        self.apiserver_port = 0
        self.kubeconfig: Path | None = None
        self._processes: list[_Process] = []
        self._ssl: ssl.SSLContext | None = None

    # --- public surface -------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.popen.pid for p in self._processes}

    def start(self, attempts: int = 3) -> ControlPlane:
        names = ["etcd", "kube-apiserver"] + (
            ["kube-controller-manager"] if self.with_controller_manager else []
        )
        binaries = locate_assets(names)
        self.dir = Path(tempfile.mkdtemp(prefix="tradingsystem-k8s-"))
        atexit.register(self.stop)
        try:
            self.certs = generate_certs(self.dir / "pki")
            self._ssl = ssl.create_default_context(cafile=str(self.certs.ca_cert))
            self._ssl.load_cert_chain(str(self.certs.admin_cert), str(self.certs.admin_key))
            attempt = 1
            while True:
                try:
                    self._start_processes(binaries)
                    return self
                except _PortTaken:
                    self._stop_processes()
                    if attempt == attempts:
                        raise
                    attempt += 1
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process (controller-manager, apiserver, etcd) and remove the data dir. Idempotent."""
        self._stop_processes()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        """One HTTPS call to the apiserver as the admin; returns (status, decoded JSON or text)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.apiserver_port, context=self._ssl, timeout=10)
        try:
            payload = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=payload, headers={"Content-Type": content_type})
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except json.JSONDecodeError:
            return resp.status, raw

    def apply(self, obj: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply of one cluster-scoped object whose plural is ``<kind>s`` (CRDs, Namespaces).

        For anything else use a real client; this exists so CRDs can be installed without one.
        """
        api_version, kind, name = obj["apiVersion"], obj["kind"], obj["metadata"]["name"]
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        path = f"{base}/{kind.lower()}s/{name}?fieldManager={FIELD_MANAGER}&force={str(force).lower()}"
        status, result = self.request("PATCH", path, obj, content_type="application/apply-patch+yaml")
        if status >= 300:
            raise ControlPlaneError(f"apply {kind}/{name} failed with {status}: {result}")
        return dict(result)

    def check_alive(self) -> None:
        """Raise ControlPlaneError if any component has exited."""
        for proc in self._processes:
            proc.check_alive()

    def install_crds(self, files: Iterable[Path], timeout: float = 30.0) -> list[str]:
        """Apply CustomResourceDefinitions from YAML files and wait until each is Established."""
        names = []
        for file in files:
            for doc in yaml.safe_load_all(file.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    names.append(self.apply(doc)["metadata"]["name"])
        for name in names:
            self.wait_crd_established(name, timeout)
        return names

    def install_prometheus_operator_crds(self) -> list[str]:
        """ServiceMonitor, PodMonitor and PrometheusRule CRDs (prometheus-operator v0.85.0)."""
        crd_dir = locate_assets([PROMETHEUS_CRDS_DIR])[PROMETHEUS_CRDS_DIR]
        return self.install_crds(sorted(crd_dir.glob("*.yaml")))

    def wait_crd_established(self, name: str, timeout: float = 30.0) -> None:
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"

        def established() -> bool:
            status, crd = self.request("GET", path)
            # Right after creation the status may be absent or hold "conditions": null.
            conditions = ((crd.get("status") or {}).get("conditions") or []) if status == 200 else []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        self._wait(f"CRD {name} Established", established, timeout)

    # --- internals --------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> _Process:
        assert self.dir is not None
        log = self.dir / f"{name}.log"
        out: IO[bytes] | int | None = None if self.attach_output else log.open("ab")
        try:
            popen = subprocess.Popen(
                _pdeathsig_prefix() + argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                start_new_session=True,  # own process group: stop() signals it as a whole
            )
        finally:
            if not isinstance(out, int) and out is not None:
                out.close()
        proc = _Process(name, popen, log)
        self._processes.append(proc)
        return proc

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        def probe() -> bool:
            self.check_alive()  # a component that died fails at once, with its log
            return ready()

        try:
            eventually(
                probe,
                what,
                timeout=timeout,
                every=0.2,
                ignore=(OSError, ssl.SSLError, http.client.HTTPException),
            )
        except WaitTimeout as exc:
            tails = "\n".join(f"--- {p.name}\n{p.log_tail(10)}" for p in self._processes)
            raise ControlPlaneError(f"{exc}\n{tails}") from None

    def _get_ok(self, port: int, path: str, context: ssl.SSLContext | None) -> bool:
        conn: http.client.HTTPConnection
        if context is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        finally:
            conn.close()

    def _start_processes(self, binaries: dict[str, Path]) -> None:
        assert self.dir is not None and self.certs is not None
        certs = self.certs
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        data_dir = self.dir / f"etcd-{etcd_port}"
        self._spawn(
            "etcd",
            [
                str(binaries["etcd"]),
                f"--data-dir={data_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",  # test data: durability is not worth the fsync latency
                "--log-level=warn",
            ],
        )
        self._wait("etcd /health", lambda: self._get_ok(etcd_port, "/health", None), self.start_timeout)

        self.apiserver_port = free_port()
        self._spawn(
            "kube-apiserver",
            [
                str(binaries["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--cert-dir={self.dir / 'apiserver-certs'}",
                f"--tls-cert-file={certs.serving_cert}",
                f"--tls-private-key-file={certs.serving_key}",
                f"--client-ca-file={certs.ca_cert}",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--allow-privileged=true",
                # As envtest: no admission wait for the "default" ServiceAccount of new namespaces.
                "--disable-admission-plugins=ServiceAccount",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.server}/",
                f"--service-account-key-file={certs.sa_pub}",
                f"--service-account-signing-key-file={certs.sa_key}",
            ],
        )
        assert self._ssl is not None
        ctx = self._ssl
        self._wait(
            "kube-apiserver /readyz",
            lambda: self._get_ok(self.apiserver_port, "/readyz", ctx),
            self.start_timeout,
        )
        self.kubeconfig = self._write_kubeconfig()

        if self.with_controller_manager:
            kcm_port = free_port()
            self._spawn(
                "kube-controller-manager",
                [
                    str(binaries["kube-controller-manager"]),
                    f"--kubeconfig={self.kubeconfig}",
                    f"--authentication-kubeconfig={self.kubeconfig}",
                    f"--authorization-kubeconfig={self.kubeconfig}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={kcm_port}",
                    f"--tls-cert-file={certs.serving_cert}",
                    f"--tls-private-key-file={certs.serving_key}",
                    "--controllers=*," + ",".join(f"-{c}" for c in _CLOUD_CONTROLLERS),
                    "--use-service-account-credentials=false",
                    "--leader-elect=false",
                    f"--service-account-private-key-file={certs.sa_key}",
                    f"--root-ca-file={certs.ca_cert}",
                    f"--cluster-signing-cert-file={certs.ca_cert}",
                    f"--cluster-signing-key-file={certs.ca_key}",
                ],
            )
            self._wait(
                "kube-controller-manager /healthz",
                lambda: self._get_ok(kcm_port, "/healthz", ctx),
                self.start_timeout,
            )

    def _stop_processes(self) -> None:
        # Reverse start order: controllers first, etcd last, so the apiserver never loses storage mid-call.
        while self._processes:
            self._processes.pop().stop(self.stop_timeout)

    def _write_kubeconfig(self) -> Path:
        assert self.dir is not None and self.certs is not None

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "tradingsystem-dev",
                    "cluster": {"server": self.server, "certificate-authority-data": b64(self.certs.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": "tradingsystem-admin",
                    "user": {
                        "client-certificate-data": b64(self.certs.admin_cert),
                        "client-key-data": b64(self.certs.admin_key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "tradingsystem-dev",
                    "context": {"cluster": "tradingsystem-dev", "user": "tradingsystem-admin"},
                }
            ],
            "current-context": "tradingsystem-dev",
        }
        path = self.dir / "kubeconfig"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path


def run_dev_cluster(*, controller_manager: bool = True, prometheus_crds: bool = True) -> int:
    """``tradingsystem-dev dev-cluster``: start, print ``export KUBECONFIG=…``, run until stopped."""
    stop = threading.Event()
    # Ctrl-C and SIGTERM only set a flag: an interrupt raised mid-start or mid-print would skip
    # the orderly shutdown. A stop requested during start takes effect once start completes.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with ControlPlane(controller_manager=controller_manager) as cp:
        if prometheus_crds:
            cp.install_prometheus_operator_crds()
        print(f"# control plane {K8S_VERSION} at {cp.server}; pids {cp.pids}; Ctrl-C stops it", flush=True)
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        while not stop.wait(1.0):
            cp.check_alive()
    return 0
