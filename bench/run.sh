#!/usr/bin/env bash
# make bench: node-agent-webhook (release, full example config) against the ceiling server,
# over TLS with kept-alive connections: HTTP/1.1 with wrk, h2 with h2load.
#
# Environment (defaults):
#   BENCH_DURATION=10   seconds measured per point
#   BENCH_WARMUP=1      seconds of warm-up before each point (not measured)
#   BENCH_RUNS=3        runs; the report takes the median per point
#   BENCH_CONNS="1 16 64"
#   BENCH_PROTOS="h1 h2"
#   BENCH_LOADS="mutate validate validate-fresh"   (validate-fresh: a different ConfigMap on
#                       every request, so no verdict is reused; HTTP/1.1 only, no target)
#   BENCH_SERVER_LOG=/dev/null   where the server's log goes (info level, JSON, as deployed)
#   BENCH_NO_BUILD=1    skip the cargo builds
#   SERVER_CPU=0 LOAD_CPU=1      taskset pinning
# Total: runs x protos x loads x conns x 2 servers x (duration + warm-up):
# 3 x (2 x 2 + 1) x 3 x 2 x 11 s = 16.5 min by default (validate-fresh is HTTP/1.1 only).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-1}
RUNS=${BENCH_RUNS:-3}
CONNS=${BENCH_CONNS:-1 16 64}
PROTOS=${BENCH_PROTOS:-h1 h2}
LOADS=${BENCH_LOADS:-mutate validate validate-fresh}
SERVER_LOG=${BENCH_SERVER_LOG:-/dev/null}

ensure_tools wrk h2load jq openssl curl taskset python3
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  build_server
  build_ceiling
