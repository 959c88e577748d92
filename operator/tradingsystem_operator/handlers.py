"""kopf wiring only: every trigger funnels into ``reconcile.reconcile`` for one TradingSystem.

Triggers: create/update/resume of the TradingSystem; events of the Deployments we own
(label-filtered on the server) so availability reaches status and opens startup gates, when
something a pass reads from them changed (``resync.deployment_signature``); events of
the Secrets they reference (credentials, own Curve keys), so a rotation rolls the pods within
seconds; and one background loop that resyncs every known object to correct drift. There is no kopf timer: kopf
puts a finalizer on every object with a timer or daemon, and that finalizer makes deletion hang
once the operator is gone. One lock per TradingSystem serialises passes from these triggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import kopf
from prometheus_client import REGISTRY

from tradingsystem_operator import apply as k8s
from tradingsystem_operator.metrics import (
    RECONCILE_DURATION,
    RECONCILE_RESULTS,
    RECONCILES,
    forget_system,
    record_services,
)
from tradingsystem_operator.models import GROUP, KIND, PLURAL, VERSION, Phase
from tradingsystem_operator.reconcile import reconcile
from tradingsystem_operator.render import MANAGER
from tradingsystem_operator.resync import (
    Key,
    deployment_needs_pass,
    deployment_signature,
    due,
    referenced_secrets,
    referencing,
)
from tradingsystem_operator.rules import load_rule_groups
from tradingsystem_operator.status import Problem

# Drift correction period (seconds after an object's last pass); a child's change arrives faster
# through the Deployment watch and a Secret rotation through the Secret watch.
RESYNC_ENV = "TRADINGSYSTEM_OPERATOR_RESYNC_S"
DEFAULT_RESYNC_S = 60.0
# Set by every version of this operator that had a kopf timer; kopf removes its own finalizer from
# an object once no handler requires one, so an upgrade frees objects without any extra step.
FINALIZER = f"{GROUP}/finalizer"
# Server-side filter of the Secret watch: Opaque is what `kubectl create secret generic` and a
# Secret without `type` make; Helm releases, service-account tokens, TLS and registry Secrets
# never reach the operator. A referenced Secret of another type rotates at the next resync.
SECRET_FIELD_SELECTOR = "type=Opaque"
MAX_RETRY_DELAY = 60.0
# Passes in flight across all objects. Each holds its children's listings; unbounded, 100 objects
# created at once would hold them all at the same time (memory) and contend for the API server.
MAX_CONCURRENT_PASSES = 8
# Our own namespace (the chart sets it from the downward API): the NetworkPolicy opens the
# risk-manager's control port to the operator's pods there.
OPERATOR_NAMESPACE = os.environ.get("POD_NAMESPACE", "")
logger = logging.getLogger(__name__)


class TradingSystemDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff-base (a deep copy of the object) only where a change handler reads it.

    kopf builds one for every event of every watched kind, though only TradingSystems have
    create/update/resume handlers; Deployments and Secrets have event handlers, which never see
    a diff. While 100 systems start, ~1,500 Deployment status events made those copies the
    largest part of the operator's CPU (profiled). Other kinds get an empty essence.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        if body.get("kind") not in (KIND, None):
            return kopf.BodyEssence()
        return super().build(body=body, extra_fields=extra_fields)


@kopf.on.startup()
async def startup(
    *,
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    # Our own prefixes, so another kopf operator on the same cluster never mistakes our marks.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = TradingSystemDiffBase(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.reporting_component = MANAGER
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True  # no cluster-wide list of CRDs/namespaces: tighter RBAC
    settings.watching.server_timeout = 300
    # Server-side filters: only our Deployments and only Opaque Secrets are sent to us.
    settings.watching.label_selectors["apps", "deployments"] = f"app.kubernetes.io/managed-by={MANAGER}"
    settings.watching.field_selectors["v1", "secrets"] = SECRET_FIELD_SELECTOR
    memo.api = await k8s.new_api_client()
    memo.locks = {}
    memo.queued = set()
    memo.passes = asyncio.Semaphore(MAX_CONCURRENT_PASSES)
    memo.known = {}  # Key -> names of the user's Secrets it reads (resync.referenced_secrets)
    memo.last_pass = {}  # Key -> loop time the last pass ended (or the object was first seen)
    memo.tasks = set()  # passes started outside kopf's handlers (resync, Secret events)
    memo.deployments = {}  # Deployment uid -> resync.deployment_signature of its last event
    memo.resync_s = _resync_interval()
    memo.resync = asyncio.create_task(_resync_loop(memo), name="tradingsystem-resync")
    memo.rule_groups = load_rule_groups()
    if not memo.rule_groups:
        logger.warning("no monitoring/rules/*.yaml found: PrometheusRule objects will not be created")


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's own readers (service account, then $KUBECONFIG read at call time), independent of
    # any client library's import-time defaults.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def _resync_interval() -> float:
    raw = os.environ.get(RESYNC_ENV, str(DEFAULT_RESYNC_S))
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{RESYNC_ENV} must be a positive number of seconds, got {raw!r}")
    return value


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    resync = getattr(memo, "resync", None)
    if resync is not None:
        resync.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await resync
    for task in list(getattr(memo, "tasks", ())):
        task.cancel()
    api = getattr(memo, "api", None)
    if api is not None:
        await api.close()


@kopf.on.probe(id="reconciles")
def probe(memo: kopf.Memo, **_: Any) -> float:
    """Served on the liveness endpoint: reconcile passes so far (answers only if the loop is alive).

    Fails once the resync loop has died, so Kubernetes restarts an operator that stopped resyncing.
    """
    resync = getattr(memo, "resync", None)
    if resync is not None and resync.done():
        raise RuntimeError("the resync loop has stopped")
    return sum(
        REGISTRY.get_sample_value("tradingsystem_operator_reconciles_total", {"result": r}) or 0.0
        for r in RECONCILE_RESULTS
    )


def _key(body: Mapping[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


async def _run(body: Mapping[str, Any], memo: kopf.Memo, retry: int) -> None:
    key = _key(body)
    async with memo.locks.setdefault(key, asyncio.Lock()), memo.passes:
        await _reconcile(body, memo, retry)


async def _reconcile(body: Mapping[str, Any], memo: kopf.Memo, retry: int) -> None:
    """One pass; the caller holds the object's lock."""
    started = time.monotonic()
    try:
        outcome = await reconcile(memo.api, body, memo.rule_groups, OPERATOR_NAMESPACE)
    finally:
        memo.last_pass[_key(body)] = asyncio.get_running_loop().time()
    RECONCILE_DURATION.observe(time.monotonic() - started)
    RECONCILES.labels("error" if outcome.problem else "success").inc()
    record_services(*_key(body), outcome.status.get("services") or {})
    if outcome.problem is not None:
        kopf.warn(cast(kopf.Body, body), reason=outcome.problem.reason, message=outcome.problem.message)
        raise handler_error(outcome.problem, retry)


