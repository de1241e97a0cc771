#!/usr/bin/env bash
# make judge: the real node-agent of each Velero version as the judge of node-agent ConfigMaps
# (hack/velero/judge.py): every example ConfigMap and every generated case in testdata/judge/cases
# is stored and node-agent started with it; its outcome and our verdict go into
# testdata/judge/results/<version>.json, the agreement table into docs/velero-judge.md.
#
#   make judge                                   # every version in hack/velero/v1.*/go.mod
#   VELERO_VERSION=v1.18.3 make judge            # one version
#   JUDGE_CASES="selector quantity" make judge   # only the cases whose names contain one of these
#
# Its own control plane (E2E_DIR, default _out/judge) without our webhook; needs :8080 free.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
start=$(date +%s)
cargo build --locked --bins >&2
# Our verdicts come from a private copy: a shared CARGO_TARGET_DIR may get another checkout's
# build while the judge runs.
if [ -z "${NAW_BIN:-}" ]; then
  target=$(cargo metadata --locked --format-version 1 --no-deps | jq -r .target_directory)
  naw_dir=$(mktemp -d)
  NAW_BIN=$naw_dir/node-agent-webhook
  cp "$target/debug/node-agent-webhook" "$NAW_BIN"
  export NAW_BIN
fi
versions=${VELERO_VERSION:-$(hack/velero/build.sh version)}
for v in $versions; do hack/velero/build.sh "$v" >/dev/null; done
export E2E_DIR=${E2E_DIR:-$root/_out/judge}
hack/controlplane/cluster.sh up
trap 'hack/controlplane/cluster.sh down; rm -rf "${naw_dir:-}"' EXIT
eval "$(hack/controlplane/cluster.sh env)"
for v in $versions; do
  NO_WEBHOOK=1 hack/velero/install.sh "$v"
  # shellcheck disable=SC2086
  VELERO_BIN=$(hack/velero/build.sh "$v" 2>/dev/null) python3 hack/velero/judge.py run "$v" ${JUDGE_CASES:-}
done
python3 hack/velero/judge.py report
echo "judge: $(($(date +%s) - start)) s in all"
