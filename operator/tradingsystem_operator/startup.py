"""The startup gate: which Deployments may be scaled up now. No I/O.

Services start in the catalogue's ``start_order`` (the simulator, then consumers before
producers: see ``tradingsystem.common.services``), the same order ``tradingsystem run``
uses. A service is scaled up once the service before it has an available replica; services
the spec runs at 0 replicas are skipped, so a halted system (execution-engine at 0) still
starts its risk-manager. A service that already runs keeps running if the one before it
blips, so a restart does not cascade down the chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GateInputs:
    order: tuple[str, ...]  # service names, first to start first
    desired: Mapping[str, int]  # replicas each service should run once its gate opens
    available: Mapping[str, int] = field(default_factory=dict)  # observed available replicas
    running: Mapping[str, int] = field(default_factory=dict)  # observed spec.replicas


@dataclass(frozen=True)
class Gate:
    replicas: dict[str, int]  # replicas to apply now
    waiting_on: dict[str, str]  # service -> the service it waits for (gate closed)


def gate(inp: GateInputs) -> Gate:
    replicas: dict[str, int] = {}
    waiting: dict[str, str] = {}
    before: str | None = None  # the nearest earlier service that is meant to run
    for name in inp.order:
        want = inp.desired[name]
        open_ = before is None or inp.available.get(before, 0) > 0 or inp.running.get(name, 0) > 0
        if want > 0 and not open_:
            assert before is not None
            waiting[name] = before
        replicas[name] = want if open_ else 0
        if want > 0:
            before = name
    return Gate(replicas=replicas, waiting_on=waiting)
