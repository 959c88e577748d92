# syntax=docker/dockerfile:1
# One image for the operator and the four services. The entrypoint is the `tradingsystem` CLI and
# the container arguments pick the service (`market-data`, `signal-bridge`, `risk-manager`,
# `execution-engine`, `sim`); the operator runs with `command: [tradingsystem-operator]`.
#
#   docker build -t tradingsystem:0.1.0 .
#
# Reproducible: the base image is pinned to a patch release (pin its digest too with
# --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:...), and every Python
# distribution is pinned by version and hash in requirements.lock. No HEALTHCHECK: Kubernetes
# probes /healthz and /readyz on the metrics port.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: the virtualenv, from wheels only (no compiler anywhere) --------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY hack/runtime-venv.sh requirements.lock ./
RUN sh runtime-venv.sh deps /opt/venv requirements.lock
COPY pyproject.toml README.md ./
COPY components ./components
COPY operator ./operator
RUN sh runtime-venv.sh app /opt/venv /src

# ---- runtime: the slim base, the venv and an unprivileged user -------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tradingsystem" \
      org.opencontainers.image.description="Kubernetes-native algorithmic trading: four ZeroMQ services, an Alpaca-compatible simulator and a kopf operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# A numeric UID, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 trading \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin trading
COPY --from=build /opt/venv /opt/venv
# Alert rules for the operator's PrometheusRule objects (tradingsystem_operator/rules.py).
COPY monitoring /usr/share/tradingsystem/monitoring
ENV PATH=/opt/venv/bin:$PATH \
    TRADINGSYSTEM_MONITORING_DIR=/usr/share/tradingsystem/monitoring \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["tradingsystem"]
CMD ["--help"]
