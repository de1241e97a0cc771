#!/usr/bin/env bash
# make soak: a bounded run at a steady rate (bench/soak_client.py: kept-alive HTTP/1.1,
# certificate verified, connections renewed every few seconds) while the serving
# certificate is rotated twice (Kubernetes Secret-volume style: a new timestamped dir,
# then an atomic swap of the ..data symlink) and the config file is edited twice (a
# ConfigMap-volume ..data swap, then an in-place rewrite). Reports failed requests (must
# be 0), p99 per interval, and RSS at start and end (growth must stay under 10%).
#
# Environment (defaults): SOAK_DURATION=300 (s, measured), SOAK_RATE=200 (reviews/s),
#   SOAK_CONNS=4, SOAK_INTERVAL=10 (s per report line), SOAK_RECONNECT=5 (s per connection),
#   SOAK_WARMUP=5 (s, not measured), BENCH_NO_BUILD=1 (skip the release build)
# Duration: SOAK_DURATION + SOAK_WARMUP + ~5 s (after the build).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${SOAK_DURATION:-300}
RATE=${SOAK_RATE:-200}
CONNS=${SOAK_CONNS:-4}
INTERVAL=${SOAK_INTERVAL:-10}
RECONNECT=${SOAK_RECONNECT:-5}
WARMUP=${SOAK_WARMUP:-5}

ensure_tools jq openssl curl taskset python3 bc
[ -n "${BENCH_NO_BUILD:-}" ] || build_server

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$BENCH_DIR/out/soak-$stamp
mkdir -p "$out/ca"
ln -sfn "soak-$stamp" "$BENCH_DIR/out/soak-latest"
make_ca "$out/ca"
make_payloads "$out"

# The Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>.
certs=$out/secret
mkdir -p "$certs"
new_secret_version() { # -> prints the serial of the new certificate
  local dir="..$(date -u +%Y_%m_%d_%H_%M_%S.%N)"
  make_leaf "$out/ca" "$certs/$dir"
  ln -sfn "$dir" "$certs/..data_tmp"
  mv -T "$certs/..data_tmp" "$certs/..data"
  openssl x509 -noout -serial -in "$certs/$dir/tls.crt" | cut -d= -f2
}
first_serial=$(new_secret_version)
ln -sfn ..data/tls.crt "$certs/tls.crt"
ln -sfn ..data/tls.key "$certs/tls.key"

# The ConfigMap volume: config.json -> ..data/config.json.
configs=$out/configmap
mkdir -p "$configs"
new_config_version() { # LABEL_VALUE
  local dir="..$(date -u +%Y_%m_%d_%H_%M_%S.%N)" old
  old=$(readlink "$configs/..data" 2>/dev/null || true)
  mkdir -p "$configs/$dir"
  jq --arg v "$1" '.podLabels["soak-edit"] = $v' "$out/config-full.json" >"$configs/$dir/config.json"
  ln -sfn "$dir" "$configs/..data_tmp"
  mv -T "$configs/..data_tmp" "$configs/..data"
  [ -z "$old" ] || rm -rf "${configs:?}/$old"
}
new_config_version initial
ln -sfn ..data/config.json "$configs/config.json"

SERVER_PID= CLIENT_PID=
cleanup() {
  stop_pid "$CLIENT_PID"
  stop_pid "$SERVER_PID"
}
trap cleanup EXIT
port=$(free_port)
mport=$(free_port)
start_server "$certs/tls.crt" "$certs/tls.key" "$configs/config.json" "$port" "$mport" "$out/server.log" \
  --log-format json
check_answer "https://localhost:$port/mutate" "$out/mutate.json" "$out/ca/ca.crt" >/dev/null

served_serial() {
  openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null |
    openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}
