#!/bin/sh
# Build the runtime virtualenv that the container image ships. The Dockerfile's build stage runs
# this, and so does tests/delivery/test_runtime_env.py (the Docker-less check), so both build the
# very same environment. Two steps, so Docker can cache the dependency layer:
#
#   hack/runtime-venv.sh deps VENV LOCKFILE   # new venv + the hash-pinned dependencies, nothing else
#   hack/runtime-venv.sh app  VENV SRCDIR     # the project's wheel on top, without dependencies
set -eu

step=$1 venv=$2 arg=$3
pip() { "$venv/bin/python" -m pip --disable-pip-version-check --no-cache-dir --no-input "$@"; }

case "$step" in
  deps)
    python3 -m venv "$venv"
    # --require-hashes: every distribution must match the lock, transitive ones included.
    pip install --require-hashes --only-binary=:all: -r "$arg"
    ;;
  app)
    wheels=$(mktemp -d)
    pip wheel --no-deps --wheel-dir "$wheels" "$arg"
    # --no-deps: the lock alone decides versions; `pip check` proves it covers every requirement.
    pip install --no-deps "$wheels"/tradingsystem-*.whl
    rm -rf "$wheels"
    pip check
    ;;
  *)
    echo "usage: $0 deps VENV LOCKFILE | app VENV SRCDIR" >&2
    exit 2
    ;;
esac
