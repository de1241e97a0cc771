#!/usr/bin/env bash
# make bench-e2e: the latency a user feels, through the real kube-apiserver of the e2e suite.
#
# Creates the v1.18 DataUpload pod as node-agent does (bench/e2e/src/main.rs, kube-rs) and
# writes the node-agent ConfigMap as `kubectl apply` does, under three configurations measured
# in the same run and alternated in short blocks:
#   a  no webhook configuration registered (MutatingWebhookConfiguration for pods,
#      ValidatingWebhookConfiguration for the ConfigMap)
#   b  ours as shipped (the self-signed overlay, our release binary on 127.0.0.1:443, run as in
#      a cluster: no --config-file, its own ServiceAccount's token)
#   c  bench/ceiling on 127.0.0.1:443 with the same certificate, under the same webhook
#      configuration: allowed, no patch
#   d  (pod loads only) the ceiling again, answering every pod with the patch our server gives
#      the admitted pod under the live config (`node-agent-webhook mutate`, computed once per
#      load): the no-op that asks the API server for the same work as ours does
# Points: pods, configmaps (kubectl apply's PATCH) and configmap-creates (a server-side dry-run
# create each, with the ConfigMap deleted for the load) at each of BENCH_CONCS, a mix of pods of which one in four is a
# data-mover pod (the others never reach us), and pods-nopc: the pods again under a config
# without priorityClassName (our server then makes no API call of its own per pod), and
# pods-settled: pods that already carry the live config's settings, as node-agent 1.18 creates
# them from an unchanged ConfigMap (our server answers them with no patch). Each point is BENCH_BLOCKS blocks per
# configuration; the order of the configurations rotates from block to block. Then, unless
# BENCH_PPROF_SECONDS=0, a CPU profile of kube-apiserver (its /debug/pprof) while pods are
# created at concurrency 16 under each configuration. Every block records the CPU time that
# kube-apiserver, etcd, the server under test and the client spent over its timed part.
#
# Knobs: POINT_PODS (2000: timed requests per point and configuration), BENCH_BLOCKS (8),
# BENCH_WARMUP (20 requests per block, untimed), BENCH_CONCS ("1 16"), BENCH_MIX_CONCS ("16"),
# BENCH_E2E_LOADS ("pods configmaps configmap-creates mix pods-nopc pods-settled"), BENCH_NOPC_CONCS ("1 16"),
# BENCH_SETTLED_CONCS ("1 16"),
# BENCH_PPROF_SECONDS (20 per configuration), BENCH_PPROF_LOAD (pods, or configmap-creates), BENCH_FRESH_APISERVER (1: restart kube-apiserver,
# etcd kept, before each load and before the profiles), BENCH_NICE (5, for the measured processes; the
# builds run at nice 10), BENCH_PORT_WAIT (120: seconds to wait for another run to free
# 127.0.0.1:443 before failing), BENCH_NO_BUILD=1, E2E_KEEP=1 (leave the control plane up).
# State: E2E_DIR (default _out/e2e-bench, its own control plane). Output: bench/out/e2e-<time>/
# (report.md, results.jsonl, raw/), linked from bench/out/latest-e2e.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

POINT_PODS=${POINT_PODS:-2000}
BENCH_BLOCKS=${BENCH_BLOCKS:-8}
BENCH_WARMUP=${BENCH_WARMUP:-20}
BENCH_CONCS=${BENCH_CONCS:-"1 16"}
BENCH_MIX_CONCS=${BENCH_MIX_CONCS:-"16"}
BENCH_E2E_LOADS=${BENCH_E2E_LOADS:-"pods configmaps configmap-creates mix pods-nopc pods-settled"}
BENCH_NOPC_CONCS=${BENCH_NOPC_CONCS:-"1 16"}
BENCH_SETTLED_CONCS=${BENCH_SETTLED_CONCS:-"1 16"}
BENCH_PPROF_SECONDS=${BENCH_PPROF_SECONDS:-20}
BENCH_PPROF_LOAD=${BENCH_PPROF_LOAD:-pods}
BENCH_FRESH_APISERVER=${BENCH_FRESH_APISERVER:-1}
export E2E_DIR=${E2E_DIR:-$root/_out/e2e-bench}

