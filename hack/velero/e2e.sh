#!/usr/bin/env bash
# make e2e-velero: the end-to-end suite with the real Velero node-agent as the pod creator
# (tests/e2e_velero), on a control plane of its own (E2E_DIR, default _out/e2e-velero), so that
# it never disturbs `make e2e`'s.
#
#   1. builds our server and the suite, Velero VELERO_VERSION (default v1.18.3) from its Go
#      module (hack/velero/build.sh, cached) and the control plane (hack/controlplane, cached)
#   2. starts the control plane, always stops it on exit (E2E_KEEP=1 keeps it)
#   3. installs Velero's CRDs, `velero install`'s objects and our overlay (hack/velero/install.sh)
#   4. waits for 127.0.0.1:443 (our server's address, which `make e2e` uses too) and :8080
#      (controller-runtime inside node-agent binds it) to be free, then runs the tests one at a time
#
#   VELERO_VERSION=v1.17.2 make e2e-velero     # or v1.16.2; VELERO_VERSION=all runs each in turn
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

version=${VELERO_VERSION:-v1.18.3}
if [ "$version" = all ]; then
  for v in $(hack/velero/build.sh version); do VELERO_VERSION=$v "$0" "$@"; done
  exit 0
fi

start=$(date +%s)
cargo build --locked --bins >&2
cargo test --locked --test e2e_velero --no-run >&2
velero=$(hack/velero/build.sh "$version")
hack/controlplane/build.sh >/dev/null
export E2E_DIR=${E2E_DIR:-$root/_out/e2e-velero}
hack/controlplane/cluster.sh up
if [ "${E2E_KEEP:-0}" != 1 ]; then
  trap 'hack/controlplane/cluster.sh down' EXIT
fi
eval "$(hack/controlplane/cluster.sh env)"
hack/velero/install.sh "$version"

# Who listens on a port, as `ss` says (empty when free).
holder() { ss -Hltnp "sport = :$1" 2>/dev/null || true; }
wait_free() {
  local port=$1 why=$2 limit=${E2E_PORT_WAIT:-600} waited=0
  while [ -n "$(holder "$port")" ]; do
    if [ "$waited" -ge "$limit" ]; then
      echo "e2e-velero: port $port is still taken after ${limit} s ($why):" >&2
      holder "$port" >&2
      exit 1
    fi
    [ "$waited" -gt 0 ] || echo "e2e-velero: waiting for port $port ($why) to be free:" >&2 "$(holder "$port")"
    sleep 5
    waited=$((waited + 5))
  done
}
wait_free 443 "our server listens on 127.0.0.1:443, where the ExternalName Service sends the API server; make e2e uses it too"
wait_free 8080 "controller-runtime inside node-agent binds :8080"

VELERO_VERSION=$version VELERO_BIN=$velero cargo test --locked --test e2e_velero -- --test-threads=1 "$@"
echo "e2e-velero ($version): $(($(date +%s) - start)) s in all"
