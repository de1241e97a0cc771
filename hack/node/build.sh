#!/usr/bin/env bash
# Builds the real node of tests/e2e_node into _out/node/bin (git-ignored), nothing pulled:
#   - from hack/node/runtime: containerd, containerd-shim-runc-v2, ctr (containerd v2), runc (cgo,
#     with libseccomp so that RuntimeDefault seccomp profiles apply), the CNI plugins bridge,
#     host-local, loopback and portmap, and static programs for the locally made images: pause (the
#     sandbox), probe (a pod that calls the API server through its Service) and webhook-double (a
#     test double of an admission webhook, which the API server calls through its Service);
#   - from hack/node/kube: kubelet, kube-proxy and kube-controller-manager, of the same
#     k8s.io/kubernetes release as hack/controlplane's kube-apiserver (checked here), and
#     kubelet-tunables, which prints the kernel settings that kubelet wants (see node.sh).
#
# Each module is rebuilt only when its go.mod/go.sum (or, for the runtime, its own sources) change
# (hack/lib/module-stamp.sh); the Go build cache keeps a rebuild incremental. Prints the bin
# directory on stdout, everything else (with each binary's build time) on stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../lib/module-stamp.sh
. "$root/hack/lib/module-stamp.sh"

bin="$root/_out/node/bin"
cni="$root/_out/node/cni"
mkdir -p "$bin" "$cni"

kube_version() { awk '$1 == "k8s.io/kubernetes" { print $2 } $1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' "$1/go.mod" | head -n1; }
version=$(kube_version "$here/kube")
[ "$version" = "$(kube_version "$root/hack/controlplane")" ] ||
  { echo "hack/node/kube pins k8s.io/kubernetes $version, hack/controlplane $(kube_version "$root/hack/controlplane"): they must agree" >&2; exit 1; }

# timed NAME CMD...: runs CMD and reports how long NAME took.
timed() {
  local name=$1 start
  shift
  start=$(date +%s)
  "$@" >&2
  echo "built $name in $(($(date +%s) - start)) s" >&2
}

runtime_stamp=$( (module_stamp "$here/runtime"; cat "$here"/runtime/*/*.go) | sha256sum | cut -d' ' -f1)
if built_from "$bin/stamp.runtime" "$runtime_stamp" "$bin"/{containerd,containerd-shim-runc-v2,ctr,runc,pause,probe,webhook-double} \
  "$cni"/{bridge,host-local,loopback,portmap}; then
  echo "node runtime is up to date in ${bin#"$root"/}" >&2
else
  echo "building containerd, runc, the CNI plugins, pause and probe (a cold build takes a few minutes)" >&2
  (
    cd "$here/runtime"
    # Static where cgo is not needed (the btrfs snapshotter, which needs cgo, is not used).
    export CGO_ENABLED=0
    for cmd in containerd containerd-shim-runc-v2 ctr; do
      timed "$cmd" go build -trimpath -ldflags "-s -w" -o "$bin/$cmd" "github.com/containerd/containerd/v2/cmd/$cmd"
    done
    for plugin in main/bridge main/loopback ipam/host-local meta/portmap; do
      timed "${plugin#*/}" go build -trimpath -ldflags "-s -w" -o "$cni/${plugin#*/}" "github.com/containernetworking/plugins/plugins/$plugin"
    done
    timed pause go build -trimpath -ldflags "-s -w" -o "$bin/pause" ./pause
    timed probe go build -trimpath -ldflags "-s -w" -o "$bin/probe" ./probe
    timed webhook-double go build -trimpath -ldflags "-s -w" -o "$bin/webhook-double" ./webhook-double
    # runc's nsenter is C (cgo), and seccomp needs libseccomp (Debian: libseccomp-dev).
    CGO_ENABLED=1 timed runc go build -trimpath -tags seccomp -ldflags "-s -w" -o "$bin/runc" github.com/opencontainers/runc
  )
  echo "$runtime_stamp" >"$bin/stamp.runtime"
fi

kube_stamp=$( (module_stamp "$here/kube"; cat "$here"/kube/*/*.go) | sha256sum | cut -d' ' -f1)
minor=${version#v1.}
minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$version"
ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
if built_from "$bin/stamp.kube" "$kube_stamp" "$bin"/{kubelet,kube-proxy,kube-controller-manager,kubelet-tunables}; then
  echo "kubelet, kube-proxy and kube-controller-manager $version are up to date" >&2
else
  echo "building kubelet, kube-proxy and kube-controller-manager $version" >&2
  (
    cd "$here/kube"
    for cmd in kubelet kube-proxy kube-controller-manager; do
      timed "$cmd" go build -trimpath -ldflags "$ldflags" -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
    done
    timed kubelet-tunables go build -trimpath -ldflags "-s -w" -o "$bin/kubelet-tunables" ./tunables
  )
  echo "$kube_stamp" >"$bin/stamp.kube"
fi
echo "$bin"
