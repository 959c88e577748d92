#!/usr/bin/env bash
# Assemble, without any image registry, the container images an offline kind cluster and our
# image build need, from Debian packages and binaries built from Go modules
# (hack/build-kind-binaries.sh). Needs a running dockerd (DOCKER_HOST); the Python harness
# (support/tradingsystem_testing/docker.py) starts a private one. Each image is tagged with a hash
# of its inputs and rebuilt only when they change. Progress on stderr; stdout, one per line:
#   python=<local Python 3.11 base>  python-build=<+ host CA, PIP_CERT>  node=<kind node image>
#
#   hack/build-kind-images.sh             # build what is missing, print the names
set -euo pipefail
cd "$(dirname "$0")/.."
HACK="$PWD/hack"

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.12.1}"
PAUSE_TAG="${PAUSE_TAG:-3.10.1}"
ETCD_TAG="${ETCD_TAG:-3.6.5-0}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
CACHE_ROOT="${TRADINGSYSTEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tradingsystem}"
ASSETS="${CACHE_ROOT}/k8s-${K8S_VERSION}"
ROOTFS_DIR="${CACHE_ROOT}/rootfs"
export DOCKER_BUILDKIT=0   # the legacy builder: BuildKit would pull a frontend for `# syntax=`

log() { printf '[kind-images] %s\n' "$*" >&2; }
t0=$SECONDS
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
inputs_hash() { cat "$@" | sha256sum | cut -c1-12; }
stamp() { for f in "$@"; do stat -c '%n %s %Y' "$f"; done; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/kind-images.XXXXXX")
mounted=()
cleanup() {
  for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT

# A throwaway copy of the cached minbase rootfs with apt working inside (DNS, apt settings,
# no service starts), into which Debian packages are installed.
rootfs_with() {
  local dir=$1; shift
  mkdir -p "$dir"
  tar -C "$dir" -xf "$ROOTFS_DIR/$SUITE-minbase.tar"
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  [ -f /etc/apt/apt.conf.d/99artifact-registry ] && cp /etc/apt/apt.conf.d/99artifact-registry "$dir/etc/apt/apt.conf.d/"
  printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d" && chmod 755 "$dir/usr/sbin/policy-rc.d"
  mount -t proc proc "$dir/proc" && mounted+=("$dir/proc")
  chroot "$dir" env DEBIAN_FRONTEND=noninteractive apt-get -qq update
  chroot "$dir" env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends "$@" >/dev/null
  chroot "$dir" apt-get clean
  umount "$dir/proc"
  rm -rf "$dir/var/lib/apt/lists/"* "$dir/usr/sbin/policy-rc.d"
  : > "$dir/etc/resolv.conf"
}

# --- 1. Debian minbase rootfs (debootstrap, ~1 min) ---------------------------------
mkdir -p "$ROOTFS_DIR"
if [ ! -f "$ROOTFS_DIR/$SUITE-minbase.tar" ]; then
  log "debootstrap --variant=minbase $SUITE from $MIRROR (~1-2 min)"
  debootstrap --variant=minbase "$SUITE" "$scratch/minbase" "$MIRROR" >"$scratch/debootstrap.log" 2>&1 \
    || { tail -n 20 "$scratch/debootstrap.log" >&2; exit 1; }
  tar -C "$scratch/minbase" -cf "$ROOTFS_DIR/$SUITE-minbase.tar.tmp" .
  mv "$ROOTFS_DIR/$SUITE-minbase.tar.tmp" "$ROOTFS_DIR/$SUITE-minbase.tar"
  rm -rf "$scratch/minbase"
fi
base_hash=$(stamp "$ROOTFS_DIR/$SUITE-minbase.tar" | sha256sum | cut -c1-12)

# --- 2. Python 3.11 base: Debian's python3 on minbase, under a local name ------------
PYTHON_IMAGE="tradingsystem-local/python:3.11-$SUITE-$base_hash"
if ! have_image "$PYTHON_IMAGE"; then
  log "building $PYTHON_IMAGE (python3 python3-venv python3-pip from Debian)"
  rootfs_with "$scratch/python" python3 python3-venv python3-pip ca-certificates
  tar -C "$scratch/python" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$PYTHON_IMAGE" >/dev/null
  rm -rf "$scratch/python"
fi

# --- 3. + the host's CA bundle, for pip behind this machine's TLS-intercepting proxy --------
# Environment only: users with a registry build on the upstream slim image instead.
CA_BUNDLE="${CA_BUNDLE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}"
ca_hash=$(printf '%s\n%s' "$PYTHON_IMAGE" "$(sha256sum < "$CA_BUNDLE")" | sha256sum | cut -c1-12)
BUILD_IMAGE="tradingsystem-local/python-build:3.11-$SUITE-$ca_hash"
if ! have_image "$BUILD_IMAGE"; then
  log "building $BUILD_IMAGE (host CA bundle + PIP_CERT)"
  mkdir -p "$scratch/ca"
  cp "$CA_BUNDLE" "$scratch/ca/host-ca.crt"
  cat > "$scratch/ca/Dockerfile" <<DOCKERFILE
FROM $PYTHON_IMAGE
COPY host-ca.crt /etc/ssl/certs/tradingsystem-host-ca.crt
ENV PIP_CERT=/etc/ssl/certs/tradingsystem-host-ca.crt SSL_CERT_FILE=/etc/ssl/certs/tradingsystem-host-ca.crt
DOCKERFILE
  docker build -q -t "$BUILD_IMAGE" "$scratch/ca" >/dev/null
fi

# --- 4. kind node image --------------------------------------------------------------
if [ -n "${KIND_NODE_IMAGE:-}" ]; then
  NODE_IMAGE="$KIND_NODE_IMAGE"   # e.g. kindest/node:v1.34.x where a registry is reachable
else
  kind_src=$(cd "$CACHE_ROOT/build" 2>/dev/null || cd /tmp; GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  files="$kind_src/images/base/files"
  bins=(kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause)
  # 4a. kind base: Debian packages + kind's own base files (entrypoint, units, containerd config).
  # Bump BASE_RECIPE when changing the recipe below (the node image hashes this whole script).
  BASE_RECIPE=1
  BASE_IMAGE="tradingsystem-local/kind-base:$KIND_VERSION-$(echo "$BASE_RECIPE $base_hash" | sha256sum | cut -c1-12)"
  if ! have_image "$BASE_IMAGE"; then
    log "building $BASE_IMAGE (systemd, containerd, runc, CNI plugins, iptables ... from Debian, ~2 min)"
    r="$scratch/kindbase"
    rootfs_with "$r" systemd systemd-sysv dbus containerd runc containernetworking-plugins \
      conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2 pigz \
      fuse-overlayfs bash ca-certificates curl jq procps socat
    install -m 0755 "$files"/usr/local/bin/* "$r/usr/local/bin/"
    mkdir -p "$r/kind/bin" "$r/etc/containerd" "$r/etc/default" "$r/etc/sysctl.d" \
      "$r/etc/systemd/system/kubelet.service.d" "$r/opt/cni/bin" "$r/etc/cni/net.d" "$r/etc/kubernetes/manifests"
    install -m 0644 "$files"/kind/README.txt "$r/kind/"
    install -m 0755 "$files"/kind/bin/* "$r/kind/bin/"
    install -m 0644 "$files"/etc/crictl.yaml "$r/etc/"
    install -m 0644 "$files"/etc/default/* "$r/etc/default/"
    install -m 0644 "$files"/etc/sysctl.d/* "$r/etc/sysctl.d/"
    find "$files/etc/systemd/system" -maxdepth 1 -type f -exec install -m 0644 {} "$r/etc/systemd/system/" \;
    install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$r/etc/systemd/system/kubelet.service.d/"
    # kind's containerd config, adapted: the pause tag kubeadm expects, and oom_score_adj
    # clamped instead of failing (lowering it needs CAP_SYS_RESOURCE, missing here).
    sed -e "s#sandbox_image = .*#sandbox_image = \"registry.k8s.io/pause:$PAUSE_TAG\"#" \
        -e 's#restrict_oom_score_adj = .*#restrict_oom_score_adj = true#' \
        "$files/etc/containerd/config.toml" > "$r/etc/containerd/config.toml"
    # The trap: kind's config points at cri-base.json, which kind's own Dockerfile generates.
    chroot "$r" sh -c "ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer|length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}' | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json"
    ln -sf /usr/bin/containerd "$r/usr/local/bin/containerd"
    for p in "$r"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/$(basename "$p")" "$r/opt/cni/bin/"; done
    # A static CNI for the single node instead of kindnetd (not on the Go proxy).
    cat > "$r/etc/cni/net.d/10-tradingsystem.conflist" <<'CNI'
{
  "cniVersion": "0.4.0",
  "name": "kind-static",
  "plugins": [
    {"type": "ptp", "ipMasq": true, "mtu": 1500,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
    find "$r/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
    rm -f "$r"/lib/systemd/system/multi-user.target.wants/* "$r"/etc/systemd/system/*.wants/* \
      "$r"/lib/systemd/system/local-fs.target.wants/* "$r"/lib/systemd/system/sockets.target.wants/*udev* \
      "$r"/lib/systemd/system/sockets.target.wants/*initctl* "$r"/lib/systemd/system/basic.target.wants/*
    echo "ReadKMsg=no" >> "$r/etc/systemd/journald.conf"
    chroot "$r" systemctl enable kubelet.service containerd.service undo-mount-hacks.service 2>&1 | grep -v "^Created symlink" >&2 || true
    chroot "$r" systemctl mask systemd-binfmt.service 2>/dev/null
    [ -L "$r/etc/systemd/system/multi-user.target.wants/kubelet.service" ] || { log "kubelet.service not enabled"; exit 1; }
    tar -C "$r" -c . | docker import - "$BASE_IMAGE-rootfs" >/dev/null
    rm -rf "$r"
    # `docker import --change` knows no STOPSIGNAL: a one-line build adds the image config.
    mkdir -p "$scratch/kindbase-cfg"
    printf '%s\n' "FROM $BASE_IMAGE-rootfs" 'ENV container=docker' 'STOPSIGNAL SIGRTMIN+3' \
      'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' > "$scratch/kindbase-cfg/Dockerfile"
    docker build -q -t "$BASE_IMAGE" "$scratch/kindbase-cfg" >/dev/null
    docker rmi "$BASE_IMAGE-rootfs" >/dev/null
  fi

  for b in "${bins[@]}"; do
    [ -x "$ASSETS/$b" ] || { log "missing $ASSETS/$b: run hack/build-kind-binaries.sh first"; exit 1; }
  done
  node_hash=$( { cat "$0"; echo "$K8S_VERSION $KIND_VERSION $COREDNS_VERSION $PAUSE_TAG $ETCD_TAG $base_hash";
                 for b in "${bins[@]}"; do stamp "$ASSETS/$b"; done; } | sha256sum | cut -c1-12)
  NODE_IMAGE="tradingsystem-local/kind-node:$K8S_VERSION-$node_hash"
  if ! have_image "$NODE_IMAGE"; then
    # 4b. Component images kubeadm names (`kubeadm config images list`): a static binary on a
    # minimal rootfs; kube-proxy on the node's Debian rootfs (it needs iptables and conntrack).
    comp() {  # comp IMAGE BINARY ENTRYPOINT_JSON [USER]
      local d="$scratch/comp-$2"
      mkdir -p "$d/usr/local/bin" "$d/etc" "$d/tmp" "$d/var/run"
      chmod 1777 "$d/tmp"
      install -m 0755 "$ASSETS/$2" "$d/usr/local/bin/$2"
      printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' > "$d/etc/passwd"
      printf 'root:x:0:\nnobody:x:65534:\n' > "$d/etc/group"
      echo 'hosts: files dns' > "$d/etc/nsswitch.conf"
      local change=(--change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change "ENTRYPOINT $3")
      [ -n "${4:-}" ] && change+=(--change "USER $4")
      tar -C "$d" -c . | docker import "${change[@]}" - "$1" >/dev/null
      rm -rf "$d"
    }
    log "building component images (apiserver, controller-manager, scheduler, proxy, etcd, coredns, pause)"
    comp "registry.k8s.io/kube-apiserver:$K8S_VERSION" kube-apiserver '["kube-apiserver"]'
    comp "registry.k8s.io/kube-controller-manager:$K8S_VERSION" kube-controller-manager '["kube-controller-manager"]'
    comp "registry.k8s.io/kube-scheduler:$K8S_VERSION" kube-scheduler '["kube-scheduler"]'
    comp "registry.k8s.io/etcd:$ETCD_TAG" etcd '["etcd"]'
    comp "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" coredns '["/usr/local/bin/coredns"]'
    comp "registry.k8s.io/pause:$PAUSE_TAG" pause '["/usr/local/bin/pause"]' 65535:65535
    mkdir -p "$scratch/proxy"
    install -m 0755 "$ASSETS/kube-proxy" "$scratch/proxy/kube-proxy"
    printf 'FROM %s\nCOPY kube-proxy /usr/local/bin/kube-proxy\nENTRYPOINT ["/usr/local/bin/kube-proxy"]\n' "$BASE_IMAGE" > "$scratch/proxy/Dockerfile"
    docker build -q -t "registry.k8s.io/kube-proxy:$K8S_VERSION" "$scratch/proxy" >/dev/null

    # 4c. The node: kind base + Kubernetes binaries + /kind/version, component images preloaded
    # into its containerd the way kind does it.
    log "assembling $NODE_IMAGE"
    mkdir -p "$scratch/node"
    for b in kubelet kubeadm kubectl; do install -m 0755 "$ASSETS/$b" "$scratch/node/$b"; done
    # kind's fallback StorageClass (kubernetes.io/host-path) creates each volume's directory as
    # root 0750 and fsGroup does not apply to host paths: our non-root pods could not write. A
    # path unit opens each new volume directory (only those not yet 0777, so no event loop).
    cat > "$scratch/node/hostpath-pv-perms.path" <<'UNIT'
[Unit]
Description=Make new host-path PersistentVolumes writable by non-root pods
[Path]
PathChanged=/tmp/hostpath_pv
MakeDirectory=true
DirectoryMode=0755
[Install]
WantedBy=multi-user.target
UNIT
    cat > "$scratch/node/hostpath-pv-perms.service" <<'UNIT'
[Unit]
Description=Open new host-path PersistentVolume directories to non-root pods
[Service]
Type=oneshot
ExecStart=/usr/bin/find /tmp/hostpath_pv -mindepth 1 -maxdepth 1 -type d ! -perm 0777 -exec chmod 0777 {} +
UNIT
    cat > "$scratch/node/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
COPY kubelet kubeadm kubectl /usr/bin/
COPY hostpath-pv-perms.path hostpath-pv-perms.service /etc/systemd/system/
RUN echo "$K8S_VERSION" > /kind/version && mkdir -p /kind/images /etc/kubernetes/manifests \
 && systemctl enable hostpath-pv-perms.path
DOCKERFILE
    docker build -q -t "$NODE_IMAGE-stage" "$scratch/node" >/dev/null
    builder="tradingsystem-kind-node-build-$$"
    docker rm -f "$builder" >/dev/null 2>&1 || true
    docker run -d --name "$builder" --privileged --network none --entrypoint sleep "$NODE_IMAGE-stage" infinity >/dev/null
    docker exec -d "$builder" containerd
    for _ in $(seq 1 60); do docker exec "$builder" ctr version >/dev/null 2>&1 && break; sleep 0.5; done
    for img in "registry.k8s.io/kube-apiserver:$K8S_VERSION" "registry.k8s.io/kube-controller-manager:$K8S_VERSION" \
               "registry.k8s.io/kube-scheduler:$K8S_VERSION" "registry.k8s.io/kube-proxy:$K8S_VERSION" \
               "registry.k8s.io/etcd:$ETCD_TAG" "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" \
               "registry.k8s.io/pause:$PAUSE_TAG"; do
      log "  preloading $img"
      docker save "$img" | docker exec -i "$builder" ctr -n k8s.io images import --all-platforms --no-unpack --digests - >/dev/null
    done
    docker exec "$builder" sh -c 'pkill containerd; for i in $(seq 1 50); do pgrep containerd >/dev/null || break; sleep 0.2; done; rm -rf /tmp/* /run/containerd'
    docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
      "$builder" "$NODE_IMAGE" >/dev/null
    docker rm -f "$builder" >/dev/null
    docker rmi "$NODE_IMAGE-stage" >/dev/null 2>&1 || true
    # ~1.6 GB each: keep only the node image of the current inputs.
    for old in $(docker images --format '{{.Repository}}:{{.Tag}}' tradingsystem-local/kind-node); do
      [ "$old" = "$NODE_IMAGE" ] || docker rmi "$old" >/dev/null 2>&1 || true
    done
  fi
fi

log "images ready ($((SECONDS - t0)) s)"
echo "python=$PYTHON_IMAGE"
echo "python-build=$BUILD_IMAGE"
echo "node=$NODE_IMAGE"
