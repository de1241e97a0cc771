#!/usr/bin/env bash
# make bench-growth: what grows with the cluster (issue 25, item 4). One control plane of its own
# (hack/controlplane, E2E_DIR), node-agent-webhook installed as a user would (hack/e2e/install.sh)
# and our release server behind the real kube-apiserver's webhook configurations on
# 127.0.0.1:443, run as in a cluster (bench/e2e/lib.sh: its ServiceAccount's token, all watches).
# Then in steps, each read as the server's VmRSS/VmHWM (/proc) a few seconds after it:
#   nodes        Nodes up to GROWTH_NODES (100) in all, as a cloud kubelet registers them
#   sc-1, sc-2   GROWTH_CLASSES/2 StorageClasses each (two halves: does the cost per class grow?)
#   pc-1, pc-2   the same for PriorityClasses
#   burst-1      GROWTH_PODS (500) data-mover pods created as node-agent creates them by
#                GROWTH_CLIENTS (16) concurrent clients through the API server (bench/e2e's load
#                client), deleted as they come; our /mutate histogram and the API server's
#                admission webhook histogram scraped before and after
#   nodes-big-1, nodes-big-2   Nodes up to GROWTH_BIG_NODES (5000; 0 skips them and burst-2), in
#                two halves
#   nodes-touch  an annotation on every Node (nothing the checks keep changes, as a kubelet's
#                status update): the server's CPU per such event
#   burst-2      the burst again, with the big cluster
#   restart      the server restarted: everything listed at start-up
# Each step creates its objects with one `kubectl create -f` of a generated list
# (bench/objects.py) and waits until the server has seen the last of them: the node gauge for
# Nodes, the validating check itself for classes (bench/growth.py: its "does not exist" warning
# goes away), polled every 50 ms from before the create. "Seen after" is from kubectl's return to
# then (negative: seen before kubectl had exited); "Server CPU" is the server's user+system time
# (/proc/PID/stat) from just before kubectl to then: the watch events' folding, plus the polls
# (for classes one fresh check each, about 0.1 ms).
#
# Run it alone: it starts a control plane and binds 127.0.0.1:443 (as make e2e and bench-e2e do).
# Knobs: GROWTH_NODES, GROWTH_CLASSES (2000), GROWTH_PODS, GROWTH_CLIENTS, GROWTH_BIG_NODES,
# BENCH_NICE (5), BENCH_PORT_WAIT (120), BENCH_NO_BUILD=1, BENCH_BIN (a server built before),
# E2E_KEEP=1. About 2 minutes with the builds warm. Output: bench/out/growth-<time>/ (report.md,
# steps.jsonl, raw/), linked from bench/out/latest-growth.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

GROWTH_NODES=${GROWTH_NODES:-100}
GROWTH_CLASSES=${GROWTH_CLASSES:-2000}
GROWTH_PODS=${GROWTH_PODS:-500}
GROWTH_CLIENTS=${GROWTH_CLIENTS:-16}
GROWTH_BIG_NODES=${GROWTH_BIG_NODES:-5000}
export E2E_DIR=${E2E_DIR:-$root/_out/e2e-growth}

die() { echo "bench-growth: $*" >&2; exit 1; }
log() { echo "bench-growth: $(date -u +%H:%M:%S) $*" >&2; }
# shellcheck source=bench/e2e/lib.sh
source bench/e2e/lib.sh

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$root/bench/out/growth-$stamp
mkdir -p "$out/raw" "$out/bin"
ln -sfn "growth-$stamp" "$root/bench/out/latest-growth"
start_s=$(date +%s)

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  log "building the server and the load client (release)"
  nice -n 10 cargo build --release --locked --bin node-agent-webhook >&2
  (cd bench/e2e && CARGO_TARGET_DIR=$client_target nice -n 10 cargo build --release --locked >&2)
fi
# Copies: target/ may be rebuilt during the run. BENCH_BIN: a server built before, to compare builds.
cp "${BENCH_BIN:-target/release/node-agent-webhook}" "$out/bin/node-agent-webhook"
cp "$client_target/release/e2e-load" "$out/bin/"
server_bin=$out/bin/node-agent-webhook load_bin=$out/bin/e2e-load

