"""Load the Prometheus alert rule groups shipped in ``monitoring/rules/*.yaml``.

The rules are written once, for Prometheus, in the repository's ``monitoring/`` directory; the
operator reads the same files for each TradingSystem's PrometheusRule. Search order:
``$TRADINGSYSTEM_MONITORING_DIR``, then ``monitoring/`` copied into the package (container image),
then the source checkout.

``operator.rules.yaml`` is left out: its alerts watch the operator's own metrics, which exist once
per operator, so the Helm chart ships them once, in its own PrometheusRule. Copied into every
TradingSystem's PrometheusRule they would be evaluated, and fire, once per TradingSystem.

The per-system rules are written for one Prometheus over all systems (instance-level: no
aggregation across systems), so a copy per TradingSystem would also evaluate every other
system's series: N copies of each alert and N writers of each recorded series. ``scoped`` adds
the system's ``namespace`` and ``tradingsystem`` matchers (target labels set by its
ServiceMonitor) to every selector of a copy, so each TradingSystem's rules see only its own
series.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

_PACKAGE_DIR = Path(__file__).resolve().parent
OPERATOR_RULES = "operator.rules.yaml"
SYSTEM_LABEL = "tradingsystem"  # target label naming a series' TradingSystem (its ServiceMonitor sets it)


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


# A string literal (left as it is), or a selector of one of our series: a metric of ours
# (``tradingsystem_...``), a series recorded from them (``level:tradingsystem_...:ops``) or
# Prometheus' ``up``, with its optional ``{...}`` (whose values may hold quoted ``}``). Not a
# function call (``name(``), not part of a longer name.
_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)"""
    r"""|(?<![\w:.])(?P<name>(?:[a-z_]+:)?tradingsystem_[A-Za-z0-9_:]*|up)(?![\w:(])"""
    r"""(?P<matchers>\{(?:[^}"']|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')*\})?"""
)


def scope_expr(expr: str, labels: Mapping[str, str]) -> str:
    """``expr`` with ``labels`` as equality matchers on every selector of our series. No I/O.

    Written for the shipped rules' PromQL (selectors of ``tradingsystem_*`` metrics, their
    recorded series and ``up``); ``tests/operator/test_rules.py`` checks every shipped rule
    with promtool, scoped, so a rule this does not cover fails there, not in a cluster."""
    added = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())

    def one(m: re.Match[str]) -> str:
        if m.group("string") is not None:
            return m.group("string")
        inner = (m.group("matchers") or "{}")[1:-1].strip().rstrip(",")
        return f"{m.group('name')}{{{inner + ',' if inner else ''}{added}}}"

    return _TOKEN.sub(one, expr)


def scoped(groups: tuple[dict[str, Any], ...], labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Copies of ``groups`` whose every rule expression is ``scope_expr``-ed. No I/O."""
    return [
        {**g, "rules": [{**r, "expr": scope_expr(str(r["expr"]), labels)} for r in g["rules"]]}
        for g in groups
    ]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
