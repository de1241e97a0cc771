#!/usr/bin/env bash
# Builds the real control plane the end-to-end tests run: kube-apiserver, etcd, kube-scheduler
# and a matching kubectl, from their Go modules, into _out/controlplane/<version>/bin (git-ignored).
#
#   hack/controlplane/build.sh              # the version pinned in hack/controlplane/go.mod
#   KUBE_VERSION=v1.34.4 hack/controlplane/build.sh   # another release, in a generated module
#
# A build is skipped when the module's go.mod and go.sum are unchanged since the last one (the
# stamp file holds their hash); the Go build cache keeps a rebuild incremental. Prints the bin
# directory on stdout, everything else on stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../lib/module-stamp.sh
. "$root/hack/lib/module-stamp.sh"

pinned=$(awk '$1 == "k8s.io/kubernetes" { print $2 } $1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' "$here/go.mod" | head -n1)
version=${KUBE_VERSION:-$pinned}
case "$version" in v*) ;; *) version="v$version" ;; esac
[[ "$version" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "KUBE_VERSION must be v1.MINOR.PATCH, got '$version'" >&2; exit 2; }
minor=${BASH_REMATCH[1]}
out="$root/_out/controlplane/$version"
bin="$out/bin"
mkdir -p "$bin"

if [ "$version" = "$pinned" ]; then
  module="$here"
else
  # Another release: generate a module like ours for it. k8s.io/kubernetes replaces its staging
  # modules by ./staging paths, which do not apply to a dependent module, so every one of them is
  # replaced here by its published v0.MINOR.PATCH (the set differs between minors: read it from
  # that release's own go.mod).
  module="$out/module"
  mkdir -p "$module"
  (cd "$module" && [ -f go.mod ] || go mod init node-agent-webhook/controlplane-"$version" >/dev/null 2>&1)
  upstream_mod=$(cd "$module" && go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
  staging_version="v0.${version#v1.}"
  {
    echo "module node-agent-webhook/controlplane-$version"
    echo
    echo "go $(awk '$1 == "go" { print $2; exit }' "$here/go.mod")"
    echo
    echo "tool ("
    awk '/^tool \(/ { inside = 1; next } inside && /^\)/ { exit } inside { print }' "$here/go.mod"
    echo ")"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "replace ("
    awk '$2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s '"$staging_version"'\n", $1, $1 }' "$upstream_mod"
    echo ")"
  } >"$module/go.mod.want"
  if ! cmp -s "$module/go.mod.want" "$module/go.mod.generated" 2>/dev/null; then
    cp "$module/go.mod.want" "$module/go.mod"
    cp "$module/go.mod.want" "$module/go.mod.generated"
    rm -f "$module/go.sum"
    echo "generating the tools module for $version" >&2
    (cd "$module" && go mod tidy >&2)
  fi
fi

stamp=$(module_stamp "$module")
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$version"
ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

if built_from "$out/stamp" "$stamp" "$bin/kube-apiserver" "$bin/etcd" "$bin/kubectl"; then
  echo "control plane $version is up to date in ${bin#"$root"/}" >&2
else
  echo "building kube-apiserver, etcd and kubectl $version (a cold build takes several minutes)" >&2
  start=$(date +%s)
  (
    cd "$module"
    go build -trimpath -ldflags "$ldflags" -o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
    go build -trimpath -ldflags "$ldflags" -o "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl
    # The root of go.etcd.io/etcd/server/v3 is etcd's main package.
    go build -trimpath -o "$bin/etcd" go.etcd.io/etcd/server/v3
  ) >&2
  echo "$stamp" >"$out/stamp"
  echo "built control plane $version in $(($(date +%s) - start)) s into ${bin#"$root"/}" >&2
fi

# kube-scheduler, for the e2e tests where the real scheduler judges placement: from the same
# k8s.io/kubernetes module, with a stamp of its own so that adding it rebuilds nothing else.
if built_from "$out/stamp.kube-scheduler" "$stamp" "$bin/kube-scheduler"; then
  echo "kube-scheduler $version is up to date" >&2
else
  echo "building kube-scheduler $version" >&2
  start=$(date +%s)
  (cd "$module" && go build -trimpath -ldflags "$ldflags" -o "$bin/kube-scheduler" k8s.io/kubernetes/cmd/kube-scheduler) >&2
  echo "$stamp" >"$out/stamp.kube-scheduler"
  echo "built kube-scheduler $version in $(($(date +%s) - start)) s" >&2
fi
echo "$bin"