patched_label() {
  curl -sS --cacert "$out/ca/ca.crt" -H 'content-type: application/json' --data-binary @"$out/mutate.json" \
    "https://localhost:$port/mutate" | jq -r '.response.patch // empty' | base64 -d |
    jq -r '.[] | select(.path == "/metadata/labels/soak-edit") | .value'
}
# wait_for WHAT EXPECTED COMMAND...: seconds until COMMAND prints EXPECTED (30 s at most).
wait_for() {
  local what=$1 want=$2 t0 got
  shift 2
  t0=$(date +%s.%N)
  for _ in $(seq 1 300); do
    got=$("$@" || true)
    if [ "$got" = "$want" ]; then
      printf '%s %s took effect after %.2f s\n' "$(date +%T)" "$what" "$(echo "$(date +%s.%N) - $t0" | bc -l)"
      return 0
    fi
    sleep 0.1
  done
  echo "$(date +%T) $what did NOT take effect within 30 s (got '$got')"
  return 1
}
[ "$(served_serial)" = "$first_serial" ] || die "the server does not serve the first certificate"
[ "$(patched_label)" = initial ] || die "the server does not apply the first config"

events() {
  local t0=$1 serial
  at() { sleep "$(echo "$t0 + $1 - $(date +%s.%N)" | bc -l | sed 's/^-.*/0/')"; }
  at "$(echo "$WARMUP + $DURATION * 0.25" | bc -l)"
  serial=$(new_secret_version)
  echo "$(date +%T) rotated the certificate (..data swap): serial $serial"
  wait_for "certificate rotation" "$serial" served_serial
  at "$(echo "$WARMUP + $DURATION * 0.5" | bc -l)"
  new_config_version edit-1
  echo "$(date +%T) edited the config (..data swap): podLabels.soak-edit = edit-1"
  wait_for "config edit 1" edit-1 patched_label
  at "$(echo "$WARMUP + $DURATION * 0.75" | bc -l)"
  serial=$(new_secret_version)
  echo "$(date +%T) rotated the certificate again (..data swap): serial $serial"
  wait_for "certificate rotation 2" "$serial" served_serial
  at "$(echo "$WARMUP + $DURATION * 0.8" | bc -l)"
  jq '.podLabels["soak-edit"] = "edit-2"' "$out/config-full.json" >"$configs/..data/config.json"
  echo "$(date +%T) edited the config in place: podLabels.soak-edit = edit-2"
  wait_for "config edit 2" edit-2 patched_label
}

log "soak: ${DURATION}s at $RATE reviews/s over $CONNS connections (renewed every ${RECONNECT}s), ${WARMUP}s warm-up"
t0=$(date +%s.%N)
events "$t0" >"$out/events.log" 2>&1 &
events_pid=$!
set +e
taskset -c "$LOAD_CPU" python3 "$BENCH_DIR/soak_client.py" --url-base "https://localhost:$port" \
  --ca "$out/ca/ca.crt" --pid "$SERVER_PID" --duration "$DURATION" --rate "$RATE" --conns "$CONNS" \
  --interval "$INTERVAL" --reconnect "$RECONNECT" --warmup "$WARMUP" --summary "$out/summary.json" \
  "$out/mutate.json" "$out/validate.json" | tee "$out/client.log"
client_status=${PIPESTATUS[0]}
wait "$events_pid"
events_status=$?
set -e
echo
echo "Events:"
cat "$out/events.log"
echo "Server log: $(grep -c '"serving certificate reloaded"' "$out/server.log") certificate reloads," \
  "$(grep -c '"config loaded"' "$out/server.log") config loads," \
  "$(grep -c '"level":"ERROR"' "$out/server.log") errors, $(grep -c '"level":"WARN"' "$out/server.log") warnings"
kill -0 "$SERVER_PID" 2>/dev/null || die "the server died"
if [ "$client_status" -ne 0 ] || [ "$events_status" -ne 0 ]; then
  echo "SOAK FAILED (client $client_status, events $events_status); see ${out#"$REPO"/}/"
  exit 1
fi
echo "SOAK PASSED; details in ${out#"$REPO"/}/ (client.log, events.log, summary.json, server.log)"
