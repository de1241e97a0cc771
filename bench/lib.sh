# Shared by bench/run.sh, bench/soak.sh, bench/profile.sh and bench/cpu.sh: tools, builds, certificates,
# payloads, and starting/stopping the two servers. Source it; it defines functions only.
# shellcheck shell=bash

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
REPO=${REPO:-$(cd "$BENCH_DIR/.." && pwd)}
SERVER_BIN=${SERVER_BIN:-$REPO/target/release/node-agent-webhook}
CEILING_BIN=${CEILING_BIN:-$BENCH_DIR/ceiling/target/release/ceiling}
# On 2 cores: the server(s) on one, the load generator on the other.
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ensure_tools CMD... : installs the Debian packages that provide missing commands.
ensure_tools() {
  local missing=() cmd pkg
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 && continue
    case $cmd in
      h2load) pkg=nghttp2-client ;;
      callgrind_annotate | callgrind_control) pkg=valgrind ;;
      taskset) pkg=util-linux ;;
      python3) pkg=python3-minimal ;;
      *) pkg=$cmd ;;
    esac
    missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt-get)"
  local sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# BENCH_PGO=1: both profile-guided, as the image ships ours (hack/pgo/build.sh, the same
# training set for both); unset, both without a profile. Either way both are built alike.
build_server() {
  log "building node-agent-webhook (release${BENCH_PGO:+, profile-guided})"
  if [ -n "${BENCH_PGO:-}" ]; then
    "$REPO/hack/pgo/build.sh" >/dev/null
  else
    (cd "$REPO" && cargo build --release --locked --quiet --bin node-agent-webhook)
  fi
}

build_ceiling() {
  log "building the ceiling server (release${BENCH_PGO:+, profile-guided}, bench/ceiling/target)"
  if [ -n "${BENCH_PGO:-}" ]; then
    PGO_TARGET=ceiling "$REPO/hack/pgo/build.sh" >/dev/null
  else
    (cd "$BENCH_DIR/ceiling" && CARGO_TARGET_DIR="$BENCH_DIR/ceiling/target" cargo build --release --locked --quiet)
  fi
}

# check_versions: the ceiling must run on the same crate versions as the server.
check_versions() {
  local p a b bad=0
  for p in hyper hyper-util tokio tokio-rustls rustls ring serde_json http-body-util bytes; do
    a=$(grep -A1 "^name = \"$p\"$" "$REPO/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p' | tr '\n' ' ')
    b=$(grep -A1 "^name = \"$p\"$" "$BENCH_DIR/ceiling/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p' | tr '\n' ' ')
    if [ "$a" != "$b" ]; then
      log "warning: $p is $a in Cargo.lock but $b in bench/ceiling/Cargo.lock"
      bad=1
    fi
  done
  # serde_json's map type (preserve_order or not) is part of the stack too.
  a=$(grep -c '^serde_json.*preserve_order' "$REPO/Cargo.toml" || true)
  b=$(grep -c '^serde_json.*preserve_order' "$BENCH_DIR/ceiling/Cargo.toml" || true)
  if [ "$a" != "$b" ]; then
    log "warning: serde_json's preserve_order differs between Cargo.toml and bench/ceiling/Cargo.toml"
    bad=1
  fi
  return $bad
}

# make_ca DIR: a throw-away CA (ca.crt, ca.key).
make_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout "$1/ca.key" -out "$1/ca.crt" 2>/dev/null
}

# make_leaf CADIR OUTDIR: a serving certificate for localhost/127.0.0.1 signed by the CA.
make_leaf() {
  local ca=$1 out=$2
  mkdir -p "$out"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$out/tls.key" -out "$out/tls.csr" 2>/dev/null
  openssl x509 -req -in "$out/tls.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
    -days 2 -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1') -out "$out/tls.crt" 2>/dev/null
  rm -f "$out/tls.csr"
}

# make_payloads DIR: the two reviews (as kube-apiserver sends them, compact JSON) and the
# full example config the server applies.
make_payloads() {
  local dir=$1
  mkdir -p "$dir"
  # The docs' "Complete Configuration Example" (03-...), with the one key Velero does not
  # know fixed (thresholdInGB -> residentThresholdInMB): every section set, all pod settings.
  jq '.data | to_entries[0].value | fromjson
      | .cachePVC = {residentThresholdInMB: 1024, storageClass: .cachePVC.storageClass}' \
    "$REPO/examples/configmaps/03-docs-complete-example-thresholdInGB.json" >"$dir/config-full.json"
  # The DataUpload pod (v1.18) after defaulting and the built-in admission plugins
  # (tests/support::as_admitted), in the review the API server sends for node-agent's CREATE.
  jq -c '
    .spec.priority = 0 | .spec.preemptionPolicy = "PreemptLowerPriority"
    | .spec.schedulerName = "default-scheduler" | .spec.enableServiceLinks = true
    | .spec.tolerations = [
        {key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300},
        {key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300}]
    | .spec.volumes += [{name: "kube-api-access-x7k2p", projected: {defaultMode: 420, sources: [
        {serviceAccountToken: {expirationSeconds: 3607, path: "token"}}]}}]
    | .spec.containers |= map(
        .terminationMessagePath = "/dev/termination-log" | .terminationMessagePolicy = "File"
        | .volumeMounts += [{name: "kube-api-access-x7k2p", readOnly: true,
            mountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}])
    | . as $pod
    | {apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: {
        uid: "0f3e7b9c-6d2a-4f51-8a7e-2c9b1d4e5f60",
        kind: {group: "", version: "v1", kind: "Pod"},
        resource: {group: "", version: "v1", resource: "pods"},
        requestKind: {group: "", version: "v1", kind: "Pod"},
        requestResource: {group: "", version: "v1", resource: "pods"},
        name: $pod.metadata.name, namespace: "velero", operation: "CREATE",
        userInfo: {username: "system:serviceaccount:velero:velero",
          uid: "5b8e3c1a-2f4d-4e6b-9a7c-1d3f5e7a9b2c",
          groups: ["system:serviceaccounts", "system:serviceaccounts:velero", "system:authenticated"],
          extra: {"authentication.kubernetes.io/credential-id": ["JTI=7c2e9a4b-1f3d-4b5e-8a6c-9d0e2f4a6b8c"],
            "authentication.kubernetes.io/node-name": ["worker-1"],
            "authentication.kubernetes.io/node-uid": ["a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"],
            "authentication.kubernetes.io/pod-name": ["node-agent-x2v9q"],
            "authentication.kubernetes.io/pod-uid": ["d4c3b2a1-f6e5-4b7a-9d8c-5d4c3b2a1f0e"]}},
        object: $pod, oldObject: null, dryRun: false,
        options: {kind: "CreateOptions", apiVersion: "meta.k8s.io/v1"}}}' \
    "$REPO/testdata/pods/v1.18/pod-dataupload.json" >"$dir/mutate.json"
  # kubectl apply of the example ConfigMap (01-valid-docs-basic.json).
  jq -c '. as $cm | {apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: {
        uid: "7a1c2e3f-4b5d-4c6e-8f9a-0b1c2d3e4f5a",
        kind: {group: "", version: "v1", kind: "ConfigMap"},
        resource: {group: "", version: "v1", resource: "configmaps"},
        requestKind: {group: "", version: "v1", kind: "ConfigMap"},
        requestResource: {group: "", version: "v1", resource: "configmaps"},
        name: $cm.metadata.name, namespace: $cm.metadata.namespace, operation: "CREATE",
        userInfo: {username: "kubernetes-admin", groups: ["kubeadm:cluster-admins", "system:authenticated"]},
        object: $cm, oldObject: null, dryRun: false,
        options: {kind: "CreateOptions", apiVersion: "meta.k8s.io/v1", fieldManager: "kubectl-client-side-apply"}}}' \
    "$REPO/examples/configmaps/01-valid-docs-basic.json" >"$dir/validate.json"
  # The same review with a marker at the end of the config value: wrk-post.lua replaces it
  # with whitespace that differs on every request, so the server's verdict reuse never hits.
  jq -c '.request.object.data |= with_entries(.value += "__FRESH__")' "$dir/validate.json" >"$dir/validate-fresh.json"
}

