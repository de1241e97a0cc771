#!/usr/bin/env bash
# Instruction profile of one review: the release server (with line tables) under
# valgrind --tool=callgrind, counters zeroed after a warm-up, then PROFILE_REVIEWS
# reviews over one kept-alive HTTP/1.1 connection; the same for the ceiling.
# perf is used instead when PROFILE_TOOL=perf and `perf stat -e instructions` works.
#
# The validate-fresh load (a different ConfigMap on every request, so no verdict is reused)
# is driven by wrk for PROFILE_FRESH_SECONDS over HTTP/1.1 instead, and divided by the
# requests wrk counted.
#
# Environment: PROFILE_PROTO=h1 (or h2), PROFILE_CONNS=1, PROFILE_REVIEWS=2000,
#              PROFILE_LOADS="mutate validate validate-fresh", PROFILE_FRESH_SECONDS=20,
#              PROFILE_SERVERS="ours ceiling", PROFILE_TOP=40, BENCH_NO_BUILD=1,
#              PROFILE_TARGET_DIR (default bench/out/target-profile), PROFILE_OUT (bench/out/profile),
#              REPO (the checkout to profile; default the one holding bench/)
# Output: bench/out/profile/{ours,ceiling}-{mutate,validate}.{callgrind,inclusive.txt,self.txt}
# and summary.txt (instructions per review). About 2-3 min after the builds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REVIEWS=${PROFILE_REVIEWS:-2000}
LOADS=${PROFILE_LOADS:-mutate validate validate-fresh}
FRESH_SECONDS=${PROFILE_FRESH_SECONDS:-20}
SERVERS=${PROFILE_SERVERS:-ours ceiling}
TOP=${PROFILE_TOP:-40}
WARM=${PROFILE_WARMUP_REVIEWS:-200}
PROTO=${PROFILE_PROTO:-h1}
CONNS=${PROFILE_CONNS:-1}

ensure_tools valgrind callgrind_control callgrind_annotate h2load wrk jq openssl curl taskset python3
prof_target=${PROFILE_TARGET_DIR:-$BENCH_DIR/out/target-profile}
SERVER_BIN=$prof_target/release/node-agent-webhook
CEILING_BIN=$BENCH_DIR/out/target-profile-ceiling/release/ceiling
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  log "building node-agent-webhook and the ceiling with line tables (bench/out/target-profile*)"
  (cd "$REPO" && CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=$prof_target \
    cargo build --release --locked --quiet --bin node-agent-webhook)
  (cd "$BENCH_DIR/ceiling" && CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    CARGO_TARGET_DIR=$BENCH_DIR/out/target-profile-ceiling cargo build --release --locked --quiet)
fi

out=${PROFILE_OUT:-$BENCH_DIR/out/profile}
rm -rf "$out"
prepare_run "$out"

VG_PID=
cleanup() { stop_pid "$VG_PID"; }
trap cleanup EXIT

# drive PORT LOAD N SECONDS: N reviews over PROFILE_CONNS kept-alive connections, or for a
# -fresh load wrk for SECONDS; prints how many were answered.
drive() {
  if [[ $2 == *-fresh ]]; then
    local line
    BENCH_BODY="$out/$2.json" taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${4}s" --timeout 10s \
      -s "$BENCH_DIR/wrk-post.lua" "https://127.0.0.1:$1/${2%-fresh}" >"$out/wrk.txt" 2>&1 || true
    line=$(grep '^BENCH ' "$out/wrk.txt") || die "wrk failed: $(cat "$out/wrk.txt")"
    # shellcheck disable=SC2086
    local $line
    [ "$((connect_errors + read_errors + write_errors + status_errors + timeouts))" = 0 ] ||
      die "wrk saw errors: $line"
    echo "$requests"
    return
  fi
  local h1=--h1
  [ "$PROTO" = h1 ] || h1=
  taskset -c "$LOAD_CPU" h2load $h1 -c"$CONNS" -t1 -m1 -n "$3" -d "$out/$2.json" -H 'content-type: application/json' \
    "https://127.0.0.1:$1/$2" >"$out/h2load.txt" 2>&1
  grep -q "status codes: $3 2xx" "$out/h2load.txt" || die "not all reviews answered 2xx: $(tail -6 "$out/h2load.txt")"
  echo "$3"
}

echo "reviews per profile: $REVIEWS over $CONNS $PROTO connection(s) (after $WARM warm-up reviews); $(machine_info)" >"$out/summary.txt"
for server in $SERVERS; do
  for load in $LOADS; do
    name=$server-$load
    port=$(free_port)
    if [ "$server" = ours ]; then
      mport=$(free_port)
      cmd=("$SERVER_BIN" serve --tls-cert "$out/certs/tls.crt" --tls-key "$out/certs/tls.key"
        --bind "127.0.0.1:$port" --metrics-bind "127.0.0.1:$mport" --config-file "$out/config-full.json"
        --shutdown-delay 0s --shutdown-grace 1s --log-format json --enable-http2)
    else
      cmd=("$CEILING_BIN" --bind "127.0.0.1:$port" --tls-cert "$out/certs/tls.crt" --tls-key "$out/certs/tls.key" --enable-http2)
    fi
    taskset -c "$SERVER_CPU" valgrind --tool=callgrind --callgrind-out-file="$out/$name.callgrind" \
      --dump-instr=no --collect-jumps=no --log-file="$out/$name.valgrind.log" "${cmd[@]}" >/dev/null 2>&1 &
    VG_PID=$!
    for _ in $(seq 1 600); do
      curl -sk -o /dev/null -H 'content-type: application/json' --data-binary @"$out/${load%-fresh}.json" \
        "https://127.0.0.1:$port/${load%-fresh}" 2>/dev/null && break
      sleep 0.2
    done
    drive "$port" "$load" "$WARM" 2 >/dev/null
    callgrind_control -z "$VG_PID" >/dev/null
    reviews=$(drive "$port" "$load" "$REVIEWS" "$FRESH_SECONDS")
    callgrind_control -d "profiled" "$VG_PID" >/dev/null
    stop_pid "$VG_PID"
    VG_PID=
    # The dump after zeroing is the one with the "profiled" trigger.
    dump=$(grep -l '^desc: Trigger: dump profiled' "$out/$name.callgrind"* | head -1)
    total=$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$dump")
    per=$((total / reviews))
    printf '%-24s %12d instructions per review (%d reviews)\n' "$name" "$per" "$reviews" | tee -a "$out/summary.txt" >&2
    callgrind_annotate --inclusive=yes --threshold=100 "$dump" >"$out/$name.inclusive.txt" 2>/dev/null || true
    callgrind_annotate --inclusive=no --threshold=100 "$dump" >"$out/$name.self.txt" 2>/dev/null || true
    python3 "$BENCH_DIR/callgrind_top.py" "$out/$name.inclusive.txt" "$out/$name.self.txt" "$reviews" \
      >"$out/$name.breakdown.txt"
    # Keep only the profiled dump.
    for f in "$out/$name.callgrind"*; do [ "$f" = "$dump" ] || rm -f "$f"; done
    [ "$dump" = "$out/$name.callgrind" ] || mv "$dump" "$out/$name.callgrind"
  done
done
cat "$out/summary.txt"
log "profiles in ${out#"$REPO"/}/ (callgrind_annotate --inclusive=yes FILE for more)"
