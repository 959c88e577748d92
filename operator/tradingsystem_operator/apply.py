"""Talking to the API server (kubernetes_asyncio): server-side apply of rendered children, pruning
of children no longer rendered, discovery, Secret digests and status writes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from tradingsystem_operator.models import GROUP, PLURAL, VERSION, Reason
from tradingsystem_operator.render import MANAGER, ROTATION_ANNOTATION, Observed, digest

FIELD_MANAGER = MANAGER
MONITORING = "monitoring.coreos.com/v1"
# kind -> (apiVersion, plural); PersistentVolumeClaims are never pruned (they hold state) and go
# only with the owner.
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("v1", "configmaps"),
    "Service": ("v1", "services"),
    "Deployment": ("apps/v1", "deployments"),
    "NetworkPolicy": ("networking.k8s.io/v1", "networkpolicies"),
    "PersistentVolumeClaim": ("v1", "persistentvolumeclaims"),
    "ServiceMonitor": (MONITORING, "servicemonitors"),
    "PrometheusRule": (MONITORING, "prometheusrules"),
}
# Secrets we generate (control token, CurveZMQ keys) are applied but never listed or pruned:
# they go with their owner.
APPLIED_KINDS: dict[str, tuple[str, str]] = {**KINDS, "Secret": ("v1", "secrets")}
# Always prunable; ServiceMonitor/PrometheusRule only where their CRDs exist.
PRUNABLE = ("ConfigMap", "Service", "Deployment", "NetworkPolicy")
_OBJ = {200: "object", 201: "object"}
# Digest of the manifest we last applied. A pass applies a child only when this differs or a field
# we set has drifted, so a converged system makes no writes: server-side apply of identical
# content is still a request (and an audit entry) per child per pass.
APPLIED_HASH = "tradingsystem.dev/applied-hash"
Live = dict[tuple[str, str], dict[str, Any]]
# Discovery answers per client (an operator run has one): a newly installed prometheus-operator
# is noticed within this many seconds, without 2 GETs on every pass.
DISCOVERY_TTL_S = 30.0
_discovered: weakref.WeakKeyDictionary[ApiClient, dict[str, tuple[float, frozenset[str]]]] = (
    weakref.WeakKeyDictionary()
)


async def new_api_client() -> ApiClient:
    """A client with the in-cluster service account, else ``$KUBECONFIG`` (or ~/.kube/config)."""
    try:
        config.load_incluster_config()
    except ConfigException:
        # $KUBECONFIG read now: kubernetes_asyncio captures its default path at import time.
        await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return ApiClient()


class CredentialsError(Exception):
    """The referenced Secret is missing or lacks a key. The message names no secret value."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _collection(api_version: str, plural: str, namespace: str) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}"


