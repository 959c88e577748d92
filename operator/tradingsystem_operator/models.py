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


class ExecutionEngineSpec(_Model):
    """Always exactly one replica (Recreate): two engines would submit every order twice."""

    resources: Resources = Resources()
    rate_limit_per_min: int = Field(default=200, gt=0)
    request_timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    storage: Literal["emptyDir", "persistentVolumeClaim"] = "emptyDir"
    storage_size: str = Field(default="1Gi", pattern=QUANTITY_PATTERN)


class SimSpec(_Model):
    resources: Resources = Resources()
    seed: int = 42
    tick_rate: float = Field(default=20.0, gt=0)
    initial_cash: float = Field(default=100_000, gt=0)


class MonitoringSpec(_Model):
    service_monitor: bool = True
    prometheus_rule: bool = True
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m)$")
    labels: dict[str, str] = Field(default_factory=dict, description="added to ServiceMonitor/PrometheusRule")


class CurveSpec(_Model):
    enabled: bool | None = Field(
        default=None,
        description="CurveZMQ on the bus; unset means on in mode live and off otherwise",
    )
    keys_secret: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="a Secret with keys written by `tradingsystem keys`; unset = the operator generates them",
    )


class PeerSelector(_Model):
    """Who may connect: pods matching ``podLabels`` in namespaces matching ``namespaceLabels``.

    An empty ``namespaceLabels`` matches every namespace; an empty ``podLabels`` every pod.
    """

    namespace_labels: dict[str, str] = Field(default_factory=dict)
    pod_labels: dict[str, str] = Field(default_factory=dict)


# kube-prometheus-stack's Prometheus: namespace `monitoring`, pods `app.kubernetes.io/name: prometheus`.
DEFAULT_SCRAPERS = PeerSelector(
    namespace_labels={"kubernetes.io/metadata.name": "monitoring"},
    pod_labels={"app.kubernetes.io/name": "prometheus"},
)


class SecuritySpec(_Model):
    network_policy: bool = True
    curve: CurveSpec = CurveSpec()
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
