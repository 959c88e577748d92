"""One level-based reconcile pass: read what is, render what should be, apply, prune, report.

Idempotent and safe to run from any trigger (create, update, resume, timer, a child's event).
Inputs are all checked before anything is applied, so a missing Secret leaves the running
children as they were instead of half-updated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import SecretStr

from tradingsystem_operator import apply as k8s
from tradingsystem_operator.control import (
    control_url,
    halt,
    new_control_secret,
    new_curve_secret,
    token_from_data,
)
from tradingsystem_operator.models import InvalidSpecError, Phase, Reason, TradingSystemSpec, parse_spec
from tradingsystem_operator.render import (
    CONTROL_TOKEN_KEY,
    PIPELINE,
    RISK_MANAGER,
    ROTATE_CONTROL_TOKEN,
    ROTATE_CURVE_KEYS,
    Inputs,
    Owner,
    child_name,
    control_secret_name,
    curve_enabled,
    curve_secret_name,
    render,
)
from tradingsystem_operator.status import (
    Problem,
    StatusInputs,
    as_patch,
    compute_status,
    now,
    paused_status,
)

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: dict[str, Any]
    problem: Problem | None = None


def _api_problem(exc: ApiException) -> Problem:
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except ValueError:
        message = exc.reason
    return Problem(Reason.API_ERROR, f"API server answered {exc.status}: {message}")


async def reconcile(
    api: ApiClient,
    body: Mapping[str, Any],
    rule_groups: tuple[dict[str, Any], ...],
    operator_namespace: str = "",
) -> Outcome:
    meta = body["metadata"]
    owner = Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
    generation = int(meta.get("generation") or 0)
    previous: Mapping[str, Any] = body.get("status") or {}
    try:
        spec = parse_spec(body.get("spec"))
    except InvalidSpecError as exc:
        # The CRD schema refuses what the models refuse, so this means an object stored under
        # another schema (an older CRD, or one edited by hand). Retrying cannot fix it: permanent.
        problem = Problem(Reason.INVALID_SPEC, f"fix the TradingSystem: {exc}", permanent=True)
        return await _report_problem(api, owner, generation, previous, problem)

    if spec.paused:
        status = as_patch(paused_status(previous, generation, now()))
        await _write_status(api, owner, previous, status)
        return Outcome(status)

    try:
        secret_hash = ""
        if spec.mode != "sim" and spec.credentials is not None:
            creds = spec.credentials
            secret_hash = await k8s.secret_digest(
                api, owner.namespace, creds.secret_name, [creds.api_key_key, creds.secret_key_key], owner.uid
            )
        control_data, curve_hash = await _owned_secrets(api, owner, spec, meta.get("annotations") or {})
        # Discovery: monitoring objects only where prometheus-operator's CRDs are installed.
        sm_crd = await k8s.resource_exists(api, k8s.MONITORING, "servicemonitors")
        pr_crd = await k8s.resource_exists(api, k8s.MONITORING, "prometheusrules")
        kinds = [
            *k8s.PRUNABLE,
            *(["ServiceMonitor"] if sm_crd else []),
            *(["PrometheusRule"] if pr_crd else []),
        ]
        live = await k8s.list_children(api, owner.namespace, owner.name, [*kinds, "PersistentVolumeClaim"])
        observed, ready = k8s.observe(live)
        if spec.halted and previous.get("phase") != Phase.HALTED:
            # Fast path first (HALT in the running process), then the durable one below.
            await _halt_running(owner, live, token_from_data(control_data))
        inputs = Inputs(
            owner=owner,
            spec=spec,
            secret_hash=secret_hash,
            observed=observed,
            service_monitor_crd=sm_crd,
            prometheus_rule_crd=pr_crd,
            rule_groups=rule_groups,
            operator_namespace=operator_namespace,
            control_token_hash=k8s.keyed_digest(control_data, [CONTROL_TOKEN_KEY], owner.uid),
            curve_hash=curve_hash,
        )
        rendered = render(inputs)
        manifests = [k8s.stamped(m) for m in rendered.manifests]
        changed = [m for m in manifests if k8s.needs_apply(m, live.get(_key(m)))]
        # Independent objects: apply them concurrently (a pass is then one round trip, not 16).
        stored = await asyncio.gather(*(k8s.apply(api, m) for m in changed))
        deleted = await k8s.prune(api, owner.namespace, live, [_key(m) for m in manifests], kinds)
        if changed or deleted:
            # What our writes left (replicas changed, Deployments gone): the apply answers are the
            # objects as stored, so no second listing is needed.
            _, ready = k8s.observe(after_writes(live, zip(changed, stored, strict=True), deleted))
        status = as_patch(
            compute_status(
                StatusInputs(
                    generation=generation,
                    timestamp=now(),
                    desired=rendered.desired,
                    ready=ready,
                    waiting_on=rendered.waiting_on,
                    halted=spec.halted,
                    previous=previous,
                )
            )
        )
        status["services"] = _drop_gone(previous, status["services"])
        await _write_status(api, owner, previous, status)
    except k8s.CredentialsError as exc:
        problem = Problem(exc.reason, str(exc))
        return await _report_problem(api, owner, generation, previous, problem, spec)
    except ApiException as exc:
        return await _report_problem(api, owner, generation, previous, _api_problem(exc), spec)
    return Outcome(status)


async def _owned_secrets(
    api: ApiClient, owner: Owner, spec: TradingSystemSpec, annotations: Mapping[str, str]
) -> tuple[dict[str, str], str]:
    """The control token Secret's data and the digest of the CurveZMQ keys ("" with curve off),
    generating (or rotating, on a new annotation value) the Secrets we own."""
    rotate = annotations.get(ROTATE_CONTROL_TOKEN, "")
    control = await k8s.ensure_owned_secret(
        api,
        owner.namespace,
        control_secret_name(owner),
        rotate,
        lambda: new_control_secret(owner, rotate),
        owner.uid,
    )
    if not curve_enabled(spec):
        return control, ""
    files = [f"{s.name}{ext}" for s in PIPELINE for ext in (".key", ".key_secret")]
    name = curve_secret_name(owner, spec)
    if spec.security.curve.keys_secret:  # the user's own keys: checked and hashed, never changed
        return control, await k8s.secret_digest(api, owner.namespace, name, files, owner.uid)
    rotate_keys = annotations.get(ROTATE_CURVE_KEYS, "")
    curve = await k8s.ensure_owned_secret(
        api, owner.namespace, name, rotate_keys, lambda: new_curve_secret(owner, rotate_keys), owner.uid
    )
    return control, k8s.keyed_digest(curve, files, owner.uid)


async def _halt_running(owner: Owner, live: k8s.Live, token: SecretStr) -> None:
    """POST /control halt to the running risk-manager through its Service; a failure is logged
    (no token in it) and left to the durable path."""
    service = live.get(("Service", child_name(owner, RISK_MANAGER.name))) or {}
    ip = (service.get("spec") or {}).get("clusterIP")
    if not ip or ip == "None":
        return
    result = await halt(control_url(ip), token, f"spec.halted on {owner.namespace}/{owner.name}")
    if result.ok:
        log.info("%s/%s: risk-manager halted in %.3fs", owner.namespace, owner.name, result.seconds)
    else:
        log.warning(
            "%s/%s: risk-manager halt call answered %s after %.3fs; relying on the rolled pod",
            owner.namespace,
            owner.name,
            result.status or "nothing",
            result.seconds,
        )


def _key(manifest: Mapping[str, Any]) -> tuple[str, str]:
    return manifest["kind"], manifest["metadata"]["name"]


def after_writes(
    live: k8s.Live,
    applied: Iterable[tuple[Mapping[str, Any], dict[str, Any]]],
    deleted: Iterable[tuple[str, str]],
) -> k8s.Live:
    """The children as our writes left them: ``live`` with each applied manifest's stored object
    (the server's answer) in its place and the pruned ones gone. No I/O."""
    gone = set(deleted)
    after = {key: item for key, item in live.items() if key not in gone}
    after.update({_key(manifest): item for manifest, item in applied})
    return after


def _without_nulls(value: Any) -> Any:
    """What a merge patch leaves stored: null deletes a key."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


async def _write_status(
    api: ApiClient, owner: Owner, previous: Mapping[str, Any], status: dict[str, Any]
) -> None:
    """Patch status only if it would change: an idle system makes no writes."""
    stored = _without_nulls(previous)
    if {k: stored.get(k) for k in status} != _without_nulls(status):
        await k8s.patch_status(api, owner.namespace, owner.name, status)


def _drop_gone(previous: Mapping[str, Any], services: dict[str, Any]) -> dict[str, Any]:
    """A merge patch keeps map keys it does not mention: null the services no longer run."""
    gone = {name: None for name in (previous.get("services") or {}) if name not in services}
    return {**services, **gone}


async def _report_problem(
    api: ApiClient,
    owner: Owner,
    generation: int,
    previous: Mapping[str, Any],
    problem: Problem,
    spec: TradingSystemSpec | None = None,
) -> Outcome:
    """Degraded with the reason; per-service counts stay as last observed."""
    services = previous.get("services") or {}
    desired = {n: int(s.get("desired") or 0) for n, s in services.items()}
    ready = {n: int(s.get("ready") or 0) for n, s in services.items()}
    status = as_patch(
        compute_status(
            StatusInputs(
                generation=generation,
                timestamp=now(),
                desired=desired,
                ready=ready,
                halted=spec is not None and spec.halted,
                problem=problem,
                previous=previous,
            )
        )
    )
    with contextlib.suppress(ApiException):  # the caller reports it as an event and retries anyway
        await _write_status(api, owner, previous, status)
    return Outcome(status, problem)
