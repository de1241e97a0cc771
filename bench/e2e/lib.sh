# Shared by bench/e2e/run.sh and bench/growth.sh: the webhook port, ServiceAccount kubeconfigs,
# and our release server started as in a cluster behind the real API server. Source it; it
# defines functions only. They read the caller's WEBHOOK_PORT, BENCH_PORT_WAIT, E2E_DIR, KUBECONFIG,
# bench (a directory for kubeconfigs), server_bin, webhook_kubeconfig, metrics_port and
# BENCH_NICE, call its log and die, and set server_pid and server_kind.
# shellcheck shell=bash

# 127.0.0.1:443 is where the API server dials the webhook (the ExternalName Service of
# hack/e2e/overlay). Other e2e runs on this machine use it too: never measure through a server
# that is not the one this script started.
holder() { ss -ltnpH "sport = :$WEBHOOK_PORT" 2>/dev/null | grep -oE 'pid=[0-9]+' | head -n 1 | cut -d= -f2; }
port_taken() { [ -n "$(ss -ltnH "sport = :$WEBHOOK_PORT" 2>/dev/null)" ]; }
require_port_free() {
  local deadline=$((SECONDS + BENCH_PORT_WAIT)) said=
  while port_taken && [ $SECONDS -lt $deadline ]; do
    [ -n "$said" ] || { log "127.0.0.1:$WEBHOOK_PORT is taken (pid $(holder)); waiting up to $BENCH_PORT_WAIT s"; said=1; }
    sleep 0.5
  done
  if port_taken; then
    ss -ltnp "sport = :$WEBHOOK_PORT" >&2 || true
    die "127.0.0.1:$WEBHOOK_PORT is taken by another process (above), probably another e2e run: the API server would call it instead of the server under test. Wait for it to finish and run again."
  fi
}
require_holder() {
  local want=$1 got
  got=$(holder)
  [ "$got" = "$want" ] || die "127.0.0.1:$WEBHOOK_PORT is held by pid '${got:-nobody}', not by the server under test ($want)"
}

# Kubeconfigs holding ServiceAccount tokens (as tests/e2e/harness.rs makes them).
sa_kubeconfig() {
  local account=$1 pod=${2:-} file token server
  file=$bench/kubeconfig-$account${pod:+-$pod}
  if [ -n "$pod" ]; then
    token=$(kubectl create token "$account" -n velero --duration 4h --bound-object-kind Pod --bound-object-name "$pod")
  else
    token=$(kubectl create token "$account" -n velero --duration 4h)
  fi
  server=$(awk '/server:/ {print $2; exit}' "$KUBECONFIG")
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: $server
    certificate-authority: $E2E_DIR/pki/ca.crt
users:
- name: $account
  user:
    token: $token
contexts:
- name: e2e
  context: {cluster: e2e, user: $account}
current-context: e2e
EOF
  echo "$file"
}

start_ours() {
  require_port_free
  KUBECONFIG=$webhook_kubeconfig RUST_LOG=info nice -n "$BENCH_NICE" "$server_bin" serve --log-format json \
    --bind "127.0.0.1:$WEBHOOK_PORT" --metrics-bind "127.0.0.1:$metrics_port" \
    --tls-cert "$E2E_DIR/serving/serving.pem" --tls-key "$E2E_DIR/serving/serving.key" \
    --shutdown-delay 0s --shutdown-grace 2s >/dev/null 2>>"$E2E_DIR/node-agent-webhook.log" &
  server_pid=$!
  server_kind=ours
  echo "$server_pid" >>"$E2E_DIR/pids"
  local deadline=$((SECONDS + 30))
  until curl -fsS "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1; do
    kill -0 "$server_pid" 2>/dev/null || { tail -n 20 "$E2E_DIR/node-agent-webhook.log" >&2; die "our server exited"; }
    [ $SECONDS -lt $deadline ] || die "our server not ready after 30 s"
    sleep 0.1
  done
  require_holder "$server_pid"
}

stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$server_pid" 2>/dev/null && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  server_kind=
}
