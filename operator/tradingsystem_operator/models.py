"""The TradingSystem resource as pydantic models: the single source of the CRD schema.

Field names are camelCase on the wire (Kubernetes convention) through aliases; Python code uses
snake_case. Cross-field rules live in CEL (``x-kubernetes-validations``) so the API server refuses
bad objects before the operator sees them; ``crd.py`` turns these models into the CRD YAML.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

from tradingsystem.common.config import LIVE_CONFIRMATION

GROUP = "tradingsystem.dev"
VERSION = "v1alpha1"
KIND = "TradingSystem"
PLURAL = "tradingsystems"
SYMBOL_PATTERN = r"^[A-Z][A-Z0-9.]{0,9}$"
# Image reference: [registry[:port]/]path[:tag][@sha256:digest], lower-case path, no spaces.
IMAGE_PATTERN = r"^[a-z0-9]+([._:/-][a-zA-Z0-9_.-]+)*(@sha256:[a-f0-9]{64})?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"


def cel(rule: str, message: str, **extra: str) -> JsonDict:
    return {"rule": rule, "message": message, **extra}


def validations(*rules: JsonDict) -> JsonDict:
    return {"x-kubernetes-validations": list(rules)}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Resources(_Model):
    """Container resources; quantities as Kubernetes writes them (``100m``, ``256Mi``)."""

    requests: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "50m", "memory": "128Mi"},
        json_schema_extra={"additionalProperties": {"type": "string", "pattern": QUANTITY_PATTERN}},
    )
    limits: dict[str, str] = Field(
        default_factory=lambda: {"memory": "512Mi"},
        json_schema_extra={"additionalProperties": {"type": "string", "pattern": QUANTITY_PATTERN}},
    )


class CredentialsRef(_Model):
    """The Secret holding the Alpaca keys; only referenced, never copied."""

    secret_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    api_key_key: str = Field(default="ALPACA_API_KEY", min_length=1, max_length=253)
    secret_key_key: str = Field(default="ALPACA_SECRET_KEY", min_length=1, max_length=253)


# --- scheduling and pod pass-through (core/v1 shapes, typed so the API server prunes and checks) ---

_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class LabelSelectorRequirement(_Model):
    key: str = Field(min_length=1, description="the label key the selector applies to")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="how the key relates to the values"
    )
    values: list[str] | None = Field(
        default=None, description="values for In/NotIn; empty for Exists/DoesNotExist"
    )


class LabelSelector(_Model):
    """metav1.LabelSelector: the requirements are ANDed."""

    match_labels: dict[str, str] | None = Field(default=None, description="labels that must all match")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="label requirements that must all hold"
    )


class NodeSelectorRequirement(_Model):
    key: str = Field(min_length=1, description="the node label (or field) key")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = Field(
        description="how the key relates to the values"
    )
    values: list[str] | None = Field(default=None, description="values; one integer for Gt/Lt")


class NodeSelectorTerm(_Model):
    match_expressions: list[NodeSelectorRequirement] | None = Field(
        default=None, description="requirements on node labels, ANDed"
    )
    match_fields: list[NodeSelectorRequirement] | None = Field(
        default=None, description="requirements on node fields (metadata.name), ANDed"
    )


class NodeSelector(_Model):
    node_selector_terms: list[NodeSelectorTerm] = Field(
        min_length=1, description="terms ORed: a node matching any term qualifies"
    )


class PreferredSchedulingTerm(_Model):
    weight: int = Field(ge=1, le=100, description="added to a node's score when the preference matches")
    preference: NodeSelectorTerm = Field(description="the node selector term")


class NodeAffinity(_Model):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = Field(
        default=None, description="nodes a pod may be scheduled on (hard rule)"
    )
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = Field(
        default=None, description="nodes preferred, by weight (soft rule)"
    )


class PodAffinityTerm(_Model):
    label_selector: LabelSelector | None = Field(default=None, description="the pods this term is about")
    namespace_selector: LabelSelector | None = Field(
        default=None, description="namespaces of those pods, by label; unset: see namespaces"
    )
    namespaces: list[str] | None = Field(
        default=None, description="namespaces of those pods; unset and no selector: the pod's own"
    )
    topology_key: str = Field(min_length=1, description="node label defining co-location, e.g. a zone")
    match_label_keys: list[str] | None = Field(
        default=None,
        description="pod label keys whose values (from the incoming pod) are added to the selector",
    )
    mismatch_label_keys: list[str] | None = Field(
        default=None, description="pod label keys whose values must differ from the incoming pod's"
    )


class WeightedPodAffinityTerm(_Model):
    weight: int = Field(ge=1, le=100, description="added to a node's score when the term matches")
    pod_affinity_term: PodAffinityTerm = Field(description="the pod affinity term")


class PodAffinity(_Model):
    """core/v1 PodAffinity (also the shape of PodAntiAffinity)."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        default=None, description="terms that must all hold (hard rule)"
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = Field(
        default=None, description="terms preferred, by weight (soft rule)"
    )


