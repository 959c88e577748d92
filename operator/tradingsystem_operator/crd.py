"""Generate the TradingSystem CRD from the pydantic models.

``python -m tradingsystem_operator.crd > crds/tradingsystems.yaml``; a test keeps the committed
file equal to this output. Pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural*
OpenAPI v3.0 subset, so references are inlined, ``Optional`` unions collapsed, exclusive bounds
rewritten and titles dropped.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from tradingsystem_operator.models import GROUP, KIND, PLURAL, VERSION, TradingSystemSpec, TradingSystemStatus

_DROP = {"title", "$defs"}


def _to_openapi(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_to_openapi(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _to_openapi({**target, **extra}, defs)
    if "anyOf" in node:  # Optional[X] -> X, simply not required (and never written as null)
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf" and not (k == "default" and v is None)}
            return _to_openapi({**options[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "additionalProperties" and value is False):
            continue  # extra="forbid": the API server prunes unknown fields anyway
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        elif key == "properties":
            required = set(node.get("required", ()))
            out[key] = {
                name: _with_object_default(sub, defs, name in required) for name, sub in value.items()
            }
        else:
            out[key] = _to_openapi(value, defs)
    if (
        out.get("type") == "object"
        and isinstance(out.get("default"), dict)
        and "properties" in out
        and "x-kubernetes-validations" not in out
    ):
        # `default: {}` lets the API server fill every nested default itself, so the defaults live
        # in one place (the leaf fields). An object with CEL rules keeps its full default: the
        # API server checks the rules against the default as written, before nested defaulting.
        out["default"] = {}
    elif isinstance(out.get("default"), dict):  # an Optional left unset is absent, never null
        out["default"] = {k: v for k, v in out["default"].items() if v is not None}
    return out


def _with_object_default(raw: Any, defs: dict[str, Any], required: bool = False) -> Any:
    """A nested settings object (not an Optional one) defaults to ``{}`` so the API server fills
    and shows its leaf defaults even when the user omitted the whole section. A required one gets
    no default: the user must write it (and ``{}`` would lack its own required fields)."""
    converted = _to_openapi(raw, defs)
    if required:
        return converted
    if "anyOf" not in raw and converted.get("type") == "object" and "properties" in converted:
        converted.setdefault("default", {})
    return converted


def openapi_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="serialization")
    schema: dict[str, Any] = _to_openapi(raw, raw.get("$defs", {}))
    return schema


def build_crd() -> dict[str, Any]:
    spec = openapi_schema(TradingSystemSpec)
    status = openapi_schema(TradingSystemStatus)
    status.pop("default", None)
    columns = [
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.readyServices"},
        {"name": "Halted", "type": "boolean", "jsonPath": ".spec.halted"},
        {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        # Child names are "<name>-execution-engine" and must fit the 63-character DNS label limit.
        "x-kubernetes-validations": [
            {
                "rule": "self.metadata.name.size() <= 40",
                "message": "metadata.name must be at most 40 characters",
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["ts"],
                "categories": ["trading"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render_yaml() -> str:
    header = "# Generated by `python -m tradingsystem_operator.crd` from models.py. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render_yaml())
