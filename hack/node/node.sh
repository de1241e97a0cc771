#!/usr/bin/env bash
# A real Kubernetes node on this machine, in namespaces of its own so that the machine's settings
# never change: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (runc,
# CNI bridge) and kubelet, with kube-proxy in nftables mode, all in one network namespace and one
# mount namespace that the node owns. See docs/real-node.md for the design.
#
#   hack/node/node.sh up           # build if needed, start everything, wait for the Node to be Ready
#   hack/node/node.sh exec CMD...  # CMD in the node's namespaces, with the node's and control plane's
#                                  # binaries on PATH and the admin KUBECONFIG (e.g. exec kubectl get pods)
#   hack/node/node.sh import TAR.. # import OCI image archives for the node's pods (imagePullPolicy: Never)
#   hack/node/node.sh env          # eval "$(… env)": NODE_DIR, KUBECONFIG, PATH
#   hack/node/node.sh down         # kill every process, remove cgroups, namespaces and state
#   hack/node/node.sh check-clean  # exit 1 (saying what is left) unless down left nothing behind
#
# The machine-wide state it touches, all under names of its own and removed by `down`:
#   - cgroups /sys/fs/cgroup/<controller>/naw-node (the kubelet's cgroupRoot; daemons are tracked in
#     pids:/naw-node/daemons, so `down` finds every process, containers and shims included);
#   - two namespace files, $NODE_DIR/ns/{net,mnt} (bind mounts of nsfs; everything else lives
#     inside those namespaces and goes with them: interfaces, routes, nftables tables, mounts).
# Inside the mount namespace /run is a tmpfs, /var/lib and /var/log are the node's own directories,
# and the kernel settings the kubelet checks are regular files holding the values it wants, bound
# over /proc/sys (protectKernelDefaults: true makes the kubelet only read them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

NODE_DIR=${NODE_DIR:-$root/_out/node/run}
CGROUP=naw-node
NODE_NAME=naw-node-0
# The node's address (on the namespace's loopback: this kernel has no dummy interface), the pod
# range on the CNI bridge, and the Service range (its first address is the `kubernetes` Service).
NODE_IP=10.89.0.1
POD_CIDR=10.88.0.0/24
SERVICE_CIDR=10.96.0.0/24
SERVICE_IP=10.96.0.1
CONTROLLERS=(blkio cpu cpuacct cpuset devices freezer memory pids systemd)
# Where cgroups of that name may appear: runc also uses the cgroup v2 hierarchy of a hybrid mount.
HIERARCHIES=("${CONTROLLERS[@]}" unified)

die() { echo "node.sh: $*" >&2; exit 1; }

# in_node CMD...: CMD in the node's mount and network namespaces.
in_node() { nsenter --mount="$NODE_DIR/ns/mnt" --net="$NODE_DIR/ns/net" --wd="$PWD" -- "$@"; }

# start NAME CMD...: a daemon in the node's namespaces and its tracking cgroup, logging to log/NAME.log.
start() {
  local name=$1
  shift
  # Inherited descriptors are closed: a daemon must not hold, say, the flock of the run that
  # started it (a test runner's machine-wide lock) past that run.
  # shellcheck disable=SC2016
  setsid bash -c 'for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -le 2 ] || eval "exec $fd>&-"; done
    echo $$ >"$1/cgroup.procs" && shift && exec nsenter --mount="$1" --net="$2" -- "${@:3}"' \
    start "/sys/fs/cgroup/pids/$CGROUP/daemons" "$NODE_DIR/ns/mnt" "$NODE_DIR/ns/net" "$@" \
    >>"$NODE_DIR/log/$name.log" 2>&1 </dev/null &
}

# wait_for WHAT SECONDS CMD...: retries CMD until it succeeds.
wait_for() {
  local what=$1 seconds=$2 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what not ready after $seconds s; logs in $NODE_DIR/log"
    sleep 0.5
  done
}

