#!/usr/bin/env bash
# Where a `/mutate` review's CPU goes, as the kernel accounts it: user and system time per
# review (/proc/PID/stat) for our server, the ceiling, and the ceiling answering with the very
# patch ours sends (`--patch`), one after the other at the same h2 load. The ratio of
# `make bench` compares ours with a ceiling that sends no patch; this separates what the 2 KB
# answer costs from what our code costs. callgrind (bench/profile.sh) counts user-space
# instructions only; this also sees the kernel's share.
#
# Environment: CPU_CONNS=16, CPU_SECONDS=5, CPU_WARMUP=1, CPU_RUNS=3 (the report takes the
#              median per server), BENCH_NO_BUILD=1, SERVER_LOG=/dev/null (where our JSON log
#              lines go; `RUST_LOG=warn` drops the admission line).
# Output: bench/out/cpu-<time>/report.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CONNS=${CPU_CONNS:-16}
SECONDS_PER_RUN=${CPU_SECONDS:-5}
WARMUP=${CPU_WARMUP:-1}
RUNS=${CPU_RUNS:-3}
SERVER_LOG=${SERVER_LOG:-/dev/null}

ensure_tools h2load jq openssl curl taskset python3
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  build_server
  build_ceiling
fi
out=$BENCH_DIR/out/cpu-$(date -u +%Y%m%dT%H%M%SZ)
prepare_run "$out"
stop_servers_on_exit

ours_port=$(free_port)
start_server "$out/certs/tls.crt" "$out/certs/tls.key" "$out/config-full.json" "$ours_port" "$(free_port)" \
  "$SERVER_LOG" --enable-http2 --log-format json
ours_pid=$SERVER_PID
# The patch ours answers the benchmark's pod with, for the patching ceiling.
check_answer "https://localhost:$ours_port/mutate" "$out/mutate.json" "$out/certs/ca.crt" |
  jq -r '.response.patch' | base64 -d >"$out/patch.json"
[ "$(jq length "$out/patch.json")" -gt 0 ] || die "/mutate returned no patch: is the config loaded?"

# measure NAME PID PORT: one line "NAME reviews/s user-us sys-us" per run.
measure() {
  local name=$1 pid=$2 port=$3 url before after text rps done_ n
  url=https://127.0.0.1:$port/mutate
  for ((n = 1; n <= RUNS; n++)); do
    taskset -c "$LOAD_CPU" h2load -c"$CONNS" -t1 -m1 -D "$WARMUP" -d "$out/mutate.json" \
      -H 'content-type: application/json' "$url" >/dev/null 2>&1 || true
    before=$(awk '{print $14, $15}' "/proc/$pid/stat")
    text=$(taskset -c "$LOAD_CPU" h2load -c"$CONNS" -t1 -m1 -D "$SECONDS_PER_RUN" -d "$out/mutate.json" \
      -H 'content-type: application/json' "$url" 2>&1) || true
    after=$(awk '{print $14, $15}' "/proc/$pid/stat")
    rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$text")
    done_=$(sed -n 's/^requests: .* \([0-9]*\) succeeded,.*/\1/p' <<<"$text")
    [ -n "$rps" ] && [ "${done_:-0}" -gt 0 ] || die "h2load against $name failed: $(tail -3 <<<"$text")"
    python3 - "$name" "$rps" "$done_" "$before" "$after" "$(getconf CLK_TCK)" <<'PY' >>"$out/runs.txt"
import sys
name, rps, done, before, after, tck = sys.argv[1:]
(u0, s0), (u1, s1) = (map(int, before.split()), map(int, after.split()))
per = 1e6 / int(tck) / int(done)
print(f"{name} {float(rps):.0f} {(u1 - u0) * per:.1f} {(s1 - s0) * per:.1f}")
PY
    log "$(tail -1 "$out/runs.txt")"
  done
}

measure ours "$ours_pid" "$ours_port"
for kind in ceiling ceiling-patch; do
  port=$(free_port)
  if [ "$kind" = ceiling ]; then
    start_ceiling "$out/certs/tls.crt" "$out/certs/tls.key" "$port" "$out/ceiling.log"
  else
    start_ceiling "$out/certs/tls.crt" "$out/certs/tls.key" "$port" "$out/ceiling.log" --patch "$out/patch.json"
  fi
  measure "$kind" "$CEILING_PID" "$port"
  stop_pid "$CEILING_PID"
  CEILING_PID=
done

python3 - "$out/runs.txt" "$CONNS" "$SECONDS_PER_RUN" "$RUNS" "$(machine_info)" <<'PY' >"$out/report.md"
import statistics, sys
path, conns, secs, runs, machine = sys.argv[1:]
rows = {}
for line in open(path):
    name, *vals = line.split()
    rows.setdefault(name, []).append([float(v) for v in vals])
med = {n: [statistics.median(col) for col in zip(*v)] for n, v in rows.items()}
print(f"# bench/cpu.sh: h2 /mutate at {conns} connections, median of {runs} x {secs} s\n\n{machine}\n")
print("| server | reviews/s | user µs / review | system µs / review | ours / this, reviews/s |")
print("|---|---:|---:|---:|---:|")
for name in ("ours", "ceiling", "ceiling-patch"):
    rps, user, system = med[name]
    print(f"| {name} | {rps:,.0f} | {user:.1f} | {system:.1f} | {med['ours'][0] / rps:.2f} |")
PY
cat "$out/report.md"