die() { echo "bench-e2e: $*" >&2; exit 1; }
log() { echo "bench-e2e: $(date -u +%H:%M:%S) $*" >&2; }

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$root/bench/out/e2e-$stamp
mkdir -p "$out/raw"
ln -sfn "e2e-$stamp" "$root/bench/out/latest-e2e"
start_s=$(date +%s)
# shellcheck source=bench/e2e/lib.sh
source bench/e2e/lib.sh

# --- builds -------------------------------------------------------------------------------
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  log "building the server, the ceiling and the load client (release)"
  nice -n 10 cargo build --release --locked --bin node-agent-webhook >&2
  (cd bench/ceiling && nice -n 10 cargo build --release --locked >&2)
  (cd bench/e2e && CARGO_TARGET_DIR=$client_target nice -n 10 cargo build --release --locked >&2)
fi
server_bin=$root/target/release/node-agent-webhook
ceiling_bin=$root/bench/ceiling/target/release/ceiling
load_bin=$client_target/release/e2e-load
for b in "$server_bin" "$ceiling_bin" "$load_bin"; do [ -x "$b" ] || die "missing $b (run without BENCH_NO_BUILD)"; done
# Copies: target/ is shared, and a rebuild during the run must not change what is measured.
mkdir -p "$out/bin"
cp "$server_bin" "$ceiling_bin" "$load_bin" "$out/bin/"
server_bin=$out/bin/node-agent-webhook ceiling_bin=$out/bin/ceiling load_bin=$out/bin/e2e-load

# --- control plane ------------------------------------------------------------------------
control_plane_up
cleanup() {
  stop_server
  # A run cut short still reports the blocks it measured.
  if [ ! -s "$out/report.md" ] && [ -s "$out/results.jsonl" ]; then
    python3 bench/e2e/report.py "$out" >"$out/report.md" 2>&1 || true
    log "incomplete run: partial report in $out/report.md"
  fi
  if [ "${E2E_KEEP:-0}" != 1 ]; then hack/controlplane/cluster.sh down; fi
}
trap cleanup EXIT
install_webhook "$out" b
for kind in mutating validating; do
  kubectl get "${kind}webhookconfiguration" node-agent-webhook.velero -o json |
    jq 'del(.metadata.resourceVersion, .metadata.uid, .metadata.creationTimestamp, .metadata.generation, .metadata.managedFields)' \
      >"$bench/$kind.json"
done

# --- the servers --------------------------------------------------------------------------
server_pid=
server_kind=
metrics_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# The ceiling; with a patch file ($1), it answers every review with that patch (configuration d).
start_ceiling() {
  local patch=${1:-}
  require_port_free
  nice -n "$BENCH_NICE" "$ceiling_bin" --bind "127.0.0.1:$WEBHOOK_PORT" \
    --tls-cert "$E2E_DIR/serving/serving.pem" --tls-key "$E2E_DIR/serving/serving.key" \
    ${patch:+--patch "$patch"} 2>>"$E2E_DIR/ceiling.log" &
  server_pid=$!
  server_kind=ceiling${patch:+-patch}
  echo "$server_pid" >>"$E2E_DIR/pids"
  local waited=0
  until [ "$(holder)" = "$server_pid" ]; do
    kill -0 "$server_pid" 2>/dev/null || die "the ceiling exited (see $E2E_DIR/ceiling.log)"
    [ $waited -lt 100 ] || die "the ceiling is not listening after 10 s"
    sleep 0.1
    waited=$((waited + 1))
  done
}

# Our server's peak RSS (VmHWM) and its own metrics, read before it stops.
record_ours() {
  local tag=$1
  [ "$server_kind" = ours ] || return 0
  printf '%s\t%s\t%s\n' "$tag" "$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")" \
    "$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")" >>"$out/rss.tsv"
  curl -fsS "http://127.0.0.1:$metrics_port/metrics" >"$out/raw/ours-metrics-$tag.txt" 2>/dev/null || true
}

