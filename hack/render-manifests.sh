#!/usr/bin/env bash
# Renders every kustomize overlay under manifests/overlays into _out/manifests/<overlay>.yaml.
#
#   bash hack/render-manifests.sh            # all overlays
#   bash hack/render-manifests.sh self-signed cert-manager
#
# Environment: KUBECTL (default kubectl; needs kustomize v5, i.e. kubectl 1.27+),
#              OUT_DIR (default _out/manifests).
# The self-signed overlay needs the files `make certs` writes into certs/; when they are missing
# they are generated first (certs/generate.sh with its defaults).
# _out/manifests/self-signed.yaml contains the serving key: _out/ must stay out of git.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBECTL="${KUBECTL:-kubectl}"
OUT_DIR="${OUT_DIR:-$root/_out/manifests}"

command -v "$KUBECTL" >/dev/null 2>&1 || { echo "render-manifests: $KUBECTL not found" >&2; exit 1; }

if [[ $# -gt 0 ]]; then
	overlays=("$@")
else
	overlays=()
	for dir in "$root"/manifests/overlays/*/; do
		[[ -f "$dir/kustomization.yaml" ]] && overlays+=("$(basename "$dir")")
	done
fi

mkdir -p "$OUT_DIR"
# Rendering everything: drop renders of overlays that no longer exist.
[[ $# -eq 0 ]] && rm -f "$OUT_DIR"/*.yaml
for overlay in "${overlays[@]}"; do
	dir="$root/manifests/overlays/$overlay"
	[[ -f "$dir/kustomization.yaml" ]] || { echo "render-manifests: no overlay '$overlay'" >&2; exit 1; }
	if [[ "$overlay" == "self-signed" ]]; then
		missing=0
		for f in ca.pem serving.pem serving.key; do [[ -s "$root/certs/$f" ]] || missing=1; done
		if [[ $missing == 1 ]]; then
			echo "render-manifests: certs/ has no certificates yet; running certs/generate.sh"
			OUT_DIR="$root/certs" bash "$root/certs/generate.sh"
		fi
	fi
	out="$OUT_DIR/$overlay.yaml"
	(umask 077 && "$KUBECTL" kustomize "$dir" >"$out.tmp")
	mv -f "$out.tmp" "$out"
	echo "render-manifests: $overlay -> ${out#"$root"/} ($(grep -c '^kind: ' "$out") objects)"
done
