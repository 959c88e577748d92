"""Load the Prometheus alert rule groups shipped in ``monitoring/rules/*.yaml``.

The rules are written once, for Prometheus, in the repository's ``monitoring/`` directory; the
operator reads the same files for each TradingSystem's PrometheusRule. Search order:
``$TRADINGSYSTEM_MONITORING_DIR``, then ``monitoring/`` copied into the package (container image),
then the source checkout.

``operator.rules.yaml`` is left out: its alerts watch the operator's own metrics, which exist once
per operator, so the Helm chart ships them once, in its own PrometheusRule. Copied into every
TradingSystem's PrometheusRule they would be evaluated, and fire, once per TradingSystem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

_PACKAGE_DIR = Path(__file__).resolve().parent
OPERATOR_RULES = "operator.rules.yaml"


def monitoring_dir() -> Path | None:
    candidates = [Path(p) for p in (os.environ.get("TRADINGSYSTEM_MONITORING_DIR"),) if p] + [
        _PACKAGE_DIR / "monitoring",
        _PACKAGE_DIR.parents[1] / "monitoring",
    ]
    for candidate in candidates:
        if (candidate / "rules").is_dir():
            return candidate
    return None


def load_rule_groups(directory: Path | None = None) -> tuple[dict[str, Any], ...]:
    """Rule groups of every ``rules/*.yaml`` but ``OPERATOR_RULES``, accepting a Prometheus rule
    file (``groups:``) or a PrometheusRule manifest (``spec.groups``). Empty when no rules
    directory is found."""
    base = directory if directory is not None else monitoring_dir()
    if base is None:
        return ()
    groups: list[dict[str, Any]] = []
    for path in sorted((base / "rules").glob("*.y*ml")):
        if path.name == OPERATOR_RULES:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            found = doc.get("groups") or (doc.get("spec") or {}).get("groups") or []
            groups.extend(g for g in found if isinstance(g, dict) and g.get("name") and g.get("rules"))
    return tuple(groups)
