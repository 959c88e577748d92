#!/usr/bin/env bash
# Debian packages the kind tests and `make kind-up` need: dockerd, containerd, runc, debootstrap
# (base images without a registry), iptables (the egress DROP rules), CNI plugins. Idempotent: does
# nothing when every command is already there. Root only (apt-get).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for c in dockerd:docker.io containerd:containerd runc:runc debootstrap:debootstrap \
         busybox:busybox-static iptables:iptables; do
  command -v "${c%%:*}" >/dev/null 2>&1 || need+=("${c#*:}")
done
[ -d /usr/lib/cni ] || need+=(containernetworking-plugins)
if [ "${#need[@]}" -gt 0 ]; then
  echo "[container-runtime] apt-get install ${need[*]}" >&2
  apt-get update -qq
  # docker.io's maintainer scripts would start the system daemon (a docker0 bridge before our
  # egress rules exist): forbid service starts during the install. Tests start a private dockerd.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1; fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$own_policy" = 1 ] && rm -f "$policy"
fi
echo "[container-runtime] docker.io containerd runc debootstrap iptables present" >&2