class Affinity(_Model):
    """core/v1 Affinity."""

    node_affinity: NodeAffinity | None = Field(default=None, description="rules on the node's labels")
    pod_affinity: PodAffinity | None = Field(default=None, description="run near pods matching these terms")
    pod_anti_affinity: PodAffinity | None = Field(
        default=None, description="run away from pods matching these terms"
    )


class Toleration(_Model):
    """core/v1 Toleration."""

    key: str | None = Field(default=None, description="taint key; empty with Exists: every taint")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Equal (default) or Exists")
    value: str | None = Field(default=None, description="taint value for Equal")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="taint effect to tolerate; empty: all effects"
    )
    toleration_seconds: int | None = Field(
        default=None, description="NoExecute only: how long the pod stays bound once tainted"
    )


class TopologySpreadConstraint(_Model):
    """core/v1 TopologySpreadConstraint; ``labelSelector`` defaults to this service's own pods."""

    max_skew: int = Field(ge=1, description="largest allowed difference in pod count between domains")
    topology_key: str = Field(min_length=1, description="node label defining a domain, e.g. a zone")
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = Field(
        description="DoNotSchedule (hard) or ScheduleAnyway (soft)"
    )
    label_selector: LabelSelector | None = Field(
        default=None, description="pods counted; unset: the pods of this service of this TradingSystem"
    )
    min_domains: int | None = Field(default=None, ge=1, description="minimum number of eligible domains")
    match_label_keys: list[str] | None = Field(
        default=None, description="pod label keys whose values (from the incoming pod) narrow the selector"
    )
    node_affinity_policy: Literal["Honor", "Ignore"] | None = Field(
        default=None, description="whether nodeAffinity/nodeSelector limit the domains counted"
    )
    node_taints_policy: Literal["Honor", "Ignore"] | None = Field(
        default=None, description="whether node taints limit the domains counted"
    )


class Scheduling(_Model):
    """Where the pods run. ``spec.scheduling`` is the default for every service; a field set in a
    service's own ``scheduling`` replaces the default's field as a whole (no merging inside it);
    an unset one inherits it. An empty value (``{}``/``[]``) set on a service clears the default."""

    node_selector: dict[str, str] | None = Field(
        default=None, description="node labels the pods must run on, e.g. dedicated trading nodes"
    )
    tolerations: list[Toleration] | None = Field(
        default=None, description="taints the pods tolerate (e.g. of dedicated nodes)"
    )
    affinity: Affinity | None = Field(default=None, description="node and pod (anti-)affinity rules")
    topology_spread_constraints: list[TopologySpreadConstraint] | None = Field(
        default=None, description="how the pods spread across zones or nodes"
    )
    priority_class_name: str | None = Field(
        default=None,
        pattern=_DNS_SUBDOMAIN,
        max_length=253,
        description="PriorityClass of the pods (must exist), e.g. to preempt batch work",
    )


