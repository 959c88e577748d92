"""The TradingSystem resource as pydantic models: the single source of the CRD schema.

Field names are camelCase on the wire (Kubernetes convention) through aliases; Python code uses
snake_case. Cross-field rules live in CEL (``x-kubernetes-validations``) so the API server refuses
bad objects before the operator sees them; ``crd.py`` turns these models into the CRD YAML.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

from tradingsystem.common import config as settings
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


def setting(section: type[BaseModel], name: str) -> Any:
    """A spec field that is a service setting: its default, bounds and description, declared once
    in ``tradingsystem.common.config`` (render copies the value into the services' config)."""
    return copy.deepcopy(section.model_fields[name])


DNS_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
REPLICAS = "0 stops the service; 1 runs it (one publisher at most: a PUB socket binds once)"
RESOURCES = "the container's CPU and memory requests and limits"


class Resources(_Model):
    """Container resources; quantities as Kubernetes writes them (``100m``, ``256Mi``)."""

    requests: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "50m", "memory": "128Mi"},
        description="reserved per resource: cpu in cores (100m = 0.1), memory in bytes (128Mi)",
        json_schema_extra={"additionalProperties": {"type": "string", "pattern": QUANTITY_PATTERN}},
    )
    limits: dict[str, str] = Field(
        default_factory=lambda: {"memory": "512Mi"},
        description="ceiling per resource: cpu in cores (throttled), memory in bytes (killed above)",
        json_schema_extra={"additionalProperties": {"type": "string", "pattern": QUANTITY_PATTERN}},
    )


class CredentialsRef(_Model):
    """The Secret holding the Alpaca keys; only referenced, never copied."""

    secret_name: str = Field(
        pattern=DNS_NAME, max_length=253, description="name of the Secret in this namespace"
    )
    api_key_key: str = Field(
        default="ALPACA_API_KEY", min_length=1, max_length=253, description="key of the Alpaca key id"
    )
    secret_key_key: str = Field(
        default="ALPACA_SECRET_KEY", min_length=1, max_length=253, description="key of the Alpaca secret key"
    )


# --- scheduling and pod pass-through (core/v1 shapes, typed so the API server prunes and checks) ---


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
        pattern=DNS_NAME,
        max_length=253,
        description="PriorityClass of the pods (must exist), e.g. to preempt batch work",
    )


SERVICE_SCHEDULING = "where this service's pods run; a field set here replaces spec.scheduling's"


class LocalObjectReference(_Model):
    name: str = Field(pattern=DNS_NAME, max_length=253, description="name of an object in this namespace")


class MarketDataSpec(_Model):
    """The market-data service: streams ticks from Alpaca (or the simulator) onto the bus."""

    replicas: int = Field(default=1, ge=0, le=1, description=REPLICAS)
    resources: Resources = Field(default=Resources(), description=RESOURCES)
    feed: Literal["iex", "sip"] = setting(settings.AlpacaSettings, "feed")
    trades: bool = setting(settings.MarketDataSettings, "trades")
    quotes: bool = setting(settings.MarketDataSettings, "quotes")
    bars: bool = setting(settings.MarketDataSettings, "bars")
    bar_interval_s: int = setting(settings.MarketDataSettings, "bar_interval_s")
    stale_after_s: float = setting(settings.MarketDataSettings, "stale_after_s")
    scheduling: Scheduling = Field(default=Scheduling(), description=SERVICE_SCHEDULING)


class ModelSource(_Model):
    """A model file for the strategy, taken from a ConfigMap key and mounted read-only."""

    config_map: str = Field(pattern=DNS_NAME, description="name of the ConfigMap in this namespace")
    key: str = Field(min_length=1, description="key of the model file in the ConfigMap")


class SignalBridgeSpec(_Model):
    """The signal-bridge service: indicators and a strategy turn ticks into signals."""

    replicas: int = Field(default=1, ge=0, le=1, description=REPLICAS)
    resources: Resources = Field(default=Resources(), description=RESOURCES)
    strategy: str = Field(
        default="ma_crossover",
        pattern=r"^[a-z][a-z0-9_]{0,62}$",
        description="strategy name: ma_crossover, macd_momentum, rsi_reversion (docs/strategies.md)",
    )
    params: dict[str, int | float] = Field(
        default_factory=dict,
        description="the strategy's numeric parameters by name, e.g. fast: 5 (periods in ticks)",
        json_schema_extra={"additionalProperties": {"type": "number"}},
    )
    source: Literal["trades", "quotes", "bars"] = setting(settings.SignalSettings, "source")
    warmup_bars: int = setting(settings.SignalSettings, "warmup_bars")
    publish_features: bool = setting(settings.SignalSettings, "publish_features")
    model: ModelSource | None = Field(
        default=None, description="a model file for the strategy, if it uses one"
    )
    scheduling: Scheduling = Field(default=Scheduling(), description=SERVICE_SCHEDULING)


