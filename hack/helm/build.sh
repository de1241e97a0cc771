#!/usr/bin/env bash
# Builds helm from its Go module (hack/helm/go.mod, `tool helm.sh/helm/v3/cmd/helm`) into
# _out/tools/helm/bin/helm (git-ignored) and prints its path on stdout's last line.
#
#   hack/helm/build.sh            # builds only when go.mod/go.sum changed since the last build
#   HELM_REBUILD=1 hack/helm/build.sh
#
# The build is skipped when the binary exists and the stamp file next to it holds the sha256 of
# go.mod + go.sum it was built from. helm's own Makefile ldflags are reproduced: the version, and
# the Kubernetes version `helm template`/`helm lint` assume without a cluster (client-go 0.N ->
# 1.N), so .Capabilities.KubeVersion is that of the k8s.io modules helm was built with.
#
# Environment:
#   GO               the go command (default go)
#   HELM_OUT         install prefix (default _out/tools/helm); the binary is $HELM_OUT/bin/helm
#   HELM_BUILD_JOBS  go build -p (default: all cores); the build runs under `nice`
#   HELM_REBUILD=1   build even when the stamp matches
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${here%/hack/helm}"
# shellcheck source=../lib/module-stamp.sh
. "$root/hack/lib/module-stamp.sh"
mod="$root/hack/helm"
GO="${GO:-go}"
HELM_OUT="${HELM_OUT:-$root/_out/tools/helm}"
bin="$HELM_OUT/bin/helm"
stamp="$HELM_OUT/stamp"

command -v "$GO" >/dev/null 2>&1 || { echo "helm/build: $GO not found (Go 1.24+ is needed)" >&2; exit 1; }

want="$(module_stamp "$mod")"
if [[ "${HELM_REBUILD:-0}" != 1 ]] && built_from "$stamp" "$want" "$bin"; then
	echo "helm/build: up to date ($("$bin" version --short 2>/dev/null || echo '?'), go.mod/go.sum sha256 ${want:0:12})" >&2
	echo "$bin"
	exit 0
fi

# Versions from the module graph itself, so bumping helm in go.mod is the only edit needed.
helm_version="$(cd "$mod" && GOFLAGS=-mod=readonly "$GO" list -m -f '{{.Version}}' helm.sh/helm/v3)"
client_go="$(cd "$mod" && GOFLAGS=-mod=readonly "$GO" list -m -f '{{.Version}}' k8s.io/client-go)" # v0.37.0
IFS=. read -r cg_major cg_minor _ <<<"${client_go#v}"
k8s_major=$((cg_major + 1))
k8s_minor="$cg_minor"

ldflags="-s -w"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v3/internal/version.metadata="
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
	ldflags+=" -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
done

jobs="${HELM_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
echo "helm/build: building helm $helm_version (k8s.io modules $client_go, Kubernetes $k8s_major.$k8s_minor capabilities) with $("$GO" env GOVERSION), -p $jobs" >&2
mkdir -p "$HELM_OUT/bin"
start=$(date +%s)
(
	cd "$mod"
	# -mod=readonly: the build never rewrites go.mod/go.sum; CGO off: a static binary, like helm's
	# release builds.
	CGO_ENABLED=0 GOFLAGS=-mod=readonly nice -n 10 "$GO" build -p "$jobs" -trimpath \
		-ldflags "$ldflags" -o "$bin.tmp" helm.sh/helm/v3/cmd/helm
)
mv -f "$bin.tmp" "$bin"
echo "$want" >"$stamp"
end=$(date +%s)
echo "helm/build: built $("$bin" version --short) in $((end - start)) s -> ${bin#"$root"/} ($(stat -c %s "$bin") bytes)" >&2
echo "$bin"
