"""Fixtures for the delivery tests: the Dockerfile parsed, the helm binary, the chart rendered.

The Dockerfile parser reads only what these tests need (stages, instructions with their line
continuations joined); it is not a general BuildKit front end.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradingsystem_testing.controlplane import locate_assets

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "tradingsystem-operator"
EXAMPLES = REPO / "examples"


def project_version() -> str:
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def operator_rules(path: Path = CHART / "files" / "rbac.yaml") -> list[dict[str, Any]]:
    """The rules of the ClusterRole in the operator's rbac.yaml (or the chart's copy of it)."""
    [role] = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "ClusterRole"]
    return list(role["rules"])


# --- Dockerfile -------------------------------------------------------------------------------


@dataclass
class Instruction:
    command: str  # upper case: FROM, RUN, COPY, ...
    value: str  # the rest of the (joined) line

    def exec_form(self) -> list[str]:
        """ENTRYPOINT/CMD in JSON (exec) form."""
        parsed = json.loads(self.value)
        assert isinstance(parsed, list), f"{self.command} must use the exec form: {self.value}"
        return [str(p) for p in parsed]

    def words(self) -> list[str]:
        return shlex.split(self.value)


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, command: str) -> list[Instruction]:
        return [i for i in self.instructions if i.command == command]


@dataclass
class Dockerfile:
    args: dict[str, str]  # ARGs declared before the first FROM, with their defaults
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    return lines


def parse_dockerfile(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        command, _, value = line.partition(" ")
        command, value = command.upper(), value.strip()
        if command == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert command == "ARG", f"only ARG may precede the first FROM, found {command}"
            key, _, default = value.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append(Instruction(command, value))
    return Dockerfile(args, stages)


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(REPO / "Dockerfile")


# --- helm -------------------------------------------------------------------------------------


@dataclass
class Helm:
    binary: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=120, check=False
        )
        if check:
            assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def template(self, *args: str, namespace: str = "trading") -> list[dict[str, Any]]:
        """Rendered manifests (CRDs included) as objects."""
        out = self.run("template", "ts", str(CHART), "--namespace", namespace, "--include-crds", *args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(locate_assets(["helm"])["helm"])