ensure_registered() {
  local kind=$1
  kubectl get "${kind}webhookconfiguration" node-agent-webhook.velero >/dev/null 2>&1 || kubectl create -f "$bench/$kind.json" >/dev/null
}

# Puts configuration $2 (a, b, c) in place for load $1 and waits until the API server uses it.
switch_to() {
  local load=$1 cfg=$2 kind probe
  case $load in
    configmaps | configmap-creates) kind=validating; probe=probe-$load ;;
    *) kind=mutating; probe=probe-pods ;;
  esac
  case $cfg in
    a)
      stop_server
      kubectl delete "${kind}webhookconfiguration" node-agent-webhook.velero --ignore-not-found >/dev/null
      "$load_bin" "$probe" none
      ;;
    b)
      [ "$server_kind" = ours ] || { stop_server; start_ours; }
      ensure_registered "$kind"
      if [ "$probe" = probe-pods ]; then "$load_bin" "$probe" ours; else "$load_bin" "$probe" webhook; fi
      ;;
    c)
      [ "$server_kind" = ceiling ] || { stop_server; start_ceiling; }
      ensure_registered "$kind"
      if [ "$probe" = probe-pods ]; then "$load_bin" "$probe" noop; else "$load_bin" "$probe" webhook; fi
      ;;
    d)
      [ "$server_kind" = ceiling-patch ] || { stop_server; start_ceiling "$bench/patch.json"; }
      ensure_registered "$kind"
      "$load_bin" "$probe" ours
      ;;
  esac
  export BENCH_CPU_PIDS="kube-apiserver=$(cat "$E2E_DIR/kube-apiserver.pid") etcd=$(cat "$E2E_DIR/etcd.pid")${server_pid:+ webhook=$server_pid}"
}

# The patch of configuration d: what our server gives the pod as the API server hands it to the
# webhook (the in-tree admission plugins' defaults, priority and token volume included, from a
# server-side dry run with no mutating webhook registered) under the live ConfigMap.
make_patch() {
  switch_to pods a
  kubectl --kubeconfig "$NODE_AGENT_KUBECONFIG" create --dry-run=server -o json -f "$FIXTURE" >"$bench/admitted-pod.json"
  kubectl get configmap node-agent-config -n velero -o json >"$bench/live-config.json"
  "$server_bin" mutate --config "$bench/live-config.json" --pod "$bench/admitted-pod.json" >"$bench/patch.json"
  [ "$(jq length "$bench/patch.json")" -gt 0 ] || die "our server plans no patch for the bench pod"
  cp "$bench/patch.json" "$out/patch-$1.json"
  [ "$server_kind" != ceiling-patch ] || stop_server
}

# The config every pod gets (and the ConfigMap the validating load rewrites), admitted by ours.
start_ours
"$load_bin" probe-configmaps webhook 2>/dev/null || true
ensure_registered mutating
"$load_bin" probe-pods ours

# --- machine --------------------------------------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.lock || echo ' (+ uncommitted changes in src or Cargo.lock)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x $(nproc)"
  echo "memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); kernel $(uname -r)"
  echo "kube-apiserver: $(kubectl version -o json | jq -r .serverVersion.gitVersion)"
  echo "rustc: $(rustc --version)"
  echo "knobs: POINT_PODS=$POINT_PODS BENCH_BLOCKS=$BENCH_BLOCKS BENCH_WARMUP=$BENCH_WARMUP BENCH_CONCS='$BENCH_CONCS' BENCH_MIX_CONCS='$BENCH_MIX_CONCS' BENCH_E2E_LOADS='$BENCH_E2E_LOADS' BENCH_NOPC_CONCS='$BENCH_NOPC_CONCS' BENCH_SETTLED_CONCS='$BENCH_SETTLED_CONCS' BENCH_PPROF_SECONDS=$BENCH_PPROF_SECONDS BENCH_FRESH_APISERVER=$BENCH_FRESH_APISERVER BENCH_NICE=$BENCH_NICE"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

