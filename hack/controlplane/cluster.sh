#!/usr/bin/env bash
# A real control plane on loopback for the end-to-end tests: etcd and kube-apiserver as plain
# processes, the way envtest runs them, but with the admission plugins a real cluster has.
#
#   hack/controlplane/cluster.sh up                 # build if needed, start, wait for /readyz
#   hack/controlplane/cluster.sh env                # eval "$(… env)": KUBECONFIG, PATH, E2E_DIR
#   hack/controlplane/cluster.sh restart-apiserver  # stop kube-apiserver and start it again (etcd kept)
#   hack/controlplane/cluster.sh down               # stop every process it (or a test) started
#
# State lives in E2E_DIR (default _out/e2e/<version>): certificates, etcd data, logs, the admin
# kubeconfig, and `pids`, which lists every process to stop on `down` (tests append theirs).
# Every listener is on 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

bin=$("$here/build.sh")
version=$(basename "$(dirname "$bin")")
E2E_DIR=${E2E_DIR:-$root/_out/e2e/$version}
state="$E2E_DIR/cluster.env"

die() { echo "cluster.sh: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Certificates: one CA for the API server's serving certificate and its client certificates,
# an admin client in system:masters, and the service-account signing key pair (TokenRequest).
make_pki() {
  local pki="$E2E_DIR/pki"
  mkdir -p "$pki"
  (
    cd "$pki"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=e2e-control-plane-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key \
      -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=e2e-admin" -keyout admin.key \
      -out admin.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
      -extfile admin.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

start_etcd() {
  # shellcheck disable=SC1090
  . "$state"
  "$bin/etcd" --name e2e --data-dir "$E2E_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync=true --log-level=warn >>"$E2E_DIR/etcd.log" 2>&1 &
  echo "$!" >"$E2E_DIR/etcd.pid"
  echo "$!" >>"$E2E_DIR/pids"
}

# The default admission plugins stay on (NamespaceLifecycle, ServiceAccount, Priority,
# DefaultTolerationSeconds, PodSecurity, the webhooks, ...): no --enable/--disable-admission-plugins.
start_apiserver() {
  # shellcheck disable=SC1090
  . "$state"
  local pki="$E2E_DIR/pki"
  "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode Node,RBAC \
    --allow-privileged=true \
    --endpoint-reconciler-type none \
    --cert-dir "$E2E_DIR/apiserver-certs" \
    >>"$E2E_DIR/kube-apiserver.log" 2>&1 &
  echo "$!" >"$E2E_DIR/kube-apiserver.pid"
  echo "$!" >>"$E2E_DIR/pids"
}

wait_ready() {
  # shellcheck disable=SC1090
  . "$state"
  local pki="$E2E_DIR/pki" deadline=$((SECONDS + 120))
  until curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$E2E_DIR/kube-apiserver.pid")" 2>/dev/null; then
      tail -n 30 "$E2E_DIR/kube-apiserver.log" >&2
      die "kube-apiserver exited; its log is $E2E_DIR/kube-apiserver.log"
    fi
    [ $SECONDS -lt $deadline ] || die "kube-apiserver not ready after 120 s; see $E2E_DIR/kube-apiserver.log"
    sleep 0.5
  done
}

write_kubeconfig() {
  # shellcheck disable=SC1090
  . "$state"
  local pki="$E2E_DIR/pki"
  cat >"$E2E_DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster:
      server: https://127.0.0.1:$APISERVER_PORT
      certificate-authority: $pki/ca.crt
users:
  - name: e2e-admin
    user:
      client-certificate: $pki/admin.crt
      client-key: $pki/admin.key
contexts:
  - name: e2e
    context: { cluster: e2e, user: e2e-admin }
current-context: e2e
EOF
}

# Stops a recorded process, but only one of this control plane's: every process it or a test
# starts names E2E_DIR in its command line, and a recorded pid may since belong to another.
stop_pid() {
  local pid=$1 waited=0
  kill -0 "$pid" 2>/dev/null || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$E2E_DIR" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ $waited -lt 100 ]; do sleep 0.1; waited=$((waited + 1)); done
  kill -KILL "$pid" 2>/dev/null || true
}

case "${1:-}" in
  up)
    [ ! -s "$E2E_DIR/pids" ] || "$0" down
    rm -rf "$E2E_DIR"
    mkdir -p "$E2E_DIR"
    make_pki
    cat >"$state" <<EOF
ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
APISERVER_PORT=$(free_port)
EOF
    start_ms=$(($(date +%s%N) / 1000000))
    start_etcd
    start_apiserver
    wait_ready
    write_kubeconfig
    echo "control plane $version ready in $(($(date +%s%N) / 1000000 - start_ms)) ms: KUBECONFIG=$E2E_DIR/kubeconfig" >&2
    ;;
  env)
    [ -s "$state" ] || die "no control plane in $E2E_DIR: run '$0 up' first"
    printf 'export E2E_DIR=%q KUBECONFIG=%q E2E_KUBE_VERSION=%q PATH=%q\n' \
      "$E2E_DIR" "$E2E_DIR/kubeconfig" "$version" "$bin:$PATH"
    ;;
  restart-apiserver)
    [ -s "$state" ] || die "no control plane in $E2E_DIR"
    stop_pid "$(cat "$E2E_DIR/kube-apiserver.pid")"
    start_apiserver
    wait_ready
    ;;
  stop-apiserver)
    [ -s "$state" ] || die "no control plane in $E2E_DIR"
    stop_pid "$(cat "$E2E_DIR/kube-apiserver.pid")"
    ;;
  start-apiserver)
    [ -s "$state" ] || die "no control plane in $E2E_DIR"
    start_apiserver
    wait_ready
    ;;
  down)
    if [ -s "$E2E_DIR/pids" ]; then
      tac "$E2E_DIR/pids" | while read -r pid; do stop_pid "$pid"; done
      : >"$E2E_DIR/pids"
    fi
    rm -rf "$E2E_DIR/etcd"
    ;;
  *)
    echo "usage: $0 up|env|restart-apiserver|stop-apiserver|start-apiserver|down" >&2
    exit 2
    ;;
esac
