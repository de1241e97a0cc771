#!/usr/bin/env bash
# The container image without Docker: builds the release binary as the Dockerfile's build stage
# does, assembles the image its final stage describes as an OCI image layout archive
# (hack/image/oci.py), and reads it back with go-containerregistry's layout reader and
# containerd's importer (hack/image/check; no daemon). Prints the archive's path and the image's
# manifest digest.
#
#   hack/image/build.sh                          # make image
#   ctr -n k8s.io images import _out/image/node-agent-webhook.oci.tar
#
# The archive is the same bytes for the same commit, binary and arguments: every time in it is
# SOURCE_DATE_EPOCH (the commit's time), BUILD_DATE is that time too, not the clock's.
#
# Environment:
#   PGO=0              the release build without its profile (hack/pgo/build.sh)
#   BINARY             a prebuilt binary to package instead of the release build (the tests
#                      pass the debug one, stripped)
#   OUT_DIR            where the archive goes (default _out/image)
#   IMG                the image reference index.json names (default node-agent-webhook:latest)
#   VERSION, VCS_REF, BUILD_DATE, SOURCE_URL
#                      the Dockerfile's ARGs, as `make docker-build` passes them (defaults: the
#                      crate's version, `git rev-parse HEAD`, SOURCE_DATE_EPOCH; SOURCE_URL unset
#                      keeps the Dockerfile's default)
#   SOURCE_DATE_EPOCH  every mtime and the created time (default: the last commit's time)
#   VALIDATE=0         skip the checks with go-containerregistry and containerd (they need Go;
#                      the tests set it)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${here%/hack/image}"
cd "$root"

CARGO="${CARGO:-cargo}"
OUT_DIR="${OUT_DIR:-$root/_out/image}"
IMG="${IMG:-node-agent-webhook:latest}"
archive="$OUT_DIR/node-agent-webhook.oci.tar"

if [[ -z "${BINARY:-}" ]]; then
	# The Dockerfile's builder is rust:${RUST_VERSION}-bookworm; a different toolchain here
	# makes a different binary, so say so (it still builds).
	want_rust="$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)"
	have_rust="$(rustc --version | cut -d' ' -f2)"
	[[ "$have_rust" == "$want_rust" || "$have_rust" == "$want_rust".* ]] ||
		echo "image/build: warning: rustc $have_rust here, the Dockerfile builds with $want_rust" >&2
	echo "image/build: release build (as the Dockerfile's build stage; PGO=0 without a profile)" >&2
	CARGO_PROFILE_RELEASE_STRIP=symbols nice -n 10 hack/pgo/build.sh
	BINARY="$root/target/release/node-agent-webhook"
fi

if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
	SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
fi
pkgid="$("$CARGO" pkgid --quiet)"
build_args=(
	--build-arg "VERSION=${VERSION:-${pkgid##*[#@]}}"
	--build-arg "VCS_REF=${VCS_REF:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
	--build-arg "BUILD_DATE=${BUILD_DATE:-$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)}"
)
[[ -z "${SOURCE_URL+set}" ]] || build_args+=(--build-arg "SOURCE_URL=$SOURCE_URL")

mkdir -p "$OUT_DIR"
digest="$(python3 "$here/oci.py" --dockerfile Dockerfile --binary "$BINARY" --out "$archive" \
	--name "$IMG" --source-date-epoch "$SOURCE_DATE_EPOCH" "${build_args[@]}")"

if [[ "${VALIDATE:-1}" != 0 ]]; then
	# Go's build cache makes this a no-op when nothing changed.
	check="$root/_out/tools/image/bin/check"
	(cd "$here" && GOFLAGS=-mod=readonly nice -n 10 "${GO:-go}" build -trimpath -o "$check" ./check)
	layout="$(mktemp -d)"
	trap 'rm -rf "$layout"' EXIT
	tar -xf "$archive" -C "$layout"
	echo "image/build: read back: $("$check" "$archive" "$layout" "$IMG")" >&2
fi

echo "image/build: $IMG $(stat -c %s "$archive") bytes" >&2
echo "${archive#"$root"/}"
echo "$digest"
