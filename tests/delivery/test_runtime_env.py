"""The image's runtime environment, built without Docker.

The Dockerfile is executed here instruction by instruction under a temporary root: the build
stage's COPY and RUN for real (so `hack/runtime-venv.sh` builds the venv from requirements.lock
and the project wheel exactly as in the image), the runtime stage's COPY and ENV. Then every
entrypoint is started from that environment. One venv per session: this is the slow test.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tradingsystem.common.services import ALL

from .conftest import REPO, Dockerfile, Instruction, project_version

_UNCOPIED = shutil.ignore_patterns("__pycache__", "*.py[co]", "*.egg-info", "build")


@dataclass
class RuntimeEnv:
    root: Path
    env: dict[str, str]
    workdir: Path
    entrypoint: list[str]
    cmd: list[str]

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run like `docker run IMAGE ARGS` would: ENTRYPOINT + args (CMD when none)."""
        return self.exec(*self.entrypoint, *(argv or self.cmd))

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        program = shutil.which(argv[0], path=self.env["PATH"])
        assert program, f"{argv[0]} not on the image's PATH {self.env['PATH']}"
        return subprocess.run(
            [program, *argv[1:]], env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=60
        )


class _Builder:
    """Executes Dockerfile instructions with every absolute path moved under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workdir = "/"
        # The host's interpreter plays the base image's python3 (same minor version: checked
        # in test_dockerfile); nothing from the host's site-packages reaches the venv.
        self.env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(root),
            "LANG": "C.UTF-8",
        }
        self.entrypoint: list[str] = []
        self.cmd: list[str] = []

    def rebase(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def _dest(self, dest: str) -> Path:
        return self.rebase(dest if dest.startswith("/") else f"{self.workdir.rstrip('/')}/{dest}")

    def copy(self, instruction: Instruction) -> None:
        words = instruction.words()
        if words[0].startswith("--from"):
            # Both stages share this one root, so a copy between stages is a no-op if it keeps the
            # path: a venv is not relocatable, and the image keeps it where it was built too.
            assert words[1] == words[2], f"cross-stage COPY must keep the path: {instruction.value}"
            assert self.rebase(words[1]).exists()
            return
        *sources, dest = words
        target = self._dest(dest)
        for source in sources:
            src = REPO / source
            into = target / src.name if dest.endswith("/") or len(sources) > 1 else target
            if src.is_dir():
                shutil.copytree(src, into, ignore=_UNCOPIED, dirs_exist_ok=True)
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, into)

    def run(self, instruction: Instruction) -> None:
        argv = [str(self.rebase(w)) if w.startswith("/") else w for w in instruction.words()]
        proc = subprocess.run(
            argv, cwd=self._dest("."), env=self.env, capture_output=True, text=True, timeout=600, check=False
        )
        assert proc.returncode == 0, (
            f"RUN {instruction.value} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )

    def set_env(self, instruction: Instruction) -> None:
        for pair in shlex.split(instruction.value):
            key, _, value = pair.partition("=")
            value = re.sub(r"\$\{?(\w+)\}?", lambda m: self.env.get(m[1], ""), value)
            # Rebase absolute paths the image provides; host paths (the interpreter) stay as they are.
            parts = [
                str(self.rebase(p)) if p.startswith("/") and self.rebase(p).exists() else p
                for p in value.split(":")
            ]
            self.env[key] = ":".join(parts)

    def build_stage(self, instructions: list[Instruction]) -> None:
        for ins in instructions:
            if ins.command == "WORKDIR":
                self.workdir = ins.value
                self._dest(".").mkdir(parents=True, exist_ok=True)
            elif ins.command == "COPY":
                self.copy(ins)
            elif ins.command == "RUN":
                self.run(ins)
            elif ins.command == "ENV":
                self.set_env(ins)
            else:
                raise AssertionError(f"build stage: no Docker-less equivalent for {ins.command}")

    def runtime_stage(self, instructions: list[Instruction]) -> RuntimeEnv:
        self.workdir = "/"
        for ins in instructions:
            if ins.command in ("ARG", "LABEL", "USER"):
                continue  # metadata, checked in test_dockerfile
            if ins.command == "RUN":
                continue  # only creates the user (test_dockerfile); not repeated on this host
            if ins.command == "WORKDIR":
                self.workdir = ins.value
                self._dest(".").mkdir(parents=True, exist_ok=True)
            elif ins.command == "COPY":
                self.copy(ins)
            elif ins.command == "ENV":
                self.set_env(ins)
            elif ins.command == "ENTRYPOINT":
                self.entrypoint = ins.exec_form()
            elif ins.command == "CMD":
                self.cmd = ins.exec_form()
            else:
                raise AssertionError(f"runtime stage: no Docker-less equivalent for {ins.command}")
        return RuntimeEnv(self.root, dict(self.env), self._dest("."), self.entrypoint, self.cmd)


@pytest.fixture(scope="module")
def image(dockerfile: Dockerfile, tmp_path_factory: pytest.TempPathFactory) -> RuntimeEnv:
    builder = _Builder(tmp_path_factory.mktemp("image-root"))
    build, runtime = dockerfile.stage("build"), dockerfile.stage("runtime")
    builder.build_stage(build.instructions)
    return builder.runtime_stage(runtime.instructions)


def test_default_command_prints_usage(image: RuntimeEnv) -> None:
    result = image.run()
    assert result.returncode == 0, result.stderr
    assert "usage: tradingsystem" in result.stdout


def test_version_is_the_package_version(image: RuntimeEnv) -> None:
    result = image.run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tradingsystem {project_version()}"


@pytest.mark.parametrize("service", [*(s.name for s in ALL), "run"])
def test_each_service_entrypoint_starts(image: RuntimeEnv, service: str) -> None:
    result = image.run(service, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: tradingsystem {service}" in result.stdout


def test_operator_entrypoint_starts(image: RuntimeEnv) -> None:
    result = image.exec("tradingsystem-operator", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: tradingsystem-operator" in result.stdout


def test_operator_help_lists_only_what_the_image_can_run(image: RuntimeEnv) -> None:
    result = image.exec("tradingsystem-operator", "--help")
    assert result.returncode == 0, result.stderr
    assert "dev-cluster" not in result.stdout


def test_the_image_holds_no_test_or_dev_harness(image: RuntimeEnv) -> None:
    harness = (
        "tradingsystem_testing",
        "tradingsystem_operator.controlplane",
        "tradingsystem_operator.process",
    )
    code = f"import importlib.util as u; print([n for n in {harness!r} if u.find_spec(n)])"
    result = image.exec("python", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert not (image.root / "opt" / "venv" / "bin" / "tradingsystem-dev").exists()


def test_the_image_runs_the_installed_wheel_not_the_checkout(image: RuntimeEnv) -> None:
    code = (
        "import tradingsystem, tradingsystem_operator as o; print(tradingsystem.__file__); print(o.__file__)"
    )
    result = image.exec("python", "-c", code)
    assert result.returncode == 0, result.stderr
    for path in result.stdout.split():
        assert Path(path).is_relative_to(image.root / "opt" / "venv"), path
        assert "site-packages" in path


def test_operator_finds_the_alert_rules_shipped_in_the_image(image: RuntimeEnv) -> None:
    code = (
        "from tradingsystem_operator.rules import monitoring_dir, load_rule_groups;"
        "print(monitoring_dir()); print(len(load_rule_groups()))"
    )
    result = image.exec("python", "-c", code)
    assert result.returncode == 0, result.stderr
    directory, groups = result.stdout.split()
    assert Path(directory).is_relative_to(image.root), directory
    assert int(groups) > 0


def _lock_pins() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", (REPO / "requirements.lock").read_text(), re.M)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_venv_holds_exactly_the_lock(image: RuntimeEnv) -> None:
    result = image.exec("python", "-m", "pip", "list", "--format=freeze", "--exclude-editable")
    assert result.returncode == 0, result.stderr
    installed = dict(line.split("==") for line in result.stdout.split())
    installed = {k.lower().replace("_", "-"): v for k, v in installed.items()}
    for seed in ("pip", "setuptools"):  # what `python -m venv` seeds from the interpreter itself
        installed.pop(seed, None)
    assert installed.pop("tradingsystem") == project_version()
    assert installed == _lock_pins()


def test_lock_satisfies_pyproject_dependencies() -> None:
    # Catches a dependency added to pyproject.toml without `make lock`.
    pins = _lock_pins()
    for spec in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name}=={pins[name]} violates {spec}"
        )
