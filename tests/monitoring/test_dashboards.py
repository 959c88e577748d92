"""The shipped Grafana dashboards and the generated docs (their ConfigMaps: the Helm chart, tests/delivery)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from promhelpers import MONITORING, REPO

BOARDS = sorted((MONITORING / "dashboards").glob("*.json"))


def _generator() -> ModuleType:
    if str(MONITORING) not in sys.path:  # generate.py imports its sibling modules, as when run as a script
        sys.path.insert(0, str(MONITORING))
    spec = importlib.util.spec_from_file_location("monitoring_generate", MONITORING / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def test_generated_files_are_up_to_date() -> None:
    stale = _generator().stale_files()
    assert stale == [], "run python monitoring/generate.py"


def test_three_dashboards_ship() -> None:
    assert {_load(p)["uid"] for p in BOARDS} == {
        "tradingsystem-pipeline",
        "tradingsystem-trading",
        "tradingsystem-health",
    }


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_every_panel_reads_the_datasource_variable(path: Path) -> None:
    board = _load(path)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["datasource"]["uid"] == "${datasource}"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
        assert panel["description"], panel["title"]


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_layout_has_unique_ids_and_no_overlaps(path: Path) -> None:
    panels = _load(path)["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_the_helm_chart_is_the_only_configmap_producer() -> None:
    """Two ConfigMaps with one dashboard uid make Grafana's sidecar load it twice."""
    assert not (MONITORING / "dashboards" / "configmaps").exists()
    assert {p.suffix for p in _generator().outputs()} == {".json", ".md"}  # dashboards and docs only


def test_docs_describe_every_panel() -> None:
    doc = (REPO / "docs" / "dashboards.md").read_text()
    for path in BOARDS:
        board = _load(path)
        assert f"## {board['title']}" in doc
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert f"- **{panel['title']}** ({panel['type']}): {panel['description']}" in doc
