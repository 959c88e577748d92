"""The committed CRD is the generated one, and it is structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tradingsystem_operator.crd import build_crd, render_yaml

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "tradingsystems.yaml"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key in ("properties",):
            for name, sub in (node.get(key) or {}).items():
                out += _walk(sub, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            out += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def _version() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]


def test_committed_crd_equals_generated() -> None:
    assert CRD_FILE.read_text() == render_yaml(), (
        "run: python -m tradingsystem_operator.crd > crds/tradingsystems.yaml"
    )


def test_names_scope_and_group() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "tradingsystems.tradingsystem.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "TradingSystem",
        "tradingsystems",
        ["ts"],
        ["trading"],
    )
    assert crd["spec"]["scope"] == "Namespaced"
    assert _version()["name"] == "v1alpha1" and _version()["subresources"] == {"status": {}}


def test_schema_is_structural() -> None:
    schema = _version()["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        if path == ".metadata":
            continue
        assert "type" in node, f"{path} has no type"
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "const"} & node.keys(), path
        assert node.get("additionalProperties") is not False, path
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        assert "default" not in node or node["default"] is not None, path
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert bound not in node or isinstance(node[bound], bool), path  # OpenAPI v3.0 form


def test_every_spec_and_status_property_is_described() -> None:
    """`kubectl explain tradingsystem.spec...` shows text (with the unit) for every field."""
    schema = _version()["schema"]["openAPIV3Schema"]
    bare = [
        path
        for path, node in _walk(schema)
        if path.startswith((".spec", ".status")) and not path.endswith(("[]", "{}"))
        if not node.get("description")
    ]
    assert bare == [], f"properties without a description: {bare}"


def test_printer_columns() -> None:
    columns = {c["name"]: c for c in _version()["additionalPrinterColumns"]}
    assert list(columns) == ["Mode", "Phase", "Ready", "Halted", "Paused", "Age"]
    assert columns["Ready"]["jsonPath"] == ".status.readyServices"
    assert columns["Paused"]["priority"] == 1


def test_cel_rules_have_messages() -> None:
    schema = _version()["schema"]["openAPIV3Schema"]
    rules = [r for _, node in _walk(schema) for r in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 7
    assert all(r["message"] and r["rule"] for r in rules)
    spec_rules = " ".join(r["rule"] for r in schema["properties"]["spec"]["x-kubernetes-validations"])
    assert "oldSelf.mode" in spec_rules and "has(self.credentials)" in spec_rules


def test_crd_yaml_parses_to_build() -> None:
    assert yaml.safe_load(render_yaml()) == build_crd()
