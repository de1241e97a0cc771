#!/usr/bin/env bash
# Trains an instrumented node-agent-webhook (built with -Cprofile-generate) on the training set
# hack/pgo/reviews.py writes: serves it over TLS on loopback with HTTP/2 on and JSON logs (as
# deployed), sends every phase's requests with curl, checks each was answered 200, and stops
# the server with SIGTERM so that it writes its profile on the way out.
#
#   hack/pgo/train.sh BINARY            # node-agent-webhook
#   hack/pgo/train.sh BINARY ceiling    # bench's ceiling, on the same reviews (no probes)
#
# Needs bash, curl (with HTTP/2), openssl, python3 and taskset: all in rust:*-bookworm, the
# Dockerfile's builder, and on a developer's machine; no h2load, wrk or jq (bench's clients).
# About 10 s, of which the 9,960 requests take 1-2 s with the instrumented binary.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# bench/lib.sh's certificates, free ports and server start (flags as the benchmarks run it).
source "$here/../../bench/lib.sh"

SERVER_BIN=$1 CEILING_BIN=$1
kind=${2:-server}
# The server on one core as in the benchmarks, the first this process may use (a container's
# cpuset need not hold CPU 0); curl wherever the scheduler puts it.
SERVER_CPU=${SERVER_CPU:-$(python3 -c 'import os; print(min(os.sched_getaffinity(0)))')}
work="$(mktemp -d)"
SERVER_PID=
trap 'stop_pid "$SERVER_PID"; rm -rf "$work"' EXIT

mkdir -p "$work/certs"
make_ca "$work/certs"
make_leaf "$work/certs" "$work/certs"
port=$(free_port)
mport=$(free_port)
python3 "$here/reviews.py" "$work" "https://localhost:$port" "http://127.0.0.1:$mport" "$work/certs/ca.crt"
if [ "$kind" = ceiling ]; then
  start_ceiling "$work/certs/tls.crt" "$work/certs/tls.key" "$port" "$work/server.log"
  SERVER_PID=$CEILING_PID
  sed -i '/^probes /d' "$work/phases"
else
  start_server "$work/certs/tls.crt" "$work/certs/tls.key" "$work/config.json" "$port" "$mport" "$work/server.log" \
    --enable-http2 --log-format json
fi

# One of each body first: answered with its uid, and every pod patched (the config is served).
while read -r body; do
  url="https://localhost:$port/validate"
  [[ $body == */mutate-* ]] && url="https://localhost:$port/mutate"
  answer=$(curl -sS --cacert "$work/certs/ca.crt" -H 'content-type: application/json' --data-binary "@$body" "$url")
  uid=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["request"]["uid"])' "$body")
  [[ $answer == *"\"uid\":\"$uid\""* ]] || die "$url: $(basename "$body"): uid not echoed: $answer"
  [[ $kind == ceiling || $url != */mutate || $answer == *'"patchType":"JSONPatch"'* ]] || die "$(basename "$body"): no patch: $answer"
done <"$work/samples"

# Every phase at 16 requests in flight: h2 multiplexes them on one connection (as kube-apiserver
# does), h1 opens up to 16 kept-alive connections.
start=$SECONDS
while read -r phase proto count; do
  # (curl's parallel progress meter ignores -s: stderr goes to a file, shown on failure.)
  curl -s --parallel --parallel-max 16 -K "$work/$phase.curl" >"$work/codes" 2>"$work/curl.err" || true
  got=$(grep -c '^200$' "$work/codes" || true)
  [ "$got" = "$count" ] || die "$phase ($proto): $got of $count requests answered 200:" \
    "$(sort "$work/codes" | uniq -c | tr '\n' ' ') $(tr '\r' '\n' <"$work/curl.err" | grep -v '^ *$' | tail -3)"
  log "pgo/train: $phase: $count requests ($proto)"
done <"$work/phases"
log "pgo/train: trained in $((SECONDS - start)) s"
stop_pid "$SERVER_PID"
SERVER_PID=
