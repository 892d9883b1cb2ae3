#!/usr/bin/env bash
# Installs everything flannel-ts needs on a fresh Debian machine (as root) and builds it. Idempotent: packages
# already present are not reinstalled, and `npm ci` runs only when node_modules is missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(etcd-server etcd-client containernetworking-plugins iptables nftables iproute2 iputils-ping iperf3 openssl kmod wireguard-tools)

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (it installs Debian packages and the tests use network namespaces)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian etcd package may start a system etcd; flannel-ts never uses it (tests pick their own ports).

# br_netfilter provides /proc/sys/net/bridge/*, which flanneld checks at start (as upstream does).
modprobe br_netfilter 2>/dev/null || true

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >/dev/null
fi
npm run build >/dev/null