# free_port: a TCP port nobody listens on.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_server CERT KEY CONFIG PORT METRICS_PORT LOGFILE [extra flags...]: sets SERVER_PID.
start_server() {
  local cert=$1 key=$2 config=$3 port=$4 mport=$5 logfile=$6
  shift 6
  taskset -c "$SERVER_CPU" "$SERVER_BIN" serve --tls-cert "$cert" --tls-key "$key" \
    --bind "127.0.0.1:$port" --metrics-bind "127.0.0.1:$mport" --config-file "$config" \
    --velero-namespace velero --shutdown-delay 0s --shutdown-grace 2s "$@" 2>"$logfile" &
  SERVER_PID=$!
  local _
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:$mport/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  tail -20 "$logfile" >&2
  die "node-agent-webhook did not become ready"
}

# start_ceiling CERT KEY PORT LOGFILE [extra flags...]: sets CEILING_PID.
start_ceiling() {
  local cert=$1 key=$2 port=$3 logfile=$4
  shift 4
  taskset -c "$SERVER_CPU" "$CEILING_BIN" --bind "127.0.0.1:$port" --tls-cert "$cert" --tls-key "$key" \
    --enable-http2 "$@" 2>"$logfile" &
  CEILING_PID=$!
  local _
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$CEILING_PID" 2>/dev/null || break
    sleep 0.05
  done
  die "the ceiling server did not start"
}

# stop_pid PID: SIGTERM, then wait (we started it).
stop_pid() {
  [ -n "${1:-}" ] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# prepare_run OUT: a run's directory, with its certificates (OUT/certs) and payloads.
prepare_run() {
  mkdir -p "$1/certs"
  make_ca "$1/certs"
  make_leaf "$1/certs" "$1/certs"
  make_payloads "$1"
}

# Stops both servers when the script exits, however it exits.
stop_servers_on_exit() {
  SERVER_PID= CEILING_PID=
  trap 'stop_pid "$SERVER_PID"; stop_pid "$CEILING_PID"' EXIT
}

# rss_kib PID FIELD: VmRSS or VmHWM of a process, in KiB.
rss_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# reset_peak PID: restart VmHWM from the current RSS (Linux >= 4.0).
reset_peak() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }

# check_answer URL BODY CA: the server answers 200 with the uid echoed.
check_answer() {
  local url=$1 body=$2 ca=$3 out
  out=$(curl -sS --cacert "$ca" -H 'content-type: application/json' --data-binary @"$body" "$url") ||
    die "$url: request failed"
  [ "$(jq -r .response.uid <<<"$out")" = "$(jq -r .request.uid "$body")" ] || die "$url: uid not echoed: $out"
  [ "$(jq -r .response.allowed <<<"$out")" = true ] || die "$url: not allowed: $out"
  printf '%s' "$out"
}

machine_info() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  printf '%s, %s cores, %s MiB RAM, Linux %s' "$cpu" "$(nproc)" "$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)" "$(uname -r)"
}
