#!/usr/bin/env bash
# Images, without any registry, for the monitoring chain in the kind cluster: the Prometheus
# operator and its config reloader (hack/build-prometheus-operator.sh) and Prometheus
# (hack/build-prometheus.sh), all built from their Go modules. Each is a minimal rootfs
# `docker import`ed under a local name tagged with a hash of its inputs, rebuilt only when they
# change. Needs a running dockerd (DOCKER_HOST;
# the Python harness starts a private one). Progress on stderr; stdout, one per line:
#   operator=<image> reloader=<image> prometheus=<image> prometheus-version=vX.Y.Z crds=<dir>
#
#   hack/build-monitoring-images.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[monitoring-images] %s\n' "$*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

out=$(bash hack/build-prometheus-operator.sh)
po_version=$(cat "$out/VERSION")
prom_dir=$(bash hack/build-prometheus.sh)
prom_version=$(cat "$prom_dir/VERSION")   # what the Prometheus CR declares

scratch=$(mktemp -d "${TMPDIR:-/tmp}/monitoring-images.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# rootfs DIR: what a static or libc-only binary needs (users, nsswitch, /tmp); `nobody` is the
# user the upstream images run as.
rootfs() {
  mkdir -p "$1/bin" "$1/etc" "$1/tmp"
  chmod 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' > "$1/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' > "$1/etc/group"
  echo 'hosts: files dns' > "$1/etc/nsswitch.conf"
}
# import DIR IMAGE ENTRYPOINT
import() {
  tar -C "$1" -c . | docker import --change 'USER 65534' --change "ENTRYPOINT $3" - "$2" >/dev/null
}

for bin in prometheus-operator prometheus-config-reloader; do
  hash=$(cat "$0" "$out/$bin" | sha256sum | cut -c1-12)
  image="tradingsystem-local/$bin:$po_version-$hash"
  if ! have_image "$image"; then
    log "importing $image"
    rootfs "$scratch/$bin"
    install -m 0755 "$out/$bin" "$scratch/$bin/bin/$bin"
    import "$scratch/$bin" "$image" "[\"/bin/$bin\"]"
  fi
  case $bin in
    prometheus-operator) echo "operator=$image" ;;
    *) echo "reloader=$image" ;;
  esac
done

hash=$(cat "$0" "$prom_dir/prometheus" | sha256sum | cut -c1-12)
image="tradingsystem-local/prometheus:$prom_version-$hash"
if ! have_image "$image"; then
  log "importing $image"
  r="$scratch/prometheus"
  rootfs "$r"
  install -m 0755 "$prom_dir/prometheus" "$r/bin/prometheus"
  mkdir -p "$r/prometheus" && chown 65534:65534 "$r/prometheus"
  import "$r" "$image" '["/bin/prometheus"]'
fi
echo "prometheus=$image"
echo "prometheus-version=$prom_version"
echo "crds=$out/crds"