make_pki() {
  local pki="$NODE_DIR/pki"
  mkdir -p "$pki"
  (
    cd "$pki"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=naw-node-ca" -keyout ca.key -out ca.crt 2>/dev/null
    # cert NAME SUBJECT EXTENSIONS: a key and a certificate signed by the CA.
    cert() {
      openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    }
    cert apiserver "/CN=kube-apiserver" "subjectAltName=IP:$SERVICE_IP,IP:$NODE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
    cert admin "/O=system:masters/CN=naw-node-admin" "extendedKeyUsage=clientAuth"
    cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "extendedKeyUsage=clientAuth"
    cert kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
    cert kube-controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
    cert kube-scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  local who
  for who in admin kubelet kube-proxy kube-controller-manager kube-scheduler; do
    cat >"$NODE_DIR/$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: naw-node
    cluster: { server: "https://$NODE_IP:6443", certificate-authority: $pki/ca.crt }
users:
  - name: $who
    user: { client-certificate: $pki/$who.crt, client-key: $pki/$who.key }
contexts:
  - name: naw-node
    context: { cluster: naw-node, user: $who }
current-context: naw-node
EOF
  done
}

# The namespaces: created as bind mounts of nsfs on files of ours (the root mount is private, so
# nothing propagates either way), then furnished from inside.
make_namespaces() {
  mkdir -p "$NODE_DIR/ns" "$NODE_DIR/var/lib/kubelet" "$NODE_DIR/var/log" "$NODE_DIR/sysctl"
  touch "$NODE_DIR/ns/net" "$NODE_DIR/ns/mnt"
  unshare --net="$NODE_DIR/ns/net" true
  unshare --mount="$NODE_DIR/ns/mnt" --propagation private true

  local path value files=()
  while read -r path value; do
    echo "$value" >"$NODE_DIR/sysctl/${path//\//.}"
    files+=("$path")
  done < <("$bin/kubelet-tunables")
  # shellcheck disable=SC2016
  nsenter --mount="$NODE_DIR/ns/mnt" -- bash -euc '
    dir=$1
    shift
    mount -t tmpfs -o mode=0755 naw-node-run /run
    mount --bind "$dir/var/lib" /var/lib
    mount --bind "$dir/var/log" /var/log
    # The kubelet mounts pod volumes here and containers may see later mounts (HostToContainer).
    mount --bind /var/lib/kubelet /var/lib/kubelet
    mount --make-rshared /var/lib/kubelet
    for path in "$@"; do
      mount --bind "$dir/sysctl/${path//\//.}" "/proc/sys/$path"
    done' node-mounts "$NODE_DIR" "${files[@]}"

  nsenter --net="$NODE_DIR/ns/net" -- bash -euc '
    ip link set lo up
    ip addr add "$1/32" dev lo
    # The Service range must be routable for the node'"'"'s own processes (the API server calling a
    # webhook Service) to reach the output hook, where kube-proxy translates it to an endpoint; via
    # lo, an address nothing translates goes nowhere. The namespace has no route out.
    ip route add "$2" dev lo
    # Routing between the pods and the node: per network namespace, the machine keeps its own.
    echo 1 >/proc/sys/net/ipv4/ip_forward' node-net "$NODE_IP" "$SERVICE_CIDR"
}

make_cgroups() {
  local controller
  for controller in "${CONTROLLERS[@]}"; do
    mkdir -p "/sys/fs/cgroup/$controller/$CGROUP"
  done
  # A new cpuset has no CPUs nor memory nodes until given its parent's.
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$CGROUP/cpuset.cpus"
  cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$CGROUP/cpuset.mems"
  mkdir -p "/sys/fs/cgroup/pids/$CGROUP/daemons"
}

write_configs() {
  mkdir -p "$NODE_DIR/cni" "$NODE_DIR/etc" "$NODE_DIR/log"
  cat >"$NODE_DIR/etc/containerd.toml" <<EOF
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
imports = []
# Nothing outside the node's directories: no NRI socket in /var/run/nri, no /opt/containerd.
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "naw.local/pause:1"

[plugins."io.containerd.cri.v1.runtime"]
  cdi_spec_dirs = []
  # The machine withholds CAP_SYS_RESOURCE, so an oom_score_adj below containerd's own (the
  # kubelet asks -998 for sandboxes) cannot be set: keep containers at containerd's or above.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
    BinaryName = "$bin/runc"
    SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$root/_out/node/cni"]
    conf_dir = "$NODE_DIR/cni"
EOF
  # The pod network: a bridge in the node's namespace with the pod range; no masquerade (traffic
  # never leaves the machine: the namespace has no route out).
  cat >"$NODE_DIR/cni/10-naw-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "naw-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "naw-cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$POD_CIDR" }]], "routes": [{ "dst": "0.0.0.0/0" }] }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
  cat >"$NODE_DIR/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 is all this machine has (a hybrid mount); v1.37 refuses it unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