class RiskLimits(settings.RiskLimits):
    """The risk-manager's limits: the service's own model (config.RiskLimits), camelCase here.

    Its cross-field rules (``RISK_LIMIT_RULES``) become CEL, so the API server refuses what the
    service would refuse at start.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra=validations(
            *(
                cel(f"self.{to_camel(r.small)} <= self.{to_camel(r.large)}", r.message(to_camel))
                for r in settings.RISK_LIMIT_RULES
            )
        ),
    )


class RiskManagerSpec(_Model):
    """The risk-manager service: sizes signals into orders within the limits, or rejects them."""

    replicas: int = Field(default=1, ge=0, le=1, description=REPLICAS)
    resources: Resources = Field(default=Resources(), description=RESOURCES)
    limits: RiskLimits = Field(default=RiskLimits(), description="order sizing and risk limits, with units")
    # The same shape as executionEngine.storage: the safety state must outlive the pod for a
    # restart to keep a halt, the latches, the book and the open orders.
    storage: Literal["emptyDir", "persistentVolumeClaim"] = Field(
        default="emptyDir",
        description="where the safety state (kill switch, latches, book, open orders) lives: "
        "emptyDir (lost with the pod) or a PersistentVolumeClaim",
    )
    storage_size: str = Field(
        default="1Gi", pattern=QUANTITY_PATTERN, description="bytes requested for the claim, e.g. 1Gi"
    )
    scheduling: Scheduling = Field(default=Scheduling(), description=SERVICE_SCHEDULING)


class ExecutionEngineSpec(_Model):
    """The execution-engine service. Always exactly one replica (Recreate): two engines would submit
    every order twice."""

    resources: Resources = Field(default=Resources(), description=RESOURCES)
    rate_limit_per_min: int = setting(settings.ExecutionSettings, "rate_limit_per_min")
    request_timeout_s: float = setting(settings.ExecutionSettings, "request_timeout_s")
    max_attempts: int = setting(settings.ExecutionSettings, "max_attempts")
    storage: Literal["emptyDir", "persistentVolumeClaim"] = Field(
        default="emptyDir",
        description="where the order database lives: emptyDir (lost with the pod) or a PersistentVolumeClaim",
    )
    storage_size: str = Field(
        default="1Gi", pattern=QUANTITY_PATTERN, description="bytes requested for the claim, e.g. 1Gi"
    )
    scheduling: Scheduling = Field(default=Scheduling(), description=SERVICE_SCHEDULING)


class SimSpec(_Model):
    """The embedded Alpaca-compatible simulator (mode sim only)."""

    resources: Resources = Field(default=Resources(), description=RESOURCES)
    seed: int = setting(settings.SimSettings, "seed")
    tick_rate: float = setting(settings.SimSettings, "tick_rate")
    initial_cash: float = setting(settings.SimSettings, "initial_cash")
    account_type: settings.AccountType = setting(settings.SimSettings, "account_type")
    # The simulator's own checks (config.SimSettings' validators): 1, 2 or 4 here, the cash rule
    # in the spec's CEL; a test runs one table through the API server and the simulator.
    multiplier: int | None = Field(
        default=None,
        description=settings.SimSettings.model_fields["multiplier"].description,
        json_schema_extra={"enum": [1, 2, 4]},
    )
    hard_to_borrow: list[Annotated[str, Field(pattern=SYMBOL_PATTERN)]] = Field(
        default_factory=list,
        max_length=200,
        description=settings.SimSettings.model_fields["hard_to_borrow"].description,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    session: settings.SessionModel = setting(settings.SimSettings, "session")
    start_at: AwareDatetime | None = setting(settings.SimSettings, "start_at")
    scheduling: Scheduling = Field(default=Scheduling(), description=SERVICE_SCHEDULING)


class MonitoringSpec(_Model):
    """Prometheus-operator objects, created only where its CRDs are installed."""

    service_monitor: bool = Field(default=True, description="create a ServiceMonitor for the four services")
    prometheus_rule: bool = Field(default=True, description="create a PrometheusRule with the alerts")
    interval: str = Field(
        default="30s", pattern=r"^[0-9]+(ms|s|m)$", description="scrape interval: a duration like 30s"
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="labels added to the ServiceMonitor and PrometheusRule (e.g. release: kube-prometheus-stack)",
    )


class CurveSpec(_Model):
    """CurveZMQ encryption and client authentication of the bus."""

    enabled: bool | None = Field(
        default=None,
        description="encrypt and authenticate the bus; unset means on in mode live and off otherwise",
    )
    keys_secret: str | None = Field(
        default=None,
        pattern=DNS_NAME,
        description="Secret with the key pairs `tradingsystem keys` wrote; unset = the operator generates "
        "them into a Secret it owns",
    )


class PeerSelector(_Model):
    """Who may connect: pods matching ``podLabels`` in namespaces matching ``namespaceLabels``.

    An empty ``namespaceLabels`` matches every namespace; an empty ``podLabels`` every pod.
    """

    namespace_labels: dict[str, str] = Field(
        default_factory=dict, description="labels of the peers' namespaces; empty = every namespace"
    )
    pod_labels: dict[str, str] = Field(
        default_factory=dict, description="labels of the peer pods; empty = every pod"
    )


# kube-prometheus-stack's Prometheus: namespace `monitoring`, pods `app.kubernetes.io/name: prometheus`.
DEFAULT_SCRAPERS = PeerSelector(
    namespace_labels={"kubernetes.io/metadata.name": "monitoring"},
    pod_labels={"app.kubernetes.io/name": "prometheus"},
)


class SecuritySpec(_Model):
    """Network isolation of the services, encryption of the bus."""

    network_policy: bool = Field(
        default=True,
        description="NetworkPolicies: each bus port only from its subscribers, metrics only from the "
        "scrapers, the control port only from its clients",
    )
    curve: CurveSpec = Field(default=CurveSpec(), description="CurveZMQ on the bus")
    # Unset rather than a schema default: the API server would fill a nested default with the
    # leaves' empty maps, which match everyone.
    metrics_scrapers: PeerSelector | None = Field(
        default=None,
        description="who may reach the metrics ports; unset = kube-prometheus-stack's Prometheus "
        "(namespace monitoring, pods app.kubernetes.io/name=prometheus)",
    )
    control_clients: PeerSelector | None = Field(
        default=None,
        description="who may reach the risk-manager's control port; unset = the operator's own pods",
    )


_SPEC_RULES = validations(
    cel(
        "self.mode != 'live' || self.liveAcknowledgement == '" + LIVE_CONFIRMATION + "'",
        "mode live trades real money: set spec.liveAcknowledgement to '" + LIVE_CONFIRMATION + "'",
    ),
    cel(
        "self.mode == 'sim' || has(self.credentials)",
        "mode paper and live need spec.credentials.secretName (a Secret with the Alpaca keys)",
    ),
    cel(
        "self.sim.accountType != 'cash' || !has(self.sim.multiplier) || self.sim.multiplier == 1",
        "a cash account's sim.multiplier must be 1 (no margin)",
        fieldPath=".sim.multiplier",
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
    """One trading pipeline: market-data, signal-bridge, risk-manager, execution-engine."""

    model_config = ConfigDict(json_schema_extra=_SPEC_RULES)

    mode: Literal["sim", "paper", "live"] = Field(
        default="sim", description="sim (embedded simulator), paper (Alpaca paper) or live (real money)"
    )
    live_acknowledgement: str = Field(default="", description=f"must be {LIVE_CONFIRMATION} for mode live")
    image: str = Field(
        pattern=IMAGE_PATTERN,
        max_length=512,
        description="the tradingsystem image, e.g. ghcr.io/x/tradingsystem:0.1.0",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="imagePullPolicy of every container"
    )
    symbols: list[Annotated[str, Field(pattern=SYMBOL_PATTERN)]] = Field(
        min_length=1,
        max_length=200,
        description="upper-case tickers to trade, e.g. AAPL, BRK.B (1 to 200, no duplicates)",
        json_schema_extra={
            "items": {"type": "string", "pattern": SYMBOL_PATTERN},
            "x-kubernetes-list-type": "set",
        },
    )
    credentials: CredentialsRef | None = Field(
        default=None, description="the Secret with the Alpaca keys (modes paper and live)"
    )
    halted: bool = Field(default=False, description="trading kill switch: execution to 0, risk-manager HALT")
    paused: bool = Field(default=False, description="stop reconciling; running workloads are left untouched")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="log threshold of every service"
    )
    market_data: MarketDataSpec = Field(default=MarketDataSpec(), description="the market-data service")
    signal_bridge: SignalBridgeSpec = Field(
        default=SignalBridgeSpec(), description="the signal-bridge service"
    )
    risk_manager: RiskManagerSpec = Field(default=RiskManagerSpec(), description="the risk-manager service")
    execution_engine: ExecutionEngineSpec = Field(
        default=ExecutionEngineSpec(), description="the execution-engine service"
    )
    sim: SimSpec = Field(default=SimSpec(), description="the simulator (mode sim)")
    monitoring: MonitoringSpec = Field(
        default=MonitoringSpec(), description="ServiceMonitor and PrometheusRule"
    )
    security: SecuritySpec = Field(default=SecuritySpec(), description="NetworkPolicies and bus encryption")
    scheduling: Scheduling = Field(
        default=Scheduling(),
        description="where the pods of every service run, unless the service's own scheduling says otherwise",
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="added to every pod; the operator's own annotations (config and Secret hashes) win on a clash",
    )
    pod_labels: dict[str, str] = Field(
        default_factory=dict,
        description="added to every pod; the operator's app.kubernetes.io/* labels win on a clash",
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        description="Secrets (docker-registry type) for pulling spec.image from a private registry",
    )


class Phase(StrEnum):
    """``status.phase``: one word for ``kubectl get ts``; the conditions say why."""

    PENDING = "Pending"  # not reconciled yet
    PROGRESSING = "Progressing"  # some services are not ready yet (or wait for their upstream)
    RUNNING = "Running"  # every service ready, trading
    HALTED = "Halted"  # every service ready, kill switch on
    PAUSED = "Paused"  # spec.paused: the operator changes nothing
    DEGRADED = "Degraded"  # a pass stopped short (missing Secret, API error); retried with backoff
    FAILED = "Failed"  # the spec cannot be used as written; retried only after it is edited


class ConditionType(StrEnum):
    """Conditions every TradingSystem carries; each service adds ``<Service>Ready`` (status.py)."""

    READY = "Ready"
    DEGRADED = "Degraded"
    HALTED = "Halted"
    PAUSED = "Paused"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """Every ``reason`` the operator writes on a condition (and on its Warning events)."""

    # <Service>Ready
    AVAILABLE = "Available"
    NOT_AVAILABLE = "NotAvailable"
    WAITING_FOR_UPSTREAM = "WaitingForUpstream"
    SCALED_TO_ZERO = "ScaledToZero"
    HALTED = "Halted"  # execution-engine scaled to 0 by the kill switch
    # Ready
    ALL_SERVICES_READY = "AllServicesReady"
    SERVICES_NOT_READY = "ServicesNotReady"
    # Degraded (also Ready=False with the same reason)
    AS_EXPECTED = "AsExpected"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_MISSING = "SecretKeyMissing"
    SECRET_NOT_OWNED = "SecretNotOwned"  # a Secret we would generate exists and is not ours
    API_ERROR = "ApiError"
    INVALID_SPEC = "InvalidSpec"
    # Halted
    KILL_SWITCH_ON = "KillSwitchOn"
    TRADING = "Trading"
    # Paused
    RECONCILE_PAUSED = "ReconcilePaused"
    RECONCILING = "Reconciling"


class Condition(_Model):
    """metav1.Condition."""

    type: str = Field(description="a ConditionType, or <Service>Ready for each running service")
    status: ConditionStatus = Field(description="True, False or Unknown")
    observed_generation: int = Field(default=0, description="metadata.generation this condition is about")
    last_transition_time: str = Field(description="when status last changed (RFC 3339, UTC)")
    # Open like metav1.Condition's (an older or newer operator may have written another one);
    # this operator writes only Reason members.
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase cause, see docs/operator.md",
    )
    message: str = Field(default="", description="what a person should know or do")


class ServiceStatus(_Model):
    desired: int = Field(default=0, description="replicas the spec asks for once the startup gate opens")
    ready: int = Field(default=0, description="available replicas")
    waiting_on: str | None = Field(default=None, description="the upstream service this one waits for")


class TradingSystemStatus(_Model):
    """What the operator observed at its last pass; written only by the operator."""

    phase: Phase = Field(default=Phase.PENDING, description="summary; the conditions say why")
    observed_generation: int = Field(default=0, description="metadata.generation of the last pass")
    ready_services: str = Field(default="", description="ready/total pipeline services, e.g. 3/4")
    services: dict[str, ServiceStatus] = Field(
        default_factory=dict, description="replica counts per service (sim, market-data, ...)"
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Degraded, Halted, Paused and <Service>Ready",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class InvalidSpecError(ValueError):
    """The stored spec does not parse as the models; the message names every bad field."""


def parse_spec(spec: Mapping[str, Any] | None) -> TradingSystemSpec:
    """The spec as the API server stored it (defaults applied) as a model.

    Raises ``InvalidSpecError`` naming each field by its path (``spec.riskManager.limits...``);
    values are not echoed.
    """
    try:
        return TradingSystemSpec.model_validate(dict(spec or {}))
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise InvalidSpecError(
            "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        ) from None
