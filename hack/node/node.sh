#!/usr/bin/env bash
# A real Kubernetes node on this machine, in namespaces of its own so that the machine's settings
# never change: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (runc,
# CNI bridge) and kubelet, with kube-proxy in nftables mode, all in one network namespace and one
# mount namespace that the node owns. See docs/real-node.md for the design.
#
#   hack/node/node.sh up           # build if needed, start everything, wait for the Node to be Ready
#   NODES=2 hack/node/node.sh up   # the same with a second node, naw-node-1 (its own containerd,
#                                  # kubelet, pod bridge and mount namespace; the same network one)
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
# A second node (NODES=2) is a machine of its own as far as its kubelet and containerd can tell: a
# mount namespace made inside the first one, with its own /run, /var/lib and /var/log, so both use
# the default paths (/var/lib/kubelet, the device-plugin socket, /var/log/pods, containerd's socket)
# without meeting; it shares the network namespace, where its pod bridge sits beside the first one's
# and one kube-proxy serves both (a host-network DaemonSet would see the same tables).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

NODE_DIR=${NODE_DIR:-$root/_out/node/run}
CGROUP=naw-node
# Node N is naw-node-N; node 0 also runs the control plane.
NODES=${NODES:-1}
NODE_NAME=naw-node-0
# Node N's address is 10.89.0.(N+1) (on the namespace's loopback: this kernel has no dummy
# interface), its pods are in 10.88.N.0/24 on its own CNI bridge; the Service range's first address
# is the `kubernetes` Service.
node_ip() { echo "10.89.0.$(($1 + 1))"; }
NODE_IP=$(node_ip 0)
CLUSTER_CIDR=10.88.0.0/16
SERVICE_CIDR=10.96.0.0/24
SERVICE_IP=10.96.0.1
CONTROLLERS=(blkio cpu cpuacct cpuset devices freezer memory pids systemd)
# Where cgroups of that name may appear: runc also uses the cgroup v2 hierarchy of a hybrid mount.
HIERARCHIES=("${CONTROLLERS[@]}" unified)

die() { echo "node.sh: $*" >&2; exit 1; }

# in_node CMD...: CMD in the node's mount and network namespaces.
in_node() { nsenter --mount="$NODE_DIR/ns/mnt" --net="$NODE_DIR/ns/net" --wd="$PWD" -- "$@"; }

# in_node_n N CMD...: CMD in node N's namespaces (node N>0's mount namespace file is a mount inside
# node 0's only, hence the second nsenter).
in_node_n() {
  local n=$1
  shift
  if [ "$n" = 0 ]; then in_node "$@"; else in_node nsenter --mount="$NODE_DIR/ns/mnt-$n" -- "$@"; fi
}

# The number of nodes the running node set has (written by `up`).
node_count() { cat "$NODE_DIR/nodes" 2>/dev/null || echo 1; }

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

