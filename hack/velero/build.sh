#!/usr/bin/env bash
# Builds Velero's `velero` binary (node-agent is `velero node-agent server`) from its Go module,
# for the end-to-end suite with the real node-agent (tests/e2e_velero) and the config judge
# (hack/velero/judge.sh), into _out/velero/<version>/bin/velero (git-ignored).
#
#   hack/velero/build.sh              # v1.18.3 (hack/velero/v1.18/go.mod)
#   hack/velero/build.sh v1.17.2      # the version pinned in hack/velero/v1.17/go.mod
#   hack/velero/build.sh crds v1.18.3 # prints the module's CRD directories (config/crd/*/bases)
#                                     # and the CSI snapshot CRD files of its external-snapshotter
#   hack/velero/build.sh version      # prints every pinned version, one a line
#
# One tools module per Velero minor (hack/velero/v1.MINOR), each pinning one patch release and
# copying the replaces that Velero's own go.mod has (its kopia fork) plus the few this
# workplace's module proxy needs (see the go.mod comments). A build is skipped when the module's
# go.mod and go.sum are unchanged since the last one (the stamp file holds their hash); the Go
# build cache keeps a rebuild incremental. Prints the binary's path on stdout, the rest on stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../lib/module-stamp.sh
. "$root/hack/lib/module-stamp.sh"

die() { echo "hack/velero/build.sh: $*" >&2; exit 2; }

# The require line of Velero itself, in or out of a require block (tidy marks it indirect).
pinned_in() {
  awk '$1 == "github.com/vmware-tanzu/velero" { print $2 } $1 == "require" && $2 == "github.com/vmware-tanzu/velero" { print $3 }' "$1/go.mod" | head -n1
}

if [ "${1:-}" = version ]; then
  for module in "$here"/v1.*/; do pinned_in "$module"; done | sort -V
  exit 0
fi

mode=build
if [ "${1:-}" = crds ]; then mode=crds; shift; fi
version=${1:-${VELERO_VERSION:-v1.18.3}}
case "$version" in v*) ;; *) version="v$version" ;; esac
[[ "$version" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "VERSION must be v1.MINOR.PATCH, got '$version'"
module="$here/v1.${BASH_REMATCH[1]}"
[ -f "$module/go.mod" ] || die "no tools module for Velero v1.${BASH_REMATCH[1]} (have: $(cd "$here" && ls -d v1.* | tr '\n' ' '))"
pinned=$(pinned_in "$module")
[ "$pinned" = "$version" ] ||
  die "hack/velero/v1.${BASH_REMATCH[1]}/go.mod pins $pinned, not $version: edit its require (and its kopia replace, from that release's go.mod) and run 'go mod tidy' there"

module_dir() { (cd "$module" && go mod download -json "$1" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p'); }
if [ "$mode" = crds ]; then
  dir=$(module_dir "github.com/vmware-tanzu/velero@$version")
  [ -d "$dir/config/crd/v1/bases" ] || die "no config/crd/v1/bases in $dir"
  echo "$dir/config/crd/v1/bases"
  echo "$dir/config/crd/v2alpha1/bases"
  # The CSI snapshot CRDs (DataUpload needs VolumeSnapshot and VolumeSnapshotContent): from the
  # external-snapshotter client module this Velero version depends on, which ships them.
  snapshotter=$(awk '$1 ~ /^github.com\/kubernetes-csi\/external-snapshotter\/client\/v[0-9]+$/ { print $1 "@" $2 }' "$module/go.mod" | sort -V | tail -n1)
  sdir=$(module_dir "$snapshotter")
  for kind in volumesnapshotclasses volumesnapshotcontents volumesnapshots; do
    [ -f "$sdir/config/crd/snapshot.storage.k8s.io_$kind.yaml" ] || die "no snapshot CRD $kind in $sdir"
    echo "$sdir/config/crd/snapshot.storage.k8s.io_$kind.yaml"
  done
  exit 0
fi

out="$root/_out/velero/$version"
bin="$out/bin/velero"
mkdir -p "$out/bin"
stamp=$(module_stamp "$module")
if built_from "$out/stamp" "$stamp" "$bin"; then
  echo "velero $version is up to date in ${bin#"$root"/}" >&2
  echo "$bin"
  exit 0
fi

echo "building velero $version from its Go module (a cold build takes several minutes)" >&2
start=$(date +%s)
ldflags="-s -w -X github.com/vmware-tanzu/velero/pkg/buildinfo.Version=$version"
ldflags+=" -X github.com/vmware-tanzu/velero/pkg/buildinfo.GitTreeState=clean"
(cd "$module" && nice go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" github.com/vmware-tanzu/velero/cmd/velero) >&2
mv "$bin.tmp" "$bin"
echo "$stamp" >"$out/stamp"
echo "built velero $version in $(($(date +%s) - start)) s into ${bin#"$root"/}" >&2
echo "$bin"
