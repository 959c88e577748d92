#!/usr/bin/env bash
# Build Prometheus from its Go module (github.com/prometheus/prometheus, tagged v0.<minor*100+patch>.0
# for Prometheus v3.<minor>.<patch>) with only the service discovery the Prometheus operator
# uses (kubernetes; file and http are always in). Debian's package cannot serve here: it is built
# without Kubernetes service discovery ("field kubernetes_sd_configs not found").
#
# Choosing the discovery plugins is upstream's own build option (`make plugins` from plugins.yml
# writes plugins/plugins.go): this script writes that file with the kubernetes plugin alone in a
# copy of the module source, then `go build ./cmd/prometheus` there (the module's own go.mod and
# go.sum, its `replace` directive included). Cached outside git under a directory named by a
# hash of the inputs; a warm cache returns at once. Progress on stderr; stdout: the directory
# holding `prometheus` and VERSION (vX.Y.Z).
#
#   hack/build-prometheus.sh
#   PROMETHEUS_VERSION=v3.5.0 hack/build-prometheus.sh
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v3.5.0}"   # the Prometheus operator v0.85.0's default
CACHE_ROOT="${TRADINGSYSTEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tradingsystem}"
MODULE=github.com/prometheus/prometheus
export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0

log() { printf '[prometheus] %s\n' "$*" >&2; }
t0=$SECONDS
IFS=. read -r major minor patch <<<"${PROMETHEUS_VERSION#v}"
module_version="v0.$((major * 100 + minor)).$patch"   # v3.5.0 -> v0.305.0
hash=$( { cat "$0"; echo "$PROMETHEUS_VERSION"; go env GOVERSION; } | sha256sum | cut -c1-12)
OUT="$CACHE_ROOT/prometheus-$PROMETHEUS_VERSION-$hash"
mkdir -p "$CACHE_ROOT/build"

exec 9>"$CACHE_ROOT/.prometheus.lock"
flock 9
if [ -f "$OUT/VERSION" ]; then
  echo "$OUT"
  exit 0
fi

src=$(cd "$CACHE_ROOT/build" && go mod download -json "$MODULE@$module_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$src" ] || { log "cannot download $MODULE@$module_version from the Go module proxy"; exit 1; }
[ "$(cat "$src/VERSION")" = "${PROMETHEUS_VERSION#v}" ] || { log "$MODULE@$module_version is not Prometheus $PROMETHEUS_VERSION"; exit 1; }
work="$CACHE_ROOT/build/prometheus-$PROMETHEUS_VERSION"
rm -rf "$work"
cp -r "$src" "$work"
chmod -R u+w "$work"
cat > "$work/plugins/plugins.go" <<'GOSRC'
// Written by hack/build-prometheus.sh in place of `make plugins`: kubernetes discovery only.

package plugins

import (
	// Register kubernetes plugin.
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
)
GOSRC

tmp="$OUT.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
cv=github.com/prometheus/common/version
log "building prometheus $PROMETHEUS_VERSION ($MODULE@$module_version, kubernetes discovery only; several minutes cold on 2 cores)"
(cd "$work" && nice -n 10 go build -trimpath \
  -ldflags "-s -w -X $cv.Version=${PROMETHEUS_VERSION#v} -X $cv.Revision=$module_version -X $cv.Branch=tradingsystem-local" \
  -o "$tmp/prometheus" ./cmd/prometheus)
echo "$PROMETHEUS_VERSION" > "$tmp/VERSION"
rm -rf "$OUT" "$work"
mv "$tmp" "$OUT"
log "built $OUT in $((SECONDS - t0)) s"
echo "$OUT"