# start_on N NAME CMD...: start, in node N's namespaces.
start_on() {
  local n=$1
  shift
  if [ "$n" = 0 ]; then start "$@"; else start "$1" nsenter --mount="$NODE_DIR/ns/mnt-$n" -- "${@:2}"; fi
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
    local n
    for ((n = 0; n < NODES; n++)); do
      cert "kubelet-$n" "/O=system:nodes/CN=system:node:naw-node-$n" "extendedKeyUsage=clientAuth"
    done
    cert kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
    cert kube-controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
    cert kube-scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  local who n kubelets=()
  for ((n = 0; n < NODES; n++)); do kubelets+=("kubelet-$n"); done
  for who in admin "${kubelets[@]}" kube-proxy kube-controller-manager kube-scheduler; do
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

# new_mount_namespace FILE [CMD...]: a private mount namespace, kept by a bind mount on FILE, made
# by unshare run under CMD (nsenter into the namespace FILE goes in). Every node's is made on one
# CPU: the kernel binds a mount namespace's file only inside a namespace with a smaller id (the loop
# check, mnt_ns_loop in fs/namespace.c), and these ids grow per CPU, not machine-wide (Linux 6.18
# hands them out in per-CPU batches: one made on CPU 0 just after one on CPU 1 can have the smaller
# id, and binding node 1's inside node 0's then fails with EINVAL). On one CPU, a later namespace
# always has the larger id.
new_mount_namespace() {
  local file=$1 cpu
  shift
  cpu=$(python3 -c 'import os; print(min(os.sched_getaffinity(0)))')
  "$@" taskset -c "$cpu" unshare --mount="$file" --propagation private true
}

# The namespaces: created as bind mounts of nsfs on files of ours (the root mount is private, so
# nothing propagates either way), then furnished from inside.
make_namespaces() {
  mkdir -p "$NODE_DIR/ns" "$NODE_DIR/var/lib/kubelet" "$NODE_DIR/var/log" "$NODE_DIR/sysctl"
  touch "$NODE_DIR/ns/net" "$NODE_DIR/ns/mnt"
  unshare --net="$NODE_DIR/ns/net" true
  new_mount_namespace "$NODE_DIR/ns/mnt"

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

  local n node_ips=()
  for ((n = 0; n < NODES; n++)); do node_ips+=("$(node_ip "$n")"); done
  nsenter --net="$NODE_DIR/ns/net" -- bash -euc '
    ip link set lo up
    for ip in $3; do ip addr add "$ip/32" dev lo; done
    # The Service range must be routable for the node'"'"'s own processes (the API server calling a
    # webhook Service) to reach the output hook, where kube-proxy translates it to an endpoint; via
    # lo, an address nothing translates goes nowhere. The namespace has no route out.
    ip route add "$2" dev lo
    # Routing between the pods and the node: per network namespace, the machine keeps its own.
    echo 1 >/proc/sys/net/ipv4/ip_forward' node-net "$NODE_IP" "$SERVICE_CIDR" "${node_ips[*]}"
  for ((n = 1; n < NODES; n++)); do make_node_namespace "$n"; done
}

# make_node_namespace N (N>0): node N's mount namespace, made inside node 0's (so that only node 0's
# namespace files are mounts in the machine's namespace); private, so nothing either node mounts
# reaches the other.
make_node_namespace() {
  local n=$1
  mkdir -p "$NODE_DIR/node-$n/var/lib/kubelet" "$NODE_DIR/node-$n/var/log"
  touch "$NODE_DIR/ns/mnt-$n"
  new_mount_namespace "$NODE_DIR/ns/mnt-$n" in_node
  # shellcheck disable=SC2016
  in_node nsenter --mount="$NODE_DIR/ns/mnt-$n" -- bash -euc '
    mount -t tmpfs -o mode=0755 "naw-node-$2-run" /run
    mount --bind "$1/var/lib" /var/lib
    mount --bind "$1/var/log" /var/log
    mount --bind /var/lib/kubelet /var/lib/kubelet
    mount --make-rshared /var/lib/kubelet' node-mounts "$NODE_DIR/node-$n" "$n"
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
  # Node N>0's kubelet cgroupRoot, below node 0's (one tree for `down` to empty).
  local n
  for ((n = 1; n < NODES; n++)); do
    for controller in "${CONTROLLERS[@]}"; do
      mkdir -p "/sys/fs/cgroup/$controller/$CGROUP/node-$n"
    done
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$CGROUP/node-$n/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$CGROUP/node-$n/cpuset.mems"
  done
}

# The kubelet's cgroupRoot for node N.
cgroup_root() { if [ "$1" = 0 ]; then echo "/$CGROUP"; else echo "/$CGROUP/node-$1"; fi; }

# node_configs N: node N's containerd, CNI and kubelet configurations. Node N>0's containerd and
# kubelet see the same paths as node 0's, in a mount namespace of their own.
node_configs() {
  local n=$1
  mkdir -p "$NODE_DIR/cni-$n"
  cat >"$NODE_DIR/etc/containerd-$n.toml" <<EOF
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
    conf_dir = "$NODE_DIR/cni-$n"
EOF
  # The pod network: a bridge in the node's namespace with the pod range; no masquerade (traffic
  # never leaves the machine: the namespace has no route out).
  cat >"$NODE_DIR/cni-$n/10-naw-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "naw-node-$n",
  "plugins": [
    {
      "type": "bridge", "bridge": "naw-cni$n", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.88.$n.0/24" }]], "routes": [{ "dst": "0.0.0.0/0" }] }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
  cat >"$NODE_DIR/etc/kubelet-$n.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 is all this machine has (a hybrid mount); v1.37 refuses it unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $(cgroup_root "$n")
failSwapOn: false
# Read the kernel settings, never write them (the values it wants are bound in the mount namespace).
protectKernelDefaults: true
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $NODE_DIR/pki/ca.crt }
authorization: { mode: Webhook }
address: $(node_ip "$n")
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $((10248 + 100 * n))
clusterDomain: cluster.local
resolvConf: $NODE_DIR/etc/resolv.conf
# The machine's disk is shared and often over 85 % full: neither evict nor collect our images.
evictionHard: { memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%" }
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# A pod's Secret and ConfigMap volumes are rewritten when its worker resyncs: every syncFrequency
# plus up to half of it (pkg/kubelet/pod_workers.go:1531 at v1.37.2), 60-90 s by default. 10 s
# keeps the certificate rotation tests at 10-15 s of waiting instead of 60-90; the server's
# reload does not depend on how long the kubelet takes.
syncFrequency: 10s
EOF
}

write_configs() {
  mkdir -p "$NODE_DIR/etc" "$NODE_DIR/log"
  local n
  for ((n = 0; n < NODES; n++)); do node_configs "$n"; done
  : >"$NODE_DIR/etc/resolv.conf"
  cat >"$NODE_DIR/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: { kubeconfig: $NODE_DIR/kube-proxy.kubeconfig }
hostnameOverride: $NODE_NAME
clusterCIDR: $CLUSTER_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# No conntrack sysctl is written (nf_conntrack_max and the hash size are machine-wide).
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s }
EOF
}

# import_archives ARCHIVE...: into the image store the kubelets' pods use, on every node.
import_archives() {
  local n archive
  for ((n = 0; n < $(node_count); n++)); do
    for archive in "$@"; do
      in_node_n "$n" "$root/_out/node/bin/ctr" --address /run/containerd/containerd.sock -n k8s.io \
        images import --no-unpack=false "$(realpath "$archive")"
    done
  done
}

import_images() {
  local image archives=()
  for image in pause probe webhook-double; do
    "$here/image.sh" "naw.local/$image:1" "$bin/$image" "$NODE_DIR/$image.tar"
    archives+=("$NODE_DIR/$image.tar")
  done
  import_archives "${archives[@]}" >/dev/null
}

apiserver_ready() {
  in_node curl -fsS --cacert "$NODE_DIR/pki/ca.crt" --cert "$NODE_DIR/pki/admin.crt" --key "$NODE_DIR/pki/admin.key" \
    "https://$NODE_IP:6443/readyz"
}

node_ready() {
  [ "$(in_node "$cp_bin/kubectl" --kubeconfig "$NODE_DIR/admin.kubeconfig" get node "$1" \
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
  local n
  for ((n = 0; n < NODES; n++)); do
    start_on "$n" "containerd-$n" "$bin/containerd" --config "$NODE_DIR/etc/containerd-$n.toml"
  done
  start kube-apiserver "$cp_bin/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
    --bind-address 0.0.0.0 --advertise-address "$NODE_IP" --secure-port 6443 \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt" \
    --kubelet-preferred-address-types InternalIP --kubelet-client-certificate "$pki/admin.crt" --kubelet-client-key "$pki/admin.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC --allow-privileged=true \
    --cert-dir "$NODE_DIR/apiserver-certs"
  for ((n = 0; n < NODES; n++)); do
    wait_for "containerd-$n" 30 in_node_n "$n" "$bin/ctr" --address /run/containerd/containerd.sock version
  done
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
  for ((n = 0; n < NODES; n++)); do
    start_on "$n" "kubelet-$n" "$bin/kubelet" --config "$NODE_DIR/etc/kubelet-$n.yaml" \
      --kubeconfig "$NODE_DIR/kubelet-$n.kubeconfig" --node-ip "$(node_ip "$n")" --hostname-override "naw-node-$n" --v=2
  done
  start kube-proxy "$bin/kube-proxy" --config "$NODE_DIR/etc/kube-proxy.yaml" --v=2
  for ((n = 0; n < NODES; n++)); do wait_for "node naw-node-$n" 120 node_ready "naw-node-$n"; done
  # Pods need their namespace's ServiceAccount and the CA ConfigMap their token volume projects,
  # both made by kube-controller-manager.
  wait_for "the default ServiceAccount" 60 in_node "$cp_bin/kubectl" --kubeconfig "$NODE_DIR/admin.kubeconfig" \
    get serviceaccount/default configmap/kube-root-ca.crt
  echo "nodes naw-node-0..$((NODES - 1)) ready in $(($(date +%s%N) / 1000000 - start_ms)) ms: hack/node/node.sh exec kubectl ..." >&2
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
    [[ $NODES =~ ^[1-9]$ ]] || die "NODES must be a number of nodes from 1 to 9, not '$NODES'"
    "$0" down
    mkdir -p "$NODE_DIR/log"
    echo "$NODES" >"$NODE_DIR/nodes"
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
    import_archives "$@"
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
