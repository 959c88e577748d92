"""What may import what, read from the source (lazy imports inside functions included).

wire / bus / config / money / services catalogue   (tradingsystem.common)
  -> broker layer                                    (tradingsystem.broker)
  -> services, each on its own (marketdata, signals, risk, execution) and the simulator
  -> supervisor / CLI                                (reach services by catalogue name)
operator                                             (tradingsystem_operator: common only)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("marketdata", "signals", "risk", "execution")


def package_of(module: str) -> str:
    """``tradingsystem.risk.engine`` -> ``tradingsystem.risk``; top-level modules stay whole."""
    parts = module.split(".")
    if parts[0] == "tradingsystem" and len(parts) > 1 and parts[1] in (*SERVICES, "sim", "common"):
        return ".".join(parts[:2])
    return ".".join(parts[:2]) if parts[0] == "tradingsystem" else parts[0]


def modules() -> dict[str, Path]:
    found = {}
    for root in (REPO / "components", REPO / "operator"):
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(p for p in parts if p != "__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return {m for m in out if m.split(".")[0] in ("tradingsystem", "tradingsystem_operator")}


# package -> the packages of ours it may import (besides itself and the `tradingsystem` root)
ALLOWED: dict[str, set[str]] = {
    "tradingsystem.common": set(),
    "tradingsystem.broker": {"tradingsystem.common"},
    **{f"tradingsystem.{s}": {"tradingsystem.common", "tradingsystem.broker"} for s in SERVICES},
    "tradingsystem.sim": {"tradingsystem.common", "tradingsystem.broker"},
    "tradingsystem.supervisor": {"tradingsystem.common"},
    "tradingsystem.cli": {"tradingsystem.common", "tradingsystem.supervisor"},
    "tradingsystem_operator": {"tradingsystem.common"},
}

ALL_MODULES = modules()


def test_every_product_module_belongs_to_a_layer() -> None:
    unknown = {m for m in ALL_MODULES if package_of(m) not in ALLOWED and m != "tradingsystem"}
    assert unknown == set()


@pytest.mark.parametrize("module", sorted(m for m in ALL_MODULES if m != "tradingsystem"))
def test_a_module_imports_only_its_own_package_and_the_layers_below(module: str) -> None:
    own = package_of(module)
    bad = {
        m
        for m in imports(ALL_MODULES[module])
        if m != "tradingsystem" and package_of(m) != own and package_of(m) not in ALLOWED[own]
    }
    assert bad == set(), f"{module} may import only {sorted(ALLOWED[own])}"


def test_the_layer_rules_catch_a_sibling_import() -> None:
    assert "tradingsystem.execution" not in ALLOWED[package_of("tradingsystem.risk.reconcile")]
    assert "tradingsystem.sim" not in ALLOWED[package_of("tradingsystem.marketdata.service")]