fi
check_versions || log "the ceiling's crate versions differ from the server's (see above)"
[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 CPUs: server and load generator share one"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$BENCH_DIR/out/$stamp
mkdir -p "$out/raw"
ln -sfn "$stamp" "$BENCH_DIR/out/latest"
prepare_run "$out"
stop_servers_on_exit

ours_port=$(free_port)
metrics_port=$(free_port)
ceiling_port=$(free_port)
start_server "$out/certs/tls.crt" "$out/certs/tls.key" "$out/config-full.json" "$ours_port" "$metrics_port" \
  "$SERVER_LOG" --enable-http2 --log-format json
start_ceiling "$out/certs/tls.crt" "$out/certs/tls.key" "$ceiling_port" "$out/ceiling.log"
declare -A PORT=([ours]=$ours_port [ceiling]=$ceiling_port)
declare -A PID=([ours]=$SERVER_PID [ceiling]=$CEILING_PID)

# The mutate review must really be mutated (all five pod settings), the ConfigMap admitted.
patch=$(check_answer "https://localhost:$ours_port/mutate" "$out/mutate.json" "$out/certs/ca.crt" |
  jq -r '.response.patch // empty' | base64 -d | jq -c 'map(.path)')
[ -n "$patch" ] || die "/mutate returned no patch: is the config loaded?"
log "/mutate patch paths: $patch"
check_answer "https://localhost:$ours_port/validate" "$out/validate.json" "$out/certs/ca.crt" >/dev/null
# What wrk-post.lua makes of the fresh load's marker must still be the valid ConfigMap.
sed 's/__FRESH__/ \\t \\t/' "$out/validate-fresh.json" >"$out/validate-fresh-sample.json"
check_answer "https://localhost:$ours_port/validate" "$out/validate-fresh-sample.json" "$out/certs/ca.crt" >/dev/null
check_answer "https://localhost:$ceiling_port/mutate" "$out/mutate.json" "$out/certs/ca.crt" >/dev/null
rss_idle=$(rss_kib "$SERVER_PID" VmRSS)

{
  echo "machine: $(machine_info)"
  echo "server: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet -- src 2>/dev/null || echo '+dirty'), $("$SERVER_BIN" --version)"
  echo "wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); h2load: $(h2load --version | head -1)"
  echo "settings: duration=${DURATION}s warmup=${WARMUP}s runs=$RUNS conns=[$CONNS] protos=[$PROTOS] server_cpu=$SERVER_CPU load_cpu=$LOAD_CPU"
  echo "payloads: /mutate $(wc -c <"$out/mutate.json") bytes, /validate $(wc -c <"$out/validate.json") bytes"
  echo "node-agent-webhook idle RSS: $((rss_idle / 1024)) MiB"
} >"$out/env.txt"
cat "$out/env.txt" >&2

# measure SERVER PROTO LOAD CONNS RAWPREFIX -> "rps p50 p99 p999 errors"
measure() {
  local server=$1 proto=$2 load=$3 conns=$4 raw=$5 url
  url="https://127.0.0.1:${PORT[$server]}/${load%-fresh}"
  if [ "$proto" = h1 ]; then
    if [ "$WARMUP" != 0 ]; then
      BENCH_BODY="$out/$load.json" taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${WARMUP}s" \
        -s "$BENCH_DIR/wrk-post.lua" "$url" >/dev/null 2>&1 || true
    fi
    BENCH_BODY="$out/$load.json" taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 5s \
      -s "$BENCH_DIR/wrk-post.lua" "$url" >"$raw.txt" 2>&1 || true
    local line
    line=$(grep '^BENCH ' "$raw.txt") || die "wrk failed: $(cat "$raw.txt")"
    # shellcheck disable=SC2086
    local $line
    echo "$rps $p50_us $p99_us $p999_us $((connect_errors + read_errors + write_errors + status_errors + timeouts))"
  else
    taskset -c "$LOAD_CPU" h2load -c"$conns" -t1 -m1 -D "$DURATION" --warm-up-time="$WARMUP" \
      -d "$out/$load.json" -H 'content-type: application/json' --log-file="$raw.log" "$url" >"$raw.txt" 2>&1 || true
    local rps failed pcts
    rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$raw.txt")
    [ -n "$rps" ] || die "h2load failed: $(tail -5 "$raw.txt")"
    failed=$(sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\1 \2 \3/p' "$raw.txt")
    read -r p50 p99 p999 non2xx < <(python3 "$BENCH_DIR/report.py" pct "$raw.log")
    rm -f "$raw.log"
    # shellcheck disable=SC2086
    set -- ${failed:-0 0 0}
    echo "$rps $p50 $p99 $p999 $(($1 + $2 + $3 + non2xx))"
  fi
}

results=$out/results.tsv
echo "run proto load conns server rps p50_us p99_us p999_us errors rss_peak_kib" >"$results"
# h2load sends one body over and over: the fresh load runs on HTTP/1.1 only.
measured() { [ "$1" = h1 ] || [[ $2 != *-fresh ]]; }
total=0
for proto in $PROTOS; do
  for load in $LOADS; do
    if measured "$proto" "$load"; then total=$((total + RUNS * $(wc -w <<<"$CONNS") * 2)); fi
  done
done
log "$total points of ${DURATION}s (+${WARMUP}s warm-up): about $((total * (DURATION + WARMUP + 1) / 60)) min"
n=0
for run in $(seq 1 "$RUNS"); do
  # Alternate which server goes first in each pair, so drift cancels out.
  if [ $((run % 2)) -eq 1 ]; then order="ceiling ours"; else order="ours ceiling"; fi
  for proto in $PROTOS; do
    for load in $LOADS; do
      measured "$proto" "$load" || continue
      for conns in $CONNS; do
        for server in $order; do
          n=$((n + 1))
          reset_peak "${PID[$server]}"
          read -r rps p50 p99 p999 errors < <(measure "$server" "$proto" "$load" "$conns" \
            "$out/raw/$run-$proto-$load-$conns-$server")
          [ -n "${rps:-}" ] || die "no result for run $run $proto /$load c=$conns $server"
          peak=$(rss_kib "${PID[$server]}" VmHWM)
          echo "$run $proto $load $conns $server $rps $p50 $p99 $p999 $errors $peak" >>"$results"
          log "[$n/$total] run $run $proto /$load c=$conns $server: $rps rev/s p50 ${p50}us p99 ${p99}us p99.9 ${p999}us errors $errors peak RSS $((peak / 1024)) MiB"
        done
      done
    done
  done
done

kill -0 "$SERVER_PID" 2>/dev/null || die "node-agent-webhook died during the run"
{
  echo "# node-agent-webhook benchmark ($stamp)"
  echo
  sed 's/^/    /' "$out/env.txt"
  echo
  python3 "$BENCH_DIR/report.py" summary "$results"
} >"$out/report.md"
cat "$out/report.md"
log "results in ${out#"$REPO"/}/ (results.tsv, report.md, raw/)"