SERVICE_SCHEDULING = "where this service's pods run; a field set here replaces spec.scheduling's"


class LocalObjectReference(_Model):
    name: str = Field(
        pattern=_DNS_SUBDOMAIN, max_length=253, description="name of an object in this namespace"
    )


class MarketDataSpec(_Model):
    # A PUB socket binds once: more than one replica would publish every tick twice.
    replicas: int = Field(default=1, ge=0, le=1, description="0 stops the service; one publisher at most")
    resources: Resources = Resources()
    feed: Literal["iex", "sip"] = "iex"
    trades: bool = True
    quotes: bool = True
    bars: bool = True
    bar_interval_s: int = Field(default=0, ge=0)
    stale_after_s: float = Field(default=30.0, gt=0)
    scheduling: Scheduling = Field(default=Scheduling(), description=SERVICE_SCHEDULING)


class ModelSource(_Model):
    """A model file for the strategy, taken from a ConfigMap key and mounted read-only."""

    config_map: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    key: str = Field(min_length=1)


class SignalBridgeSpec(_Model):
    replicas: int = Field(default=1, ge=0, le=1, description="0 stops the service; one publisher at most")
    resources: Resources = Resources()
    strategy: str = Field(default="ma_crossover", pattern=r"^[a-z][a-z0-9_]{0,62}$")
    params: dict[str, int | float] = Field(
        default_factory=dict, json_schema_extra={"additionalProperties": {"type": "number"}}
    )
    source: Literal["trades", "quotes", "bars"] = "trades"
    warmup_bars: int = Field(default=0, ge=0)
    model: ModelSource | None = None
    scheduling: Scheduling = Field(default=Scheduling(), description=SERVICE_SCHEDULING)


class RiskLimits(_Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.maxOrderNotional <= self.maxGrossExposure",
                "maxOrderNotional must not exceed maxGrossExposure: one order cannot be larger than the whole book",
            ),
            cel("self.maxOrderQty <= self.maxPositionQty", "maxOrderQty must not exceed maxPositionQty"),
            cel(
                "self.orderQty <= self.maxOrderQty",
                "orderQty (the base order size) must not exceed maxOrderQty",
            ),
        )
    )

    order_qty: float = Field(default=10, gt=0)
    sizing: Literal["fixed", "strength"] = "strength"
    max_order_qty: float = Field(default=100, gt=0)
    max_order_notional: float = Field(default=50_000, gt=0)
    max_position_qty: float = Field(default=500, gt=0)
    max_gross_exposure: float = Field(default=250_000, gt=0)
    max_open_positions: int = Field(default=10, gt=0)
    daily_loss_limit: float = Field(default=5_000, gt=0)
    max_orders_per_minute: int = Field(default=60, gt=0)
    price_band_pct: float = Field(default=5.0, gt=0, le=100)


class RiskManagerSpec(_Model):
    replicas: int = Field(default=1, ge=0, le=1, description="0 stops the service; one publisher at most")
    resources: Resources = Resources()
    limits: RiskLimits = RiskLimits()
    scheduling: Scheduling = Field(default=Scheduling(), description=SERVICE_SCHEDULING)


class ExecutionEngineSpec(_Model):
    """Always exactly one replica (Recreate): two engines would submit every order twice."""

    resources: Resources = Resources()
    rate_limit_per_min: int = Field(default=200, gt=0)
    request_timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    storage: Literal["emptyDir", "persistentVolumeClaim"] = "emptyDir"
    storage_size: str = Field(default="1Gi", pattern=QUANTITY_PATTERN)
    scheduling: Scheduling = Field(default=Scheduling(), description=SERVICE_SCHEDULING)


class SimSpec(_Model):
    resources: Resources = Resources()
    seed: int = 42
    tick_rate: float = Field(default=20.0, gt=0)
    initial_cash: float = Field(default=100_000, gt=0)
    scheduling: Scheduling = Field(default=Scheduling(), description=SERVICE_SCHEDULING)