def handler_error(problem: Problem, retry: int) -> kopf.TemporaryError | kopf.PermanentError:
    """How kopf goes on after a pass that stopped short: back off and retry, or wait for an edit."""
    if problem.permanent:  # e.g. a spec the models refuse: only an edit (a new update event) helps
        return kopf.PermanentError(problem.message)
    return kopf.TemporaryError(problem.message, delay=min(MAX_RETRY_DELAY, 2.0 ** min(retry, 6)))


@kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile-resume")
@kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile-create")
@kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile-update")
async def on_change(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    await _run(body, memo, retry)


@kopf.on.event(GROUP, VERSION, PLURAL, id="registry")
async def track(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Keep the registry of known objects (the resync loop's and the Secret watch's view)."""
    key = _key(body)
    if event.get("type") == "DELETED":
        memo.known.pop(key, None)
        memo.last_pass.pop(key, None)
        forget_system(*key)
        return
    memo.known[key] = referenced_secrets(body.get("spec") or {})
    memo.last_pass.setdefault(key, asyncio.get_running_loop().time())


async def _resync_loop(memo: kopf.Memo) -> None:
    """Reconcile each known object ``memo.resync_s`` after its last pass, whatever triggered it."""
    loop = asyncio.get_running_loop()
    tick = min(1.0, memo.resync_s / 4)
    while True:
        await asyncio.sleep(tick)
        now = loop.time()
        # The object's lock is held from a trigger until its pass ends, the wait for a turn included.
        busy = {key for key, lock in memo.locks.items() if lock.locked()} | memo.queued
        for key in due(memo.known, memo.last_pass, now, memo.resync_s, busy):
            memo.last_pass[key] = now  # not due again while this pass waits for its turn
            _spawn(memo, key)


def _spawn(memo: kopf.Memo, key: Key) -> None:
    """A coalesced pass for ``key`` as a background task; errors are logged, never raised."""
    task = asyncio.create_task(_logged_pass(key, memo))
    memo.tasks.add(task)
    task.add_done_callback(memo.tasks.discard)


async def _logged_pass(key: Key, memo: kopf.Memo) -> None:
    try:
        await _queue_pass(key, memo)
    except Exception:  # the next resync retries; the change handlers own the backoff
        logger.exception("pass for TradingSystem %s/%s failed", *key)


async def _queue_pass(key: Key, memo: kopf.Memo) -> None:
    """One pass on the freshest parent, unless one is already queued for the object.

    A pass already queued reads children and parent after it gets the lock, so it sees whatever
    caused this call too: one queued pass per object is enough.
    """
    if key in memo.queued:
        return
    memo.queued.add(key)
    try:
        async with memo.locks.setdefault(key, asyncio.Lock()), memo.passes:
            memo.queued.discard(key)
            parent = await k8s.get_tradingsystem(memo.api, *key)
            if parent is None or parent["metadata"].get("deletionTimestamp") or waits_for_edit(parent):
                return
            # A problem is already reported on the TradingSystem; its own handlers retry with backoff.
            with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):
                await _reconcile(parent, memo, retry=0)
    finally:
        memo.queued.discard(key)


def waits_for_edit(body: Mapping[str, Any]) -> bool:
    """This generation already failed permanently: only an edit (the update handler) helps, so
    the resync loop, Deployment and Secret events leave it alone instead of repeating the same
    Warning."""
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    return status.get("phase") == Phase.FAILED and status.get("observedGeneration") == generation


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGER})
async def on_deployment(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    owner = next((r for r in body["metadata"].get("ownerReferences", []) if r.get("kind") == KIND), None)
    if owner is None or not hasattr(memo, "api"):
        return
    uid, kind = body["metadata"]["uid"], event.get("type")
    signature = deployment_signature(body)
    # Nothing a pass reads from it changed (e.g. the controller's own status bookkeeping), or a
    # pass already read it (its own apply's ADDED).
    needed = deployment_needs_pass(kind, memo.deployments.get(uid), signature)
    if kind == "DELETED":
        memo.deployments.pop(uid, None)
    else:
        memo.deployments[uid] = signature
    if not needed:
        return
    # Coalesced: a Deployment changes several times while it rolls out, five Deployments per object.
    await _queue_pass((body["metadata"]["namespace"], owner["name"]), memo)


@kopf.on.event("v1", "secrets")
async def on_secret(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A referenced Secret (credentials or own Curve keys) changed: reconcile its users now.

    The initial listing (event type None) is skipped: the resume handlers run a pass for every
    object then anyway. Only the Secret's name is used; its data is read by the pass itself.
    """
    if event.get("type") is None or not hasattr(memo, "known"):
        return
    for key in referencing(memo.known, body["metadata"]["namespace"], body["metadata"]["name"]):
        _spawn(memo, key)
