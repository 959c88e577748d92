#!/usr/bin/env bash
# Build the Prometheus operator and its config reloader from the Go module
# github.com/prometheus-operator/prometheus-operator at a pinned version, and copy its full CRDs
# next to them. The module carries `replace` directives (pkg/apis/monitoring, pkg/client), so
# `go install` refuses it: a wrapper module requires it and replaces both with their published
# tags of the same release (as hack/build-control-plane.sh does for k8s.io/kubernetes).
# Cached outside git under a directory named by a hash of this script's inputs; a warm cache
# returns at once. Progress on stderr; stdout: the directory holding
#   prometheus-operator  prometheus-config-reloader  crds/monitoring.coreos.com_*.yaml  VERSION
#
#   hack/build-prometheus-operator.sh                    # build what is missing, print the dir
#   PROM_OPERATOR_VERSION=v0.85.0 hack/build-prometheus-operator.sh
set -euo pipefail

PROM_OPERATOR_VERSION="${PROM_OPERATOR_VERSION:-v0.85.0}"
CACHE_ROOT="${TRADINGSYSTEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tradingsystem}"
MODULE=github.com/prometheus-operator/prometheus-operator
export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0

log() { printf '[prometheus-operator] %s\n' "$*" >&2; }
t0=$SECONDS
# The output directory is named by the inputs: this script, the version and the Go toolchain.
hash=$( { cat "$0"; echo "$PROM_OPERATOR_VERSION"; go env GOVERSION; } | sha256sum | cut -c1-12)
OUT="$CACHE_ROOT/prometheus-operator-$PROM_OPERATOR_VERSION-$hash"
WORK="$CACHE_ROOT/build/prometheus-operator-$PROM_OPERATOR_VERSION"
mkdir -p "$CACHE_ROOT/build"

# Several sessions may find the cache empty at once: one builds, the others wait and reuse.
exec 9>"$CACHE_ROOT/.prometheus-operator.lock"
flock 9

if [ -f "$OUT/VERSION" ]; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$WORK"
cd "$WORK"
if [ ! -f go.mod ]; then
  log "creating wrapper module for $MODULE@$PROM_OPERATOR_VERSION"
  cat > go.mod <<GOMOD
module local/prometheusoperatorbins

go 1.24
GOMOD
  cat > tools.go <<'GOSRC'
//go:build tools

package tools

import (
	_ "github.com/prometheus-operator/prometheus-operator/cmd/operator"
	_ "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader"
)
GOSRC
  go mod edit -require="$MODULE@$PROM_OPERATOR_VERSION" \
    -replace="$MODULE/pkg/apis/monitoring=$MODULE/pkg/apis/monitoring@$PROM_OPERATOR_VERSION" \
    -replace="$MODULE/pkg/client=$MODULE/pkg/client@$PROM_OPERATOR_VERSION"
  log "resolving dependencies (downloads ~200 MB the first time)"
  go mod tidy 2>&1 | grep -v '^go: downloading' >&2 || true
fi

tmp="$OUT.tmp"
rm -rf "$tmp"
mkdir -p "$tmp/crds"
# The version the binaries report (and the operator's default reloader tag) is stamped, as upstream's Makefile does.
ldflags="-s -w -X github.com/prometheus/common/version.Version=${PROM_OPERATOR_VERSION#v} -X github.com/prometheus/common/version.Revision=$PROM_OPERATOR_VERSION -X github.com/prometheus/common/version.Branch=tradingsystem-local"
for cmd in operator prometheus-config-reloader; do
  bin=$cmd
  [ "$cmd" = operator ] && bin=prometheus-operator
  log "building $bin $PROM_OPERATOR_VERSION (a few minutes cold on 2 cores)"
  nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$tmp/$bin" "$MODULE/cmd/$cmd"
done
src=$(go mod download -json "$MODULE@$PROM_OPERATOR_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
cp "$src"/example/prometheus-operator-crd-full/monitoring.coreos.com_*.yaml "$tmp/crds/"
chmod -R u+w "$tmp"
echo "$PROM_OPERATOR_VERSION" > "$tmp/VERSION"
rm -rf "$OUT"
mv "$tmp" "$OUT"
log "built $OUT in $((SECONDS - t0)) s"
echo "$OUT"