class MonitoringSpec(_Model):
    service_monitor: bool = True
    prometheus_rule: bool = True
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m)$")
    labels: dict[str, str] = Field(default_factory=dict, description="added to ServiceMonitor/PrometheusRule")


class CurveSpec(_Model):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!self.enabled || has(self.keysSecret)",
                "curve.enabled needs curve.keysSecret: a Secret with the keys written by `tradingsystem keys`",
            )
        )
    )

    enabled: bool = False
    keys_secret: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class SecuritySpec(_Model):
    network_policy: bool = True
    curve: CurveSpec = CurveSpec()


_SPEC_RULES = validations(
    cel(
        "self.mode != 'live' || self.liveAcknowledgement == '" + LIVE_CONFIRMATION + "'",
        "mode live trades real money: set spec.liveAcknowledgement to '" + LIVE_CONFIRMATION + "'",
    ),
    cel(
        "self.mode == 'sim' || has(self.credentials)",
        "mode paper and live need spec.credentials.secretName (a Secret with the Alpaca keys)",
    ),
    # Going live is a new decision, not an edit: create a new TradingSystem for it. Leaving live
    # (de-risking) stays possible in place.
    cel(
        "self.mode != 'live' || oldSelf.mode == 'live'",
        "mode cannot be changed to live on an existing TradingSystem: create a new one",
        reason="FieldValueForbidden",
        fieldPath=".mode",
    ),
)


class TradingSystemSpec(_Model):
    model_config = ConfigDict(json_schema_extra=_SPEC_RULES)

    mode: Literal["sim", "paper", "live"] = "sim"
    live_acknowledgement: str = ""
    image: str = Field(pattern=IMAGE_PATTERN, max_length=512, description="the tradingsystem image")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    symbols: list[Annotated[str, Field(pattern=SYMBOL_PATTERN)]] = Field(
        min_length=1,
        max_length=200,
        json_schema_extra={
            "items": {"type": "string", "pattern": SYMBOL_PATTERN},
            "x-kubernetes-list-type": "set",
        },
    )
    credentials: CredentialsRef | None = None
    halted: bool = Field(default=False, description="trading kill switch: execution to 0, risk-manager HALT")
    paused: bool = Field(default=False, description="stop reconciling; running workloads are left untouched")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    market_data: MarketDataSpec = MarketDataSpec()
    signal_bridge: SignalBridgeSpec = SignalBridgeSpec()
    risk_manager: RiskManagerSpec = RiskManagerSpec()
    execution_engine: ExecutionEngineSpec = ExecutionEngineSpec()
    sim: SimSpec = SimSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    security: SecuritySpec = SecuritySpec()
    scheduling: Scheduling = Field(
        default=Scheduling(),
        description="where the pods of every service run, unless the service's own scheduling says otherwise",
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="added to every pod; the operator's own annotation (config hash) wins on a clash",
    )
    pod_labels: dict[str, str] = Field(
        default_factory=dict,
        description="added to every pod; the operator's app.kubernetes.io/* labels win on a clash",
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        description="Secrets (docker-registry type) for pulling spec.image from a private registry",
    )


class Condition(_Model):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    observed_generation: int = 0
    last_transition_time: str
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""


class ServiceStatus(_Model):
    desired: int = 0
    ready: int = 0
    waiting_on: str | None = Field(default=None, description="the upstream service this one waits for")


class TradingSystemStatus(_Model):
    phase: Literal["Pending", "Progressing", "Running", "Halted", "Paused", "Degraded", "Failed"] = "Pending"
    observed_generation: int = 0
    ready_services: str = Field(default="", description="ready/total pipeline services, e.g. 3/4")
    services: dict[str, ServiceStatus] = Field(default_factory=dict)
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


def parse_spec(spec: Any) -> TradingSystemSpec:
    """The spec as the API server stored it (defaults applied) as a model."""
    return TradingSystemSpec.model_validate(dict(spec))
