# Shared by bench/e2e/run.sh and bench/growth.sh: a control plane of their own with
# node-agent-webhook installed, ServiceAccount kubeconfigs, and our release server started as in a
# cluster behind the real API server. Source it from the repository's root with E2E_DIR set; it
# sets the knobs below and defines functions, which read the caller's server_bin and
# metrics_port, call its log and die, and set server_pid and server_kind.
# shellcheck shell=bash

BENCH_NICE=${BENCH_NICE:-5}
BENCH_PORT_WAIT=${BENCH_PORT_WAIT:-120}
WEBHOOK_PORT=443
# The load client's own target dir (bench/e2e is a crate of its own).
client_target=$PWD/_out/e2e-bench-build/target

# control_plane_up: the control plane of E2E_DIR, once 127.0.0.1:443 is free. The caller sets
# its trap (hack/controlplane/cluster.sh down) next.
control_plane_up() {
  require_port_free
  hack/controlplane/build.sh >/dev/null
  hack/controlplane/cluster.sh up
}

# install_webhook OUT RUN_PREFIX: KUBECONFIG for the control plane, node-agent-webhook installed
# (hack/e2e/install.sh, its log in OUT), the serving certificate in E2E_DIR/serving, and the
# kubeconfigs of our server (webhook_kubeconfig) and of node-agent (NODE_AGENT_KUBECONFIG, a
# token bound to its pod) in bench=E2E_DIR/bench; exports what bench/e2e's load client reads.
install_webhook() {
  eval "$(hack/controlplane/cluster.sh env)"
  hack/e2e/install.sh >"$1/install.log" 2>&1 || { cat "$1/install.log" >&2; die "install failed"; }
  bench=$E2E_DIR/bench
  mkdir -p "$bench" "$E2E_DIR/serving"
  cp certs/ca.pem certs/serving.pem certs/serving.key "$E2E_DIR/serving/"
  webhook_kubeconfig=$(sa_kubeconfig node-agent-webhook)
  NODE_AGENT_KUBECONFIG=$(sa_kubeconfig velero node-agent-e2e01)
  export NODE_AGENT_KUBECONFIG ADMIN_KUBECONFIG=$KUBECONFIG FIXTURE=$PWD/testdata/pods/v1.18/pod-dataupload.json
  RUN_ID=$2$(date +%s | tail -c 6) BENCH_CLK_TCK=$(getconf CLK_TCK)
  export RUN_ID BENCH_CLK_TCK
}

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