failSwapOn: false
# Read the kernel settings, never write them (the values it wants are bound in the mount namespace).
protectKernelDefaults: true
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $NODE_DIR/pki/ca.crt }
authorization: { mode: Webhook }
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
clusterDomain: cluster.local
resolvConf: $NODE_DIR/etc/resolv.conf
# The machine's disk is shared and often over 85 % full: neither evict nor collect our images.
evictionHard: { memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%" }
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  : >"$NODE_DIR/etc/resolv.conf"
  cat >"$NODE_DIR/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: { kubeconfig: $NODE_DIR/kube-proxy.kubeconfig }
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# No conntrack sysctl is written (nf_conntrack_max and the hash size are machine-wide).
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s }
EOF
}

import_images() {
  local image
  for image in pause probe webhook-double; do
    "$here/image.sh" "naw.local/$image:1" "$bin/$image" "$NODE_DIR/$image.tar"
    in_node "$bin/ctr" --address /run/containerd/containerd.sock -n k8s.io images import --no-unpack=false \
      "$NODE_DIR/$image.tar" >/dev/null
  done
}

apiserver_ready() {
  in_node curl -fsS --cacert "$NODE_DIR/pki/ca.crt" --cert "$NODE_DIR/pki/admin.crt" --key "$NODE_DIR/pki/admin.key" \
    "https://$NODE_IP:6443/readyz"
}

