#!/usr/bin/env bash
# The README's main command: set up a fresh machine, then build a local multi-node flannel cluster from network
# namespaces (etcd, flanneld per node, pods attached through the flannel CNI plugin), check pod-to-pod
# connectivity in every direction and measure throughput, then tear everything down.
# Extra arguments go to `flannelctl sandbox` (e.g. --nodes 4 --backend host-gw --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec ./bin/flannelctl sandbox "$@"
