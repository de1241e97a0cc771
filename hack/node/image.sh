#!/usr/bin/env bash
# Makes a one-layer OCI image archive from one static binary, so that the node's sandbox (pause)
# and test workloads (probe) are made here and nothing is pulled:
#
#   hack/node/image.sh NAME BINARY OUT.tar    # NAME like naw.local/pause:1; BINARY goes to /NAME's
#                                             # repository basename and is the entrypoint
#
# The archive is reproducible (sorted entries, fixed times and owners) and is what
# `ctr -n k8s.io images import` reads: an OCI layout whose index names the image.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 NAME BINARY OUT.tar" >&2; exit 2; }
name=$1 binary=$2 out=$3
repo=${name%:*}
prog=${repo##*/}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# blob FILE: moves FILE into the layout's blobs and prints its digest (hex).
blob() {
  local digest
  digest=$(sha "$1")
  mv "$1" "$work/layout/blobs/sha256/$digest"
  echo "$digest"
}

mkdir -p "$work/rootfs" "$work/layout/blobs/sha256"
install -m 0755 "$binary" "$work/rootfs/$prog"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/layer.tar" "$prog"
layer_size=$(size "$work/layer.tar")
layer=$(blob "$work/layer.tar")

jq -cn --arg prog "/$prog" --arg diff "sha256:$layer" '{
  architecture: "amd64", os: "linux",
  config: { Entrypoint: [$prog], User: "65535:65535" },
  rootfs: { type: "layers", diff_ids: [$diff] },
  history: [{ created_by: "hack/node/image.sh" }]
}' >"$work/config.json"
config_size=$(size "$work/config.json")
config=$(blob "$work/config.json")

jq -cn --arg config "sha256:$config" --argjson config_size "$config_size" \
  --arg layer "sha256:$layer" --argjson layer_size "$layer_size" '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: $config, size: $config_size },
  layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $layer, size: $layer_size }]
}' >"$work/manifest.json"
manifest_size=$(size "$work/manifest.json")
manifest=$(blob "$work/manifest.json")

jq -cn --arg name "$name" --arg manifest "sha256:$manifest" --argjson size "$manifest_size" '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [{
    mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $manifest, size: $size,
    platform: { architecture: "amd64", os: "linux" },
    annotations: { "io.containerd.image.name": $name, "org.opencontainers.image.ref.name": ($name | split(":") | last) }
  }]
}' >"$work/layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/layout" -cf "$out" .
