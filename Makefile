# One entry point for people and CI. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install run sim test lint typecheck unit bench control-plane dev-cluster clean chart-sync lock image kind-up kind-down

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/tradingsystem: pyproject.toml support/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' -e ./support
	@touch $@

install: $(BIN)/tradingsystem ## create .venv and install the package with dev tools

run: install ## run the whole pipeline offline on the embedded simulator
	$(BIN)/tradingsystem run

sim: install ## run only the Alpaca-compatible simulator on 127.0.0.1:8090
	$(BIN)/tradingsystem sim

control-plane: ## build (or reuse) etcd, kube-apiserver, kube-controller-manager, helm
	bash hack/build-control-plane.sh

lint: install ## ruff
	$(BIN)/ruff check components operator support tests bench monitoring
	$(BIN)/ruff format --check components operator support tests bench monitoring

typecheck: install ## mypy on the packages
	$(BIN)/mypy

test: install control-plane lint typecheck ## everything CI runs
	$(BIN)/pytest -q -p no:cacheprovider

unit: install ## fast tests only (no control plane, no processes)
	$(BIN)/pytest -q -m 'not k8s and not e2e and not kind'

bench: install ## benchmarks, printed as tables
	$(BIN)/python -m bench

dev-cluster: install control-plane ## start etcd + kube-apiserver + controller-manager for kubectl (Ctrl-C stops)
	$(BIN)/tradingsystem-dev dev-cluster

kind-up: install ## offline kind cluster with our image loaded (private dockerd; see docs/kind.md)
	$(BIN)/tradingsystem-dev kind-up

kind-down: install ## delete the kind cluster, stop its dockerd, restore host sysctls/firewall
	$(BIN)/tradingsystem-dev kind-down

clean: ## remove the venv and caches (not the control-plane binaries)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis var

# --- delivery: the Helm chart carries copies of files owned elsewhere; tests/delivery fails
# when a copy is stale and names this target.
CHART := helm/tradingsystem-operator

chart-sync: ## copy the CRD, RBAC rules, operator alert rules, dashboards and examples into the Helm chart
	cp crds/tradingsystems.yaml $(CHART)/crds/tradingsystems.yaml
	cp operator/tradingsystem_operator/rbac.yaml $(CHART)/files/rbac.yaml
	cp monitoring/rules/operator.rules.yaml $(CHART)/files/rules/operator.rules.yaml
	rm -f $(CHART)/files/dashboards/*.json
	for f in monitoring/dashboards/*.json; do [ ! -e "$$f" ] || cp "$$f" $(CHART)/files/dashboards/; done
	cp examples/sim.yaml examples/paper.yaml examples/paper-secret.yaml $(CHART)/examples/

lock: ## re-resolve requirements.lock (the image's pinned, hashed dependencies) from pyproject.toml
	$(PYTHON) -m venv $(VENV)/lock-tools
	$(VENV)/lock-tools/bin/pip install -q pip-tools==7.6.2
	PIP_FIND_LINKS= $(VENV)/lock-tools/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links --output-file=requirements.lock pyproject.toml

image: ## build the container image (needs Docker): tradingsystem:<version>
	docker build --build-arg REVISION=$$(git rev-parse --short HEAD) \
	  -t tradingsystem:$$($(PYTHON) -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])") .
