"""kopf wiring only: every trigger funnels into ``reconcile.reconcile`` for one TradingSystem.

Triggers: create/update/resume of the TradingSystem, a drift-correcting timer, and events of the
Deployments we own (label-filtered) so availability reaches status and opens startup gates.
One lock per TradingSystem serialises passes from these triggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException
from prometheus_client import REGISTRY

from tradingsystem_operator import apply as k8s
from tradingsystem_operator.metrics import RECONCILE_DURATION, RECONCILE_RESULTS, RECONCILES
from tradingsystem_operator.models import GROUP, KIND, PLURAL, VERSION, Phase
from tradingsystem_operator.reconcile import reconcile
from tradingsystem_operator.render import MANAGER
from tradingsystem_operator.rules import load_rule_groups
from tradingsystem_operator.status import Problem

# Drift correction period; a child's change arrives faster through the Deployment watch.
TIMER_INTERVAL = float(os.environ.get("TRADINGSYSTEM_OPERATOR_RESYNC_S", "60"))
MAX_RETRY_DELAY = 60.0
# Passes in flight across all objects. Each holds its children's listings; unbounded, 100 objects
# created at once would hold them all at the same time (memory) and contend for the API server.
MAX_CONCURRENT_PASSES = 8
# Our own namespace (the chart sets it from the downward API): the NetworkPolicy opens the
# risk-manager's control port to the operator's pods there.
OPERATOR_NAMESPACE = os.environ.get("POD_NAMESPACE", "")


@kopf.on.startup()
async def startup(
    *,
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    # Our own prefixes, so another kopf operator on the same cluster never mistakes our marks.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.reporting_component = MANAGER
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True  # no cluster-wide list of CRDs/namespaces: tighter RBAC
    settings.watching.server_timeout = 300
    try:
        config.load_incluster_config()
    except ConfigException:
        # $KUBECONFIG read now: kubernetes_asyncio captures its default path at import time.
        await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    memo.api = client.ApiClient()
    memo.locks = {}
    memo.queued = set()
    memo.passes = asyncio.Semaphore(MAX_CONCURRENT_PASSES)
    memo.rule_groups = load_rule_groups()
    if not memo.rule_groups:
        logger.warning("no monitoring/rules/*.yaml found: PrometheusRule objects will not be created")


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's own readers (service account, then $KUBECONFIG read at call time), independent of
    # any client library's import-time defaults.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    api = getattr(memo, "api", None)
    if api is not None:
        await api.close()


@kopf.on.probe(id="reconciles")
def probe(**_: Any) -> float:
    """Served on the liveness endpoint: reconcile passes so far (answers only if the loop is alive)."""
    return sum(
        REGISTRY.get_sample_value("tradingsystem_operator_reconciles_total", {"result": r}) or 0.0
        for r in RECONCILE_RESULTS
    )


async def _run(body: Mapping[str, Any], memo: kopf.Memo, retry: int) -> None:
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    async with memo.locks.setdefault(key, asyncio.Lock()), memo.passes:
        await _reconcile(body, memo, retry)


async def _reconcile(body: Mapping[str, Any], memo: kopf.Memo, retry: int) -> None:
    """One pass; the caller holds the object's lock."""
    started = time.monotonic()
    outcome = await reconcile(memo.api, body, memo.rule_groups, OPERATOR_NAMESPACE)
    RECONCILE_DURATION.observe(time.monotonic() - started)
    RECONCILES.labels("error" if outcome.problem else "success").inc()
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


@kopf.timer(GROUP, VERSION, PLURAL, interval=TIMER_INTERVAL, initial_delay=TIMER_INTERVAL)
async def resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    # Errors are retried by the next tick; the change handlers own the backoff.
    if not waits_for_edit(body):
        await _run(body, memo, retry=0)


def waits_for_edit(body: Mapping[str, Any]) -> bool:
    """This generation already failed permanently: only an edit (the update handler) helps, so
    the timer leaves it alone instead of repeating the same Warning every tick."""
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    return status.get("phase") == Phase.FAILED and status.get("observedGeneration") == generation


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGER})
async def on_deployment(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    owner = next((r for r in body["metadata"].get("ownerReferences", []) if r.get("kind") == KIND), None)
    if owner is None or not hasattr(memo, "api"):
        return
    key = (body["metadata"]["namespace"], owner["name"])
    # Coalesce: a Deployment changes several times while it rolls out, five Deployments per object.
    # A pass already queued reads children and parent after it gets the lock, so it sees this
    # change too; one queued pass per object is enough.
    if key in memo.queued:
        return
    memo.queued.add(key)
    try:
        async with memo.locks.setdefault(key, asyncio.Lock()), memo.passes:
            memo.queued.discard(key)
            parent = await k8s.get_tradingsystem(memo.api, *key)
            if parent is None or parent["metadata"].get("deletionTimestamp"):
                return
            # A problem is already reported on the TradingSystem; its own handlers retry with backoff.
            with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):
                await _reconcile(parent, memo, retry=0)
    finally:
        memo.queued.discard(key)
