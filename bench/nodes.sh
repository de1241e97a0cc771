#!/usr/bin/env bash
# The memory the Node watch adds to the server: BENCH_NODES (5000) Node objects, each with
# labels, a taint, capacity/allocatable and a Ready condition as a kubelet registers it, created
# in the real kube-apiserver of the e2e control plane (its own, in E2E_DIR) while the release
# server runs against it; its VmRSS before and once its node gauge counts them all, and again
# after a restart that lists them at start-up. Run it alone: it starts a control plane on loopback.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

N=${BENCH_NODES:-5000}
export E2E_DIR=${E2E_DIR:-$root/_out/e2e-nodes}
log() { echo "bench-nodes: $(date -u +%H:%M:%S) $*" >&2; }

# BENCH_BIN: a server binary built before (to compare builds); else this tree's release build.
bin=${BENCH_BIN:-}
if [ -z "$bin" ]; then
  nice -n 10 cargo build --locked --release --bin node-agent-webhook >&2
  bin=${CARGO_TARGET_DIR:-$root/target}/release/node-agent-webhook
fi
hack/controlplane/cluster.sh up
trap 'hack/controlplane/cluster.sh down' EXIT
eval "$(hack/controlplane/cluster.sh env)"
[ -s certs/serving.pem ] || OUT_DIR=certs bash certs/generate.sh >/dev/null
kubectl create namespace velero >/dev/null

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
metrics_port=$(free_port)
pid=
start_server() {
  "$bin" serve --tls-cert certs/serving.pem --tls-key certs/serving.key --bind "127.0.0.1:$(free_port)" \
    --metrics-bind "127.0.0.1:$metrics_port" --velero-version 1.18.3 --log-format json \
    >>"$E2E_DIR/node-agent-webhook.log" 2>&1 &
  pid=$!
  echo "$pid" >>"$E2E_DIR/pids"
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1 && return; sleep 0.2; done
  echo "bench-nodes: the server did not get ready; see $E2E_DIR/node-agent-webhook.log" >&2
  exit 1
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
nodes_seen() { curl -fsS "http://127.0.0.1:$metrics_port/metrics" | awk '$1 == "node_agent_webhook_nodes" { print $2 }'; }
wait_nodes() {
  local deadline=$((SECONDS + 300))
  until [ "$(nodes_seen)" = "$1" ]; do
    [ $SECONDS -lt $deadline ] || { echo "bench-nodes: the server counts $(nodes_seen) nodes, not $1" >&2; exit 1; }
    sleep 1
  done
}

start_server
wait_nodes 0
sleep 5
before=$(rss_kib)
log "server ready with no nodes: VmRSS $before KiB"

start_s=$(date +%s)
python3 bench/objects.py nodes "$N" >"$E2E_DIR/nodes.json"
kubectl create -f "$E2E_DIR/nodes.json" >/dev/null
log "created $N nodes in $(($(date +%s) - start_s)) s"
wait_nodes "$N"
sleep 5
after=$(rss_kib)
log "the server counts $N nodes: VmRSS $after KiB, +$((after - before)) KiB"

kill "$pid"
wait "$pid" 2>/dev/null || true
start_server
wait_nodes "$N"
sleep 5
restarted=$(rss_kib)
log "restarted with $N nodes listed at start-up: VmRSS $restarted KiB, +$((restarted - before)) KiB over the empty cluster's"
kill "$pid"
printf '| %s nodes | %s KiB | %s KiB (+%s KiB) | %s KiB (+%s KiB) |\n' "$N" "$before" "$after" "$((after - before))" \
  "$restarted" "$((restarted - before))"
