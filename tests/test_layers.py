"""The import graph follows the layers of docs/architecture.md.

Every first-party module belongs to a unit (the longest key of ``ALLOWED`` that is its name or a
prefix of it), and a unit imports only itself and the units its row allows. Imports are read with
the stdlib ``ast`` from the source files, so lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = {
    "tradingsystem": REPO / "components" / "tradingsystem",
    "tradingsystem_operator": REPO / "operator" / "tradingsystem_operator",
    "tradingsystem_testing": REPO / "support" / "tradingsystem_testing",
}
PRODUCT = ("tradingsystem", "tradingsystem_operator")
HARNESS = "tradingsystem_testing"

# --- the table ----------------------------------------------------------------------------------
FOUNDATION = frozenset({"tradingsystem", "tradingsystem.common"})  # __version__; wire, bus, config
SERVICES = (
    "tradingsystem.marketdata",
    "tradingsystem.signals",
    "tradingsystem.risk",
    "tradingsystem.execution",
)
SIM = "tradingsystem.sim"
BROKER = "tradingsystem.broker"  # credentials, Alpaca URL rules, timeout-safe clients
BACKTEST = "tradingsystem.backtest"  # drives the services' pure cores and the simulator's fill rule
PRODUCT_UNITS = FOUNDATION | {
    *SERVICES,
    SIM,
    BROKER,
    BACKTEST,
    "tradingsystem.supervisor",
    "tradingsystem.cli",
    "tradingsystem_operator",
}

# unit -> the other units it may import. The product never imports the harness; a service imports
# neither a sibling service nor the simulator (it talks to Alpaca, or the simulator, over the wire).
ALLOWED: dict[str, frozenset[str]] = {
    "tradingsystem": frozenset(),
    "tradingsystem.common": FOUNDATION,
    BROKER: FOUNDATION,
    **{service: FOUNDATION | {BROKER} for service in SERVICES},
    SIM: FOUNDATION | {BROKER},
    BACKTEST: FOUNDATION | {BROKER, SIM, "tradingsystem.signals", "tradingsystem.risk"},
    "tradingsystem.supervisor": FOUNDATION | {*SERVICES, SIM, BROKER},
    "tradingsystem.cli": FOUNDATION | {*SERVICES, SIM, BROKER, BACKTEST, "tradingsystem.supervisor"},
    "tradingsystem_operator": FOUNDATION,
    HARNESS: PRODUCT_UNITS,
}


# --- the reader ---------------------------------------------------------------------------------
def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every first-party module."""
    found = {}
    for top, root in SOURCES.items():
        for path in sorted(root.rglob("*.py")):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = module_files()


def imported_names(module: str, source: str, is_package: bool = False) -> set[str]:
    """First-party names ``source`` imports: ``import a.b`` gives a.b; ``from a import b`` gives a
    and a.b (b may be a module); relative imports are resolved against ``module``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in SOURCES}


def unit_of(name: str) -> str | None:
    """The unit of a module (or of the module an imported name lives in)."""
    while name:
        if name in ALLOWED:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the first-party names it imports (``from m import f`` counts as m unless f is a module)."""
    graph = {}
    for module, path in MODULES.items():
        names = imported_names(module, path.read_text(), is_package=path.name == "__init__.py")
        graph[module] = {n for n in names if n in MODULES or n.rpartition(".")[0] not in MODULES}
    return graph


def violations(unit: str, graph: dict[str, set[str]]) -> list[str]:
    allowed = ALLOWED[unit] | {unit}
    return sorted(
        f"{module} imports {name}"
        for module, names in graph.items()
        if unit_of(module) == unit
        for name in names
        if unit_of(name) not in allowed
    )


GRAPH = import_graph()


# --- the tests ----------------------------------------------------------------------------------
def test_every_module_belongs_to_a_declared_unit() -> None:
    undeclared = sorted(m for m in MODULES if unit_of(m) is None)
    assert undeclared == [], "add these modules' package to ALLOWED in tests/test_layers.py"


def test_every_declared_unit_exists() -> None:
    assert {unit_of(m) for m in MODULES} == set(ALLOWED)


@pytest.mark.parametrize("unit", list(ALLOWED))
def test_a_unit_imports_only_what_the_layer_table_allows(unit: str) -> None:
    assert violations(unit, GRAPH) == []


def test_the_product_never_imports_the_harness() -> None:
    # Also checked row by row above; kept separate so its failure names the rule broken.
    offenders = [
        f"{module} imports {name}"
        for module, names in GRAPH.items()
        if module.split(".")[0] in PRODUCT
        for name in names
        if name.split(".")[0] == HARNESS
    ]
    assert offenders == []


def test_the_reader_sees_absolute_relative_and_lazy_imports() -> None:
    source = (
        "import tradingsystem.sim.auth\n"
        "from tradingsystem.execution import broker\n"
        "from ..marketdata.stream import AlpacaStream\n"
        "import json\n"
        "def later():\n"
        "    from tradingsystem_testing import eventually\n"
    )
    names = imported_names("tradingsystem.risk.service", source)
    assert {unit_of(n) for n in names} == {
        SIM,
        "tradingsystem.execution",
        "tradingsystem.marketdata",
        HARNESS,
    }


def test_a_sibling_service_the_simulator_and_the_harness_are_reported() -> None:
    graph = {
        "tradingsystem.risk.service": {
            "tradingsystem.common.wire",
            "tradingsystem.risk.engine",
            "tradingsystem.execution.orders",
            "tradingsystem.sim.auth",
            "tradingsystem_testing.waiting",
        },
        "tradingsystem.cli": {"tradingsystem.risk.service", "tradingsystem.sim.server"},
    }
    assert violations("tradingsystem.risk", graph) == [
        "tradingsystem.risk.service imports tradingsystem.execution.orders",
        "tradingsystem.risk.service imports tradingsystem.sim.auth",
        "tradingsystem.risk.service imports tradingsystem_testing.waiting",
    ]
    assert violations("tradingsystem.cli", graph) == []