control_plane_up
cleanup() {
  stop_server
  if [ "${E2E_KEEP:-0}" != 1 ]; then hack/controlplane/cluster.sh down; fi
}
trap cleanup EXIT
install_webhook "$out" g
metrics_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export WEBHOOK_URL=https://127.0.0.1:$WEBHOOK_PORT WEBHOOK_CA=$E2E_DIR/serving/ca.pem
export METRICS_URL=http://127.0.0.1:$metrics_port/metrics
server_pid=
start_ours
# The node-agent ConfigMap (every setting; the config the pods get), written through our
# validating webhook; then a pod that comes back patched: the API server calls our server.
"$load_bin" probe-configmaps webhook
"$load_bin" probe-pods ours
export BENCH_CPU_PIDS="kube-apiserver=$(cat "$E2E_DIR/kube-apiserver.pid") etcd=$(cat "$E2E_DIR/etcd.pid") webhook=$server_pid"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); server: ${BENCH_BIN:-commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.lock || echo ' (+ uncommitted changes in src or Cargo.lock)')}"
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x $(nproc), shared with other work (load average at the start: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "kube-apiserver $(kubectl version -o json | jq -r .serverVersion.gitVersion); knobs: GROWTH_NODES=$GROWTH_NODES GROWTH_CLASSES=$GROWTH_CLASSES GROWTH_PODS=$GROWTH_PODS GROWTH_CLIENTS=$GROWTH_CLIENTS GROWTH_BIG_NODES=$GROWTH_BIG_NODES BENCH_NICE=$BENCH_NICE"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

status_kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$server_pid/status"; }
cpu_ms() { awk -v tck="$BENCH_CLK_TCK" '{ printf "%d\n", ($14 + $15) * 1000 / tck }' "/proc/$server_pid/stat"; }
now() { date +%s.%N; }
count_of() { kubectl get "$1" --no-headers 2>/dev/null | wc -l; }
# record STEP JSON: the step's figures, with the server's memory after it has settled.
record() {
  sleep 3
  jq -c --arg step "$1" --argjson rss "$(status_kib VmRSS)" --argjson hwm "$(status_kib VmHWM)" \
    '{step: $step, rss_kib: $rss, hwm_kib: $hwm} + .' <<<"$2" | tee -a "$out/steps.jsonl" >&2
}

# grow STEP KIND COUNT: COUNT more objects of KIND (nodes, storageclasses, priorityclasses) in one
# kubectl create; waits until the server has seen the last of them.
grow() {
  local step=$1 kind=$2 count=$3 first total last target poller cpu0 t0 t1 seen
  [ "$count" -gt 0 ] || return 0
  first=$(kubectl get "$kind" -o name | grep -c "/bench-" || true)
  total=$(($(count_of "$kind") + count))
  python3 bench/objects.py "$kind" "$count" "$first" >"$out/raw/$step.json"
  last=$(jq -r '.items[-1].metadata.name' "$out/raw/$step.json")
  if [ "$kind" != nodes ]; then
    python3 bench/growth.py missing "$kind" "$last" || die "the check does not warn of the missing $last: it would prove nothing"
  fi
  # The poller runs from before the create, so that its start-up is not counted as lag.
  if [ "$kind" = nodes ]; then target=$total; else target=$last; fi
  python3 bench/growth.py seen "$kind" "$target" >"$out/raw/$step-seen.json" &
  poller=$!
  sleep 0.5
  cpu0=$(cpu_ms) t0=$(now)
  kubectl create -f "$out/raw/$step.json" >/dev/null
  t1=$(now)
  wait "$poller" || die "$step: the server did not see $target"
  seen=$(cat "$out/raw/$step-seen.json")
  record "$step" "$(jq -c --argjson added "$count" --argjson total "$total" --argjson t0 "$t0" --argjson t1 "$t1" \
    --argjson cpu "$(($(cpu_ms) - cpu0))" \
    '{added: $added, total: $total, kubectl_s: ($t1 - $t0), lag_s: (.seen_at - $t1), polls, cpu_ms: $cpu}' <<<"$seen")"
}

# touch STEP: an annotation on every Node, which changes nothing the checks keep (as a kubelet's
# status update): what a Node event costs the server when it makes no new snapshot. Done when the
# server's CPU time stops moving after kubectl returns.
touch_nodes() {
  local step=$1 total cpu0 t0 t1 cpu last=-1 deadline=$((SECONDS + 120))
  total=$(count_of nodes)
  cpu0=$(cpu_ms) t0=$(now)
  kubectl annotate nodes --all --overwrite "bench.node-agent-webhook.io/touched=$step" >/dev/null
  t1=$(now)
  until [ "$(cpu_ms)" = "$last" ]; do
    [ $SECONDS -lt $deadline ] || die "$step: the server was still busy 120 s after kubectl returned"
    last=$(cpu_ms)
    sleep 1
  done
  cpu=$((last - cpu0))
  record "$step" "$(jq -nc --argjson total "$total" --argjson t0 "$t0" --argjson t1 "$t1" --argjson cpu "$cpu" \
    '{touched: $total, total: $total, kubectl_s: ($t1 - $t0), cpu_ms: $cpu}')"
}

# burst STEP: GROWTH_PODS data-mover pods by GROWTH_CLIENTS clients; both histograms around it.
burst() {
  local step=$1 line applied0
  curl -fsS "$METRICS_URL" >"$out/raw/ours-before-$step.txt"
  kubectl get --raw /metrics >"$out/raw/apiserver-before-$step.txt"
  applied0=$(settings_applied)
  line=$(nice -n "$BENCH_NICE" "$load_bin" pods --concurrency "$GROWTH_CLIENTS" --count "$GROWTH_PODS" --warmup 0 \
    --tag "$step" --raw "$out/raw/$step-latency.tsv")
  curl -fsS "$METRICS_URL" >"$out/raw/ours-after-$step.txt"
  kubectl get --raw /metrics >"$out/raw/apiserver-after-$step.txt"
  record "$step" "$(jq -c --argjson patched "$(($(settings_applied) - applied0))" '{load: ., patched: $patched}' <<<"$line")"
}
settings_applied() {
  curl -fsS "$METRICS_URL" | awk '$1 ~ /^node_agent_webhook_settings_applied_total\{setting="podResources"\}/ { print $2 }'
}

# The server at rest: its memory, and its CPU over 10 s with nothing to do.
cpu0=$(cpu_ms)
sleep 10
record start "$(jq -nc --argjson total "$(count_of nodes)" --argjson cpu "$(($(cpu_ms) - cpu0))" \
  '{total: $total, cpu_ms: $cpu}')"
grow nodes nodes $((GROWTH_NODES - $(count_of nodes)))
grow sc-1 storageclasses $((GROWTH_CLASSES / 2))
grow sc-2 storageclasses $((GROWTH_CLASSES - GROWTH_CLASSES / 2))
grow pc-1 priorityclasses $((GROWTH_CLASSES / 2))
grow pc-2 priorityclasses $((GROWTH_CLASSES - GROWTH_CLASSES / 2))
burst burst-1
if [ "$GROWTH_BIG_NODES" -gt 0 ]; then
  # In two halves, as the classes: does the cost per node grow with the nodes already known?
  half=$(((GROWTH_BIG_NODES - $(count_of nodes)) / 2))
  grow nodes-big-1 nodes "$half"
  grow nodes-big-2 nodes $((GROWTH_BIG_NODES - $(count_of nodes)))
  touch_nodes nodes-touch
  burst burst-2
fi
# A server that starts into the cluster as it now is (lists everything at start-up), as a
# rollout or a rescheduled pod would.
stop_server
start_ours
python3 bench/growth.py seen nodes "$(count_of nodes)" >/dev/null
record restart "$(jq -nc --argjson total "$(count_of nodes)" '{total: $total}')"

echo "run time: $(($(date +%s) - start_s)) s" >>"$out/machine.txt"
python3 bench/growth.py report "$out" >"$out/report.md"
cat "$out/report.md"
log "done in $(($(date +%s) - start_s)) s: $out/report.md"