# Gives the node-agent ConfigMap the value $1 (full, no-priority-class) and waits until our
# server serves that write (its config_info names the stored resourceVersion).
set_config() {
  switch_to configmaps b 2>>"$out/probe.log"
  "$load_bin" set-config "$1"
  local want waited=0
  want="config=\"resourceVersion:$(kubectl get configmap node-agent-config -n velero -o jsonpath='{.metadata.resourceVersion}')\""
  until curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -q "^node_agent_webhook_config_info{$want} 1"; do
    [ $waited -lt 100 ] || die "our server did not load the '$1' config within 10 s"
    sleep 0.1
    waited=$((waited + 1))
  done
}

# The pod as node-agent 1.18 creates it when the ConfigMap has not changed since it started:
# already carrying every setting of the live config (velero-spec.md: 1.18 applies them itself),
# so our server finds nothing to change and answers with no patch.
make_settled_fixture() {
  kubectl get configmap node-agent-config -n velero -o json >"$bench/live-config.json"
  "$server_bin" mutate --config "$bench/live-config.json" --pod "$FIXTURE" --apply |
    jq 'del(.metadata.annotations["node-agent-webhook.io/applied"]) | if .metadata.annotations == {} then del(.metadata.annotations) else . end' \
      >"$bench/fixture-settled.json"
  cp "$bench/fixture-settled.json" "$out/fixture-settled.json"
}

# Each load starts on a kube-apiserver of the same state: after a few thousand pods its heap
# has grown to gigabytes (the watch cache keeps every pod's events), its garbage collection
# costs more per request, and a load would be judged by the loads run before it.
fresh_apiserver() {
  [ "$BENCH_FRESH_APISERVER" = 1 ] || return 0
  stop_server
  hack/controlplane/cluster.sh restart-apiserver >/dev/null
}

# --- the points -----------------------------------------------------------------------------
per_block=$(((POINT_PODS + BENCH_BLOCKS - 1) / BENCH_BLOCKS))
for load in $BENCH_E2E_LOADS; do
  fresh_apiserver
  concs=$BENCH_CONCS client_load=$load
  case $load in
    mix) concs=$BENCH_MIX_CONCS ;;
    # Diagnostic: the same pods under a config without priorityClassName, so that our server
    # makes no API call of its own per pod.
    pods-nopc) concs=$BENCH_NOPC_CONCS client_load=pods; set_config no-priority-class ;;
    pods-settled) concs=$BENCH_SETTLED_CONCS client_load=pods ;;
  esac
  fixture=$FIXTURE
  case $load in
    configmaps) configs=(a b c) ;;
    # Dry-run creates of a ConfigMap that does not exist: our server serves no config meanwhile.
    configmap-creates) configs=(a b c); kubectl delete configmap node-agent-config -n velero --ignore-not-found >/dev/null ;;
    # Our server answers these pods with no patch, as a no-op does: d would only repeat c.
    pods-settled) configs=(a b c); make_settled_fixture; fixture=$bench/fixture-settled.json ;;
    *) configs=(a b c d); make_patch "$load" ;;
  esac
  for conc in $concs; do
    for ((block = 1; block <= BENCH_BLOCKS; block++)); do
      # Each block starts one configuration later than the one before.
      shift_by=$(((block - 1) % ${#configs[@]}))
      for cfg in "${configs[@]:$shift_by}" "${configs[@]:0:$shift_by}"; do
        tag=$load-c$conc-$cfg-$block
        switch_to "$load" "$cfg" 2>>"$out/probe.log"
        # Under a, no webhook of this path is registered: whoever holds the port is not called.
        case $cfg in a) ! port_taken || log "note: pid $(holder) holds 127.0.0.1:$WEBHOOK_PORT during $tag (not called)" ;; *) require_holder "$server_pid" ;; esac
        loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
        line=$(FIXTURE=$fixture nice -n "$BENCH_NICE" "$load_bin" "$client_load" --concurrency "$conc" --count "$per_block" \
          --warmup "$BENCH_WARMUP" --tag "$tag" --raw "$out/raw/$tag.tsv")
        # Still the server under test at the end of the block.
        case $cfg in b | c | d) require_holder "$server_pid" ;; esac
        record_ours "$tag"
        jq -c --arg load "$load" --arg cfg "$cfg" --argjson block "$block" --arg loadavg "$loadavg" \
          '. + {load: $load, cfg: $cfg, block: $block, loadavg: $loadavg}' <<<"$line" >>"$out/results.jsonl"
        jq -r '"\(.tag): \(.ok) ok, \(.failed) failed, \(.all.rate | floor)/s, p50 \(.all.p50_ms) p99 \(.all.p99_ms) ms, webhook calls \(.webhook_calls)"' <<<"$line" >&2
      done
    done
  done
  case $load in pods-nopc | configmap-creates) set_config full ;; esac
