"""The Grafana emitter: a ``Dashboard`` (dashboard_panels.py) as Grafana dashboard JSON. No I/O.

Every panel and the ``namespace`` variable read the data source chosen in the ``datasource``
template variable, so the JSON imports into any Grafana with a Prometheus data source.
"""

from __future__ import annotations

from typing import Any

from dashboard_panels import Dashboard, Panel

DS = {"type": "prometheus", "uid": "${datasource}"}


def _panel_json(panel: Panel, pid: int, x: int, y: int, height: int) -> dict[str, Any]:
    table = panel.kind == "table"
    targets = [
        {
            "datasource": DS,
            "refId": chr(ord("A") + i),
            "expr": t.expr,
            "legendFormat": t.legend,
            "instant": table,
            "range": not table,
            **({"format": "heatmap"} if panel.kind == "heatmap" else {}),
            **({"format": "table"} if table else {}),
        }
        for i, t in enumerate(panel.targets)
    ]
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": colour, "value": value} for value, colour in panel.thresholds],
        },
    }
    if panel.mappings:
        defaults["mappings"] = [
            {"type": "value", "options": {v: {"text": text, "color": colour, "index": i}}}
            for i, (v, text, colour) in enumerate(panel.mappings)
        ]
        defaults["color"] = {"mode": "thresholds"}
    options: dict[str, Any] = {}
    if panel.kind == "stat":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
        }
        if panel.show_name:
            options["textMode"] = "name"
    elif panel.kind == "timeseries":
        options = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    elif panel.kind == "heatmap":
        options = {"calculate": False, "yAxis": {"unit": panel.unit}, "color": {"scheme": "Oranges"}}
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"h": height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
    }


VARIABLES = [
    {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    },
    {
        "name": "namespace",
        "label": "Namespace",
        "type": "query",
        "datasource": DS,
        "query": {"query": "label_values(tradingsystem_ready, namespace)", "refId": "namespace"},
        "definition": "label_values(tradingsystem_ready, namespace)",
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "sort": 1,
        "current": {"text": "All", "value": "$__all"},
        "hide": 0,
        "options": [],
    },
]


def dashboard_json(board: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y, pid = 0, 1
    for row in board.rows:
        panels.append(
            {"id": pid, "type": "row", "title": row.title, "collapsed": False, "panels": [],
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}}
        )  # fmt: skip
        pid, y, x, line_height = pid + 1, y + 1, 0, 0
        for panel in row.panels:
            height = 4 if panel.kind == "stat" and panel.width <= 6 else 8
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel_json(panel, pid, x, y, height))
            pid, x, line_height = pid + 1, x + panel.width, max(line_height, height)
        y += line_height
    return {
        "uid": board.uid,
        "title": board.title,
        "description": board.description,
        "tags": ["tradingsystem"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "version": 1,
        "links": [
            {"type": "dashboards", "tags": ["tradingsystem"], "asDropdown": True, "title": "TradingSystem"}
        ],
        "annotations": {"list": []},
        "templating": {"list": VARIABLES},
        "panels": panels,
    }
