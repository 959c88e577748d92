#!/usr/bin/env bash
# Build the binaries of a real Kubernetes control plane from Go modules and cache them
# outside git: kube-apiserver + kube-controller-manager (k8s.io/kubernetes through a
# replace-directive wrapper module), etcd (a tiny etcdmain wrapper) and helm.
# Idempotent: a binary already in the cache is not rebuilt. Prints progress.
#
#   hack/build-control-plane.sh            # build what is missing, print the asset dir
#   KUBEBUILDER_ASSETS=/path ...           # reuse existing envtest binaries (etcd, kube-apiserver)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
PROM_OPERATOR_VERSION="${PROM_OPERATOR_VERSION:-v0.85.0}"
CACHE_ROOT="${TRADINGSYSTEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tradingsystem}"
ASSETS="${CACHE_ROOT}/k8s-${K8S_VERSION}"
WORK="${CACHE_ROOT}/build"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0

log() { printf '[control-plane] %s\n' "$*" >&2; }
mkdir -p "$ASSETS" "$WORK"

# Several test sessions may find the cache empty at once: build one at a time, the others then
# find the binaries in place.
if command -v flock >/dev/null; then
  exec 9>"$CACHE_ROOT/.build.lock"
  flock 9 || true
fi

have() { [ -x "$ASSETS/$1" ]; }
k8s_minor="${K8S_VERSION#v1.}"
k8s_minor="${k8s_minor%%.*}"

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS for etcd and kube-apiserver"
  for b in etcd kube-apiserver kube-controller-manager; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] && ln -sf "$KUBEBUILDER_ASSETS/$b" "$ASSETS/$b"
  done
fi

# --- kube-apiserver and kube-controller-manager ------------------------------------
# The wrapper module is also the kind node binaries' (hack/build-kind-binaries.sh): make it even
# when both binaries are cached already (e.g. from KUBEBUILDER_ASSETS).
if ! have kube-apiserver || ! have kube-controller-manager || [ ! -f "$WORK/k8s-$K8S_VERSION/go.mod" ]; then
  mod="$WORK/k8s-$K8S_VERSION"
  mkdir -p "$mod"
  cd "$mod"
  if [ ! -f go.mod ]; then
    log "creating wrapper module for k8s.io/kubernetes@$K8S_VERSION"
    cat > go.mod <<GOMOD
module local/k8sbins

go 1.24
GOMOD
    # k8s.io/kubernetes pins its staging modules as v0.0.0 + replace => ./staging/...;
    # replace each with the published v0.x.y of the same release.
    staging_ver="v0.${K8S_VERSION#v1.}"
    kmod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
    for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' "$kmod"); do
      go mod edit -replace="$m=$m@$staging_ver"
    done
    # The kind node's binaries too (hack/build-kind-binaries.sh): one module, one Go build cache.
    cat > tools.go <<'GOSRC'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GOSRC
    log "resolving dependencies (downloads a few hundred MB the first time)"
    go mod tidy
  fi
  for b in kube-apiserver kube-controller-manager; do
    if ! have "$b"; then
      log "building $b $K8S_VERSION (several minutes on 2 cores)"
      go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor" \
        -o "$ASSETS/$b.tmp" "k8s.io/kubernetes/cmd/$b"
      mv "$ASSETS/$b.tmp" "$ASSETS/$b"
      log "built $ASSETS/$b"
    fi
  done
fi

# --- etcd -------------------------------------------------------------------------
if ! have etcd; then
  mod="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  cd "$mod"
  if [ ! -f go.mod ]; then
    log "creating wrapper module for go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    cat > go.mod <<GOMOD
module local/etcdbin

go 1.24
GOMOD
    cat > main.go <<'GOSRC'
// A tiny main around etcdmain: the etcd server module carries replace directives,
// so `go install` refuses it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GOSRC
    go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go mod tidy
  fi
  log "building etcd $ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$ASSETS/etcd.tmp" .
  mv "$ASSETS/etcd.tmp" "$ASSETS/etcd"
  log "built $ASSETS/etcd"
fi

# --- helm -------------------------------------------------------------------------
if ! have helm; then
  log "building helm $HELM_VERSION"
  # Without the k8sVersion flags helm assumes a Kubernetes 1.20 cluster for client-side
  # rendering and linting; stamp the minor we test against.
  hv="helm.sh/helm/v3"
  GOBIN="$ASSETS" go install -trimpath -ldflags "-s -w -X $hv/internal/version.version=$HELM_VERSION \
    -X $hv/pkg/chartutil.k8sVersionMajor=1 -X $hv/pkg/chartutil.k8sVersionMinor=$k8s_minor \
    -X $hv/pkg/lint/rules.k8sVersionMajor=1 -X $hv/pkg/lint/rules.k8sVersionMinor=$k8s_minor" \
    "$hv/cmd/helm@$HELM_VERSION"
  log "built $ASSETS/helm"
fi

# --- prometheus-operator CRDs (ServiceMonitor, PodMonitor, PrometheusRule) -----------
crds="$ASSETS/prometheus-operator-crds"
if [ ! -f "$crds/monitoring.coreos.com_servicemonitors.yaml" ]; then
  log "fetching prometheus-operator CRDs from the Go module $PROM_OPERATOR_VERSION"
  dir=$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$crds"
  for k in servicemonitors podmonitors prometheusrules; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$k.yaml" "$crds/"
  done
  chmod -R u+w "$crds"
fi

log "assets ready in $ASSETS"
echo "$ASSETS"