done

# --- kube-apiserver's CPU profile under each configuration -----------------------------------
# BENCH_PPROF_LOAD: pods (configurations a-d) or configmap-creates (a-c; 201 is also what a
# dry-run create answers).
created() {
  local resource=$1
  kubectl get --raw /metrics | awk -v r="resource=\"$resource\"" '/^apiserver_request_total\{/ && index($0, r) && /verb="POST"/ && /code="201"/ && !/subresource="[^"]/ {n += $NF} END {print n + 0}'
}
if [ "$BENCH_PPROF_SECONDS" -gt 0 ]; then
  mkdir -p "$out/pprof"
  fresh_apiserver
  case $BENCH_PPROF_LOAD in
    pods) make_patch pprof; resource=pods; configs=(a b c d) ;;
    # As in its point: the dry-run creates would find the ConfigMap there.
    configmap-creates) kubectl delete configmap node-agent-config -n velero --ignore-not-found >/dev/null
      resource=configmaps; configs=(a b c) ;;
    *) die "BENCH_PPROF_LOAD is pods or configmap-creates, not $BENCH_PPROF_LOAD" ;;
  esac
  for cfg in "${configs[@]}"; do
    switch_to "$BENCH_PPROF_LOAD" "$cfg" 2>>"$out/probe.log"
    # Requests at concurrency 16 for longer than the profile (the client builds them all first,
    # so not many more); stopped once it is taken.
    nice -n "$BENCH_NICE" "$load_bin" "$BENCH_PPROF_LOAD" --concurrency 16 --count $(((BENCH_PPROF_SECONDS + 15) * 1000)) \
      --warmup 0 --tag "pprof-$cfg" >/dev/null 2>&1 &
    loader=$!
    sleep 5
    before=$(created "$resource")
    kubectl get --raw "/debug/pprof/profile?seconds=$BENCH_PPROF_SECONDS" >"$out/pprof/kube-apiserver-$cfg.pb.gz"
    after=$(created "$resource")
    kill "$loader" 2>/dev/null || true
    wait "$loader" 2>/dev/null || true
    echo "$cfg $((after - before))" >>"$out/pprof/$resource.txt"
    go tool pprof -top -cum -nodecount=400 "$out/pprof/kube-apiserver-$cfg.pb.gz" >"$out/pprof/kube-apiserver-$cfg.top.txt" 2>/dev/null || true
    log "pprof $cfg: $((after - before)) $resource created in $BENCH_PPROF_SECONDS s"
  done
fi
stop_server

kubectl get --raw /metrics | grep -E '^apiserver_admission_.*node-agent-webhook\.io' >"$out/apiserver-admission-metrics.txt" || true
echo "run time: $(($(date +%s) - start_s)) s" >>"$out/machine.txt"
python3 bench/e2e/report.py "$out" >"$out/report.md"
cat "$out/report.md"
log "done in $(($(date +%s) - start_s)) s: $out/report.md"
