#!/usr/bin/env bash
# Build, from Go modules, every binary an offline kind cluster needs and cache them outside git:
#   kind                      sigs.k8s.io/kind@$KIND_VERSION (go install)
#   kubelet kubeadm kubectl   k8s.io/kubernetes@$K8S_VERSION, through the same wrapper module as
#   kube-scheduler kube-proxy   hack/build-control-plane.sh (so the Go build cache is shared)
#   coredns                   github.com/coredns/coredns@$COREDNS_VERSION
#   pause                     a tiny static program (waits for SIGTERM/SIGINT, reaps children)
# Idempotent: a binary already in the cache is not rebuilt. Progress lines on stderr; the last line
# on stdout is the asset dir. Runs hack/build-control-plane.sh first (etcd, apiserver,
# controller-manager, helm).
set -euo pipefail
cd "$(dirname "$0")/.."
HACK="$PWD/hack"

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.1}"
CACHE_ROOT="${TRADINGSYSTEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tradingsystem}"
ASSETS="${CACHE_ROOT}/k8s-${K8S_VERSION}"
WORK="${CACHE_ROOT}/build"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export CGO_ENABLED=0

log() { printf '[kind-binaries] %s\n' "$*" >&2; }
t0=$SECONDS
mkdir -p "$ASSETS" "$WORK"
have() { [ -x "$ASSETS/$1" ]; }

# --- kind ---------------------------------------------------------------------------
if ! have kind; then
  log "building kind $KIND_VERSION (go install, ~1 min)"
  GOBIN="$ASSETS/.kind-tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION"
  mv "$ASSETS/.kind-tmp/kind" "$ASSETS/kind" && rmdir "$ASSETS/.kind-tmp"
  log "built $ASSETS/kind"
fi

# --- pause --------------------------------------------------------------------------
if ! have pause; then
  mod="$WORK/pause"
  mkdir -p "$mod"
  cat > "$mod/go.mod" <<'GOMOD'
module local/pause

go 1.24
GOMOD
  cat > "$mod/main.go" <<'GOSRC'
// The pod sandbox's process: holds the namespaces, reaps orphans, exits on SIGTERM/SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
GOSRC
  log "building pause"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$ASSETS/pause.tmp" . && mv "$ASSETS/pause.tmp" "$ASSETS/pause")
fi

# --- coredns ------------------------------------------------------------------------
if ! have coredns; then
  log "building coredns $COREDNS_VERSION (go install, ~4 min cold)"
  GOBIN="$ASSETS/.coredns-tmp" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
  mv "$ASSETS/.coredns-tmp/coredns" "$ASSETS/coredns" && rmdir "$ASSETS/.coredns-tmp"
  log "built $ASSETS/coredns"
fi

# --- node binaries from the control-plane wrapper module ----------------------------
# The control plane first (it creates the wrapper module; waits on its lock if being built).
bash "$HACK/build-control-plane.sh" >/dev/null
node_bins=(kubelet kubeadm kubectl kube-scheduler kube-proxy)
missing=()
for b in "${node_bins[@]}"; do have "$b" || missing+=("$b"); done
if [ "${#missing[@]}" -gt 0 ]; then
  mod="$WORK/k8s-$K8S_VERSION"
  # The wrapper module belongs to build-control-plane.sh: change it under the same lock.
  exec 9>"$CACHE_ROOT/.build.lock"
  command -v flock >/dev/null && { flock 9 || true; }
  cd "$mod"
  if ! grep -q 'cmd/kubelet"' tools.go; then
    log "adding the node binaries to the wrapper module (go mod tidy)"
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for c in kube-apiserver kube-controller-manager "${node_bins[@]}"; do
        printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"
      done
      printf ')\n'
    } > tools.go
    go mod tidy
  fi
  k8s_minor="${K8S_VERSION#v1.}"
  k8s_minor="${k8s_minor%%.*}"
  # kubeadm compares its own version with the cluster's: stamp component-base and client-go.
  ver=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ver="$ver -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$k8s_minor -X $p.gitTreeState=clean"
  done
  for b in "${missing[@]}"; do
    log "building $b $K8S_VERSION (a few minutes each on 2 cores, less with a warm Go cache)"
    go build -trimpath -ldflags "-s -w $ver" -o "$ASSETS/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$ASSETS/$b.tmp" "$ASSETS/$b"
    log "built $ASSETS/$b"
  done
fi

log "kind binaries ready in $ASSETS ($((SECONDS - t0)) s)"
echo "$ASSETS"
