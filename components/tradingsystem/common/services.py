"""The service catalogue: one frozen record per service. No I/O.

Every table that names services is derived from here: the CLI subcommands, the supervisor's
start order and ports, the default bus endpoints and HTTP ports of the configuration, the
operator's Deployments, NetworkPolicies, replicas and startup gate, and the status condition
types. A service is spelled one way (``name``) plus the spellings its surroundings force on
it: the configuration section (``section``), the CRD field (``spec_field``, derived) and a
CamelCase prefix (``condition``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tradingsystem.common import wire


class Replicas(enum.StrEnum):
    """How many replicas the operator runs."""

    FROM_SPEC = "fromSpec"  # spec.<service>.replicas (0 or 1: a PUB socket binds once)
    ONE = "one"  # always one
    ONE_UNLESS_HALTED = "oneUnlessHalted"  # the kill switch scales it to 0; never two (duplicate orders)


@dataclass(frozen=True)
class Service:
    name: str  # `tradingsystem <name>`, Kubernetes component and child suffix, metrics/CURVE key name
    section: str  # its Settings section and BusSettings endpoint field
    condition: str  # status condition prefix: <condition>Ready
    module: str  # module with run(settings) -> int
    summary: str  # one line for --help (ports are added from the fields below)
    pub_port: int | None  # ZeroMQ PUB port (the simulator has none)
    http_port: int  # /metrics /healthz /readyz (the simulator: Alpaca's REST and websockets)
    # POST /control, GET /state behind a bearer token, apart from the read-only HTTP port so a
    # NetworkPolicy can open each to different peers (only the risk-manager has one).
    control_port: int | None = None
    publishes: tuple[bytes, ...] = ()  # topic kinds on its PUB socket, heartbeats aside
    subscribes: tuple[str, ...] = ()  # services whose PUB socket it connects to
    uses_broker: bool = False  # calls Alpaca (or the simulator): gets the credentials
    replicas: Replicas = Replicas.FROM_SPEC

    @property
    def spec_field(self) -> str:
        """Its section of the TradingSystem spec (``market_data``, camelCase ``marketData``)."""
        return self.name.replace("-", "_")


MARKET_DATA = Service(
    name="market-data",
    section="market_data",
    condition="MarketData",
    module="tradingsystem.marketdata.service",
    summary="stream validated ticks from Alpaca (or the simulator)",
    pub_port=5555,
    http_port=8081,
    publishes=(wire.TOPIC_TRADE, wire.TOPIC_QUOTE, wire.TOPIC_BAR),
    uses_broker=True,
)
SIGNAL_BRIDGE = Service(
    name="signal-bridge",
    section="signals",
    condition="SignalBridge",
    module="tradingsystem.signals.service",
    summary="turn market data into strategy signals",
    pub_port=5556,
    http_port=8082,
    publishes=(wire.TOPIC_SIGNAL,),
    subscribes=("market-data",),
    uses_broker=True,  # historical bars for the warm-up
)
# The risk-manager's control port, named for the settings default (an int, never None).
RISK_CONTROL_PORT = 8093
RISK_MANAGER = Service(
    name="risk-manager",
    section="risk",
    condition="RiskManager",
    module="tradingsystem.risk.service",
    summary="approve or reject intended orders; positions, P&L, kill switch",
    pub_port=5557,
    http_port=8083,
    control_port=RISK_CONTROL_PORT,
    publishes=(wire.TOPIC_ORDER, wire.TOPIC_REJECT, wire.TOPIC_RISK),
    subscribes=("market-data", "signal-bridge", "execution-engine"),
    uses_broker=True,  # the positions at start (risk.reconcile_on_start)
)
EXECUTION_ENGINE = Service(
    name="execution-engine",
    section="execution",
    condition="ExecutionEngine",
    module="tradingsystem.execution.service",
    summary="submit approved orders to the broker, report fills",
    pub_port=5558,
    http_port=8084,
    publishes=(wire.TOPIC_EXEC,),
    subscribes=("risk-manager",),
    uses_broker=True,
    replicas=Replicas.ONE_UNLESS_HALTED,
)
SIM = Service(
    name="sim",
    section="sim",
    condition="Simulator",
    module="tradingsystem.sim.server",
    summary="run the Alpaca-compatible market and broker simulator",
    pub_port=None,
    http_port=8090,
    replicas=Replicas.ONE,
)

# The four trading services in the direction data flows.
PIPELINE: tuple[Service, ...] = (MARKET_DATA, SIGNAL_BRIDGE, RISK_MANAGER, EXECUTION_ENGINE)
ALL: tuple[Service, ...] = (SIM, *PIPELINE)
BY_NAME: dict[str, Service] = {s.name: s for s in ALL}

# Consumers start before producers: a PUB socket drops what it publishes before a subscriber
# has connected, and an order the risk-manager approves before the execution-engine listens is
# lost while its quantity stays reserved. So execution-engine, then risk-manager (subscribed to
# execution reports and signals before either exists). market-data precedes signal-bridge only
# because signal-bridge counts as ready once it hears market-data; ticks missed before it
# subscribes carry no state. The simulator, when there is one, is first: it is the broker.
# Stopping runs in reverse: sources first, the execution-engine last, after orders in flight.
START_ORDER: tuple[Service, ...] = (EXECUTION_ENGINE, RISK_MANAGER, MARKET_DATA, SIGNAL_BRIDGE)


def start_order(with_sim: bool) -> tuple[Service, ...]:
    return (SIM, *START_ORDER) if with_sim else START_ORDER


def subscribers(svc: Service) -> tuple[Service, ...]:
    """Who connects to ``svc``'s port: its subscribers, or for the simulator every broker user."""
    if svc is SIM:
        return tuple(s for s in PIPELINE if s.uses_broker)
    return tuple(s for s in PIPELINE if svc.name in s.subscribes)
