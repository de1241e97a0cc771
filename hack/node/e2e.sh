#!/usr/bin/env bash
# make e2e-node: the end-to-end suite on a real node (tests/e2e_node). Builds the node and the
# control plane from their Go modules (cached), then runs the tests one at a time: each brings the
# node up with hack/node/node.sh and tears it down, also when it fails. Needs root (namespaces,
# cgroups) and nft (Debian: nftables), like the machines these run on; one run per machine at a time
# (the node's cgroup and state directory are fixed).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

start=$(date +%s)
command -v nft >/dev/null || { echo "e2e-node: kube-proxy's nftables mode needs nft (Debian: apt-get install nftables)" >&2; exit 1; }
hack/node/build.sh >/dev/null
hack/controlplane/build.sh >/dev/null
cargo test --locked --test e2e_node -- --test-threads=1 "$@"
hack/node/node.sh check-clean
echo "e2e-node: $(($(date +%s) - start)) s in all"