async def _call(
    api: ApiClient,
    method: str,
    path: str,
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
) -> Any:
    return await api.call_api(
        path,
        method,
        query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        response_types_map=_OBJ,
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def stamped(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its own digest as an annotation (see ``APPLIED_HASH``)."""
    meta = manifest["metadata"]
    annotations = {**meta.get("annotations", {}), APPLIED_HASH: digest(manifest)}
    return {**manifest, "metadata": {**meta, "annotations": annotations}}


def covers(live: Any, want: Any) -> bool:
    """Does the live object hold every value we set? Server defaults (extra keys) are fine.

    An empty list or map we set matches an absent field: the API server drops empty ones.
    """
    if isinstance(want, dict):
        return (not want and not live) or (
            isinstance(live, dict) and all(covers(live.get(k), v) for k, v in want.items())
        )
    if isinstance(want, list):
        return (not want and not live) or (
            isinstance(live, list) and len(live) == len(want) and all(map(covers, live, want))
        )
    return bool(live == want)


def needs_apply(manifest: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """``manifest`` is ``stamped``: apply when new, when our render changed (this also catches
    fields we no longer set) or when someone changed a field we own (drift)."""
    if live is None:
        return True
    ours = manifest["metadata"]["annotations"][APPLIED_HASH]
    if (live["metadata"].get("annotations") or {}).get(APPLIED_HASH) != ours:
        return True
    # List items carry no apiVersion/kind: compare the rest.
    return not covers(live, {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")})


async def apply(api: ApiClient, manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply with our field manager, forcing ownership of the fields we set; returns
    the object as stored (with its status)."""
    api_version, plural = APPLIED_KINDS[manifest["kind"]]
    meta = manifest["metadata"]
    path = f"{_collection(api_version, plural, meta['namespace'])}/{meta['name']}"
    query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
    stored: dict[str, Any] = await _call(api, "PATCH", path, manifest, query, "application/apply-patch+yaml")
    return stored


async def list_children(api: ApiClient, namespace: str, instance: str, kinds: Iterable[str]) -> Live:
    """Our labelled children of ``kinds``, keyed by (kind, name). The listings are independent:
    made concurrently, one round trip instead of one per kind."""
    selector = f"app.kubernetes.io/instance={instance},app.kubernetes.io/managed-by={MANAGER}"

    async def one(kind: str) -> list[tuple[tuple[str, str], dict[str, Any]]]:
        api_version, plural = KINDS[kind]
        listing = await _call(
            api, "GET", _collection(api_version, plural, namespace), query=[("labelSelector", selector)]
        )
        return [((kind, item["metadata"]["name"]), item) for item in listing.get("items", [])]

    return dict(pair for pairs in await asyncio.gather(*(one(k) for k in kinds)) for pair in pairs)


async def prune(
    api: ApiClient, namespace: str, live: Live, keep: Iterable[tuple[str, str]], kinds: Iterable[str]
) -> list[tuple[str, str]]:
    """Delete the ``live`` children of ``kinds`` that are not in ``keep`` ((kind, name) pairs)."""
    wanted, prunable = set(keep), set(kinds)
    deleted = []
    for kind, name in live:
        if kind in prunable and (kind, name) not in wanted:
            api_version, plural = KINDS[kind]
            try:
                await _call(api, "DELETE", f"{_collection(api_version, plural, namespace)}/{name}")
            except ApiException as exc:
                if exc.status != 404:
                    raise
            deleted.append((kind, name))
    return deleted


async def resource_exists(api: ApiClient, api_version: str, plural: str) -> bool:
    """Discovery: does the API server serve this resource (e.g. is the ServiceMonitor CRD installed)?

    Answers are kept ``DISCOVERY_TTL_S`` per client: every pass asks, CRDs come and go rarely.
    """
    cache = _discovered.setdefault(api, {})
    now = time.monotonic()
    hit = cache.get(api_version)
    if hit is None or now - hit[0] >= DISCOVERY_TTL_S:
        hit = cache[api_version] = (now, await _served(api, api_version))
    return plural in hit[1]


async def _served(api: ApiClient, api_version: str) -> frozenset[str]:
    try:
        found = await _call(api, "GET", f"/apis/{api_version}")
    except ApiException as exc:
        if exc.status == 404:
            return frozenset()
        raise
    return frozenset(str(r.get("name")) for r in found.get("resources", []))


async def secret_digest(api: ApiClient, namespace: str, name: str, keys: Iterable[str], salt: str) -> str:
    """A keyed digest of the referenced keys' values, for the pod-template hash annotation.

    Keyed (HMAC with the owner's uid) so the annotation reveals nothing about the values.
    """
    try:
        secret = await _call(api, "GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    except ApiException as exc:
        if exc.status == 404:
            raise CredentialsError(Reason.SECRET_NOT_FOUND, f"Secret {namespace}/{name} not found") from None
        raise
    data = secret.get("data") or {}
    missing = [k for k in keys if not data.get(k)]
    if missing:
        raise CredentialsError(
            Reason.SECRET_KEY_MISSING, f"Secret {namespace}/{name} has no (or empty) key(s) {missing}"
        )
    return keyed_digest(data, keys, salt)


def keyed_digest(data: Mapping[str, str], keys: Iterable[str], salt: str) -> str:
    """HMAC-SHA256 (keyed with ``salt``) of ``data``'s ``keys``: changes with the values, reveals
    nothing about them. No I/O."""
    mac = hmac.new(salt.encode(), digestmod=hashlib.sha256)
    for key in sorted(keys):
        mac.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    return mac.hexdigest()[:16]


async def ensure_owned_secret(
    api: ApiClient,
    namespace: str,
    name: str,
    rotation: str,
    make: Callable[[], dict[str, Any]],
    owner_uid: str,
) -> dict[str, str]:
    """Our generated Secret's data (base64 values), created or regenerated only when needed.

    ``make()`` returns a fresh manifest (new token or keys); it is called only if the Secret is
    missing or ``rotation`` differs from the request it was made for. A Secret of that name not
    controlled by us is left alone (CredentialsError), never overwritten.
    """
    path = f"{_collection('v1', 'secrets', namespace)}/{name}"
    try:
        live: dict[str, Any] | None = await _call(api, "GET", path)
    except ApiException as exc:
        if exc.status != 404:
            raise
        live = None
    if live is not None:
        refs = live["metadata"].get("ownerReferences") or []
        if not any(r.get("uid") == owner_uid and r.get("controller") for r in refs):
            raise CredentialsError(
                Reason.SECRET_NOT_OWNED,
                f"Secret {namespace}/{name} exists but is not ours: rename or delete it",
            )
        annotations = live["metadata"].get("annotations") or {}
        if annotations.get(ROTATION_ANNOTATION) == rotation and live.get("data"):
            return dict(live["data"])
    fresh: dict[str, Any] = make()
    await apply(api, fresh)
    return dict(fresh["data"])


def observe(live: Live) -> tuple[Observed, dict[str, int]]:
    """Per component, from our listed Deployments: available, spec.replicas and ready replicas."""
    available: dict[str, int] = {}
    replicas: dict[str, int] = {}
    ready: dict[str, int] = {}
    for (kind, _), item in live.items():
        if kind != "Deployment":
            continue
        component = item["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")
        status = item.get("status") or {}
        available[component] = int(status.get("availableReplicas") or 0)
        ready[component] = int(status.get("readyReplicas") or 0)
        replicas[component] = int((item.get("spec") or {}).get("replicas") or 0)
    return Observed(available=available, replicas=replicas), ready


async def get_tradingsystem(api: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await _call(
            api, "GET", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


async def patch_status(api: ApiClient, namespace: str, name: str, status: dict[str, Any]) -> None:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
    await _call(api, "PATCH", path, {"status": status}, content_type="application/merge-patch+json")