node_ready() {
  [ "$(in_node "$cp_bin/kubectl" --kubeconfig "$NODE_DIR/admin.kubeconfig" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

up() {
  local start_ms=$(($(date +%s%N) / 1000000)) pki="$NODE_DIR/pki"
  make_pki
  make_cgroups
  make_namespaces
  write_configs

  start etcd "$cp_bin/etcd" --name naw-node --data-dir "$NODE_DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster naw-node=http://127.0.0.1:2380 --unsafe-no-fsync=true --log-level=warn
  start containerd "$bin/containerd" --config "$NODE_DIR/etc/containerd.toml"
  start kube-apiserver "$cp_bin/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
    --bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port 6443 \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt" \
    --kubelet-preferred-address-types InternalIP --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC --allow-privileged=true \
    --cert-dir "$NODE_DIR/apiserver-certs"
  wait_for containerd 30 in_node "$bin/ctr" --address /run/containerd/containerd.sock version
  import_images
  wait_for kube-apiserver 120 apiserver_ready
  start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$NODE_DIR/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$NODE_DIR/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$NODE_DIR/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key"
  start kube-scheduler "$cp_bin/kube-scheduler" --kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" --bind-address 127.0.0.1 --leader-elect=false
  start kubelet "$bin/kubelet" --config "$NODE_DIR/etc/kubelet.yaml" --kubeconfig "$NODE_DIR/kubelet.kubeconfig" \
    --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --v=2
  start kube-proxy "$bin/kube-proxy" --config "$NODE_DIR/etc/kube-proxy.yaml" --v=2
  wait_for "node $NODE_NAME" 120 node_ready
  # Pods need their namespace's ServiceAccount and the CA ConfigMap their token volume projects,
  # both made by kube-controller-manager.
  wait_for "the default ServiceAccount" 60 in_node "$cp_bin/kubectl" --kubeconfig "$NODE_DIR/admin.kubeconfig" \
    get serviceaccount/default configmap/kube-root-ca.crt
  echo "node $NODE_NAME ready in $(($(date +%s%N) / 1000000 - start_ms)) ms: hack/node/node.sh exec kubectl ..." >&2
}

# Every process of the node, containers and shims included: the tracking cgroup's whole tree.
node_pids() {
  [ -d "/sys/fs/cgroup/pids/$CGROUP" ] || return 0
  find "/sys/fs/cgroup/pids/$CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null
}

# The node's mounts in the machine's mount namespace (there should be none but the two namespace
# files while the node runs).
host_mounts() { awk -v dir="$NODE_DIR" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo; }

down() {
  local pids waited=0 controller mount
  pids=$(node_pids)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    while [ -n "$(node_pids)" ] && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
    # What did not stop in 5 s, and what was forked meanwhile.
    while pids=$(node_pids) && [ -n "$pids" ]; do
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
      sleep 0.1
    done
  fi
  for controller in "${HIERARCHIES[@]}"; do
    [ ! -d "/sys/fs/cgroup/$controller/$CGROUP" ] ||
      find "/sys/fs/cgroup/$controller/$CGROUP" -depth -type d -exec rmdir {} +
  done
  # Deepest first; with its processes gone the mount namespace (and every mount in it) goes with
  # its file, then the network namespace (interfaces, routes, nftables tables) with its own.
  host_mounts | sort -r | while read -r mount; do umount "$mount"; done
  if [ -d "$NODE_DIR" ]; then
    rm -rf "$root/_out/node/last-log"
    [ ! -d "$NODE_DIR/log" ] || mv "$NODE_DIR/log" "$root/_out/node/last-log"
    rm -rf "$NODE_DIR"
  fi
}

check_clean() {
  local left=() controller
  [ -z "$(node_pids)" ] || left+=("processes: $(node_pids | tr '\n' ' ')")
  for controller in "${HIERARCHIES[@]}"; do
    [ ! -e "/sys/fs/cgroup/$controller/$CGROUP" ] || left+=("cgroup $controller:/$CGROUP")
  done
  [ -z "$(host_mounts)" ] || left+=("mounts: $(host_mounts | tr '\n' ' ')")
  [ ! -e "$NODE_DIR" ] || left+=("directory $NODE_DIR")
  [ ${#left[@]} -eq 0 ] || { printf 'node.sh: left behind: %s\n' "${left[@]}" >&2; exit 1; }
}

case "${1:-}" in
  up)
    bin=$("$here/build.sh")
    cp_bin=$("$root/hack/controlplane/build.sh")
    "$0" down
    mkdir -p "$NODE_DIR/log"
    up
    ;;
  exec)
    shift
    [ -e "$NODE_DIR/ns/net" ] || die "no node in $NODE_DIR: run '$0 up' first"
    PATH="$root/_out/node/bin:$("$root/hack/controlplane/build.sh" 2>/dev/null):$PATH" \
      KUBECONFIG=${KUBECONFIG:-$NODE_DIR/admin.kubeconfig} in_node "$@"
    ;;
  import)
    # OCI archives made elsewhere (the webhook's image): into the namespace the kubelet's pods use.
    shift
    [ $# -gt 0 ] || die "usage: $0 import ARCHIVE..."
    [ -e "$NODE_DIR/ns/net" ] || die "no node in $NODE_DIR: run '$0 up' first"
    for archive in "$@"; do
      in_node "$root/_out/node/bin/ctr" --address /run/containerd/containerd.sock -n k8s.io images import \
        "$(realpath "$archive")"
    done
    ;;
  env)
    [ -e "$NODE_DIR/ns/net" ] || die "no node in $NODE_DIR: run '$0 up' first"
    printf 'export NODE_DIR=%q KUBECONFIG=%q NODE_NAME=%q PATH=%q\n' "$NODE_DIR" "$NODE_DIR/admin.kubeconfig" \
      "$NODE_NAME" "$root/_out/node/bin:$("$root/hack/controlplane/build.sh" 2>/dev/null):$PATH"
    ;;
  down) down ;;
  check-clean) check_clean ;;
  *)
    echo "usage: $0 up|exec CMD...|import ARCHIVE...|env|down|check-clean" >&2
    exit 2
    ;;
esac
