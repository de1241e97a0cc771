#!/usr/bin/env bash
# make e2e: the end-to-end suite against a real control plane on loopback, no Docker.
#
#   1. builds kube-apiserver, etcd and kubectl from their Go modules (cached: hack/controlplane/build.sh)
#   2. starts them (hack/controlplane/cluster.sh up), and always stops them on exit
#   3. installs what a cluster would have (hack/e2e/install.sh)
#   4. runs tests/e2e, one test at a time: they start our server with its own ServiceAccount's
#      token and drive the API server with kubectl
#
# KUBE_VERSION=v1.34.4 make e2e runs the same suite on another Kubernetes release.
# E2E_KEEP=1 leaves the control plane running afterwards (`hack/controlplane/cluster.sh env`).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

start=$(date +%s)
hack/controlplane/build.sh >/dev/null
hack/controlplane/cluster.sh up
if [ "${E2E_KEEP:-0}" != 1 ]; then
  trap 'hack/controlplane/cluster.sh down' EXIT
fi
eval "$(hack/controlplane/cluster.sh env)"
echo "kubectl: $(command -v kubectl) ($(kubectl version --client -o json | jq -r .clientVersion.gitVersion)); server: $(kubectl version -o json | jq -r .serverVersion.gitVersion)"
hack/e2e/install.sh
cargo test --locked --test e2e -- --test-threads=1 "$@"
echo "e2e: $(($(date +%s) - start)) s in all"
