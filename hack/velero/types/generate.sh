#!/usr/bin/env bash
# Writes testdata/velero-types/<tag>.json, the key trees of the ConfigMaps Velero reads, for every
# Velero release from v1.14.0 that the Go module proxy serves (`make velero-types`).
#
#   hack/velero/types/generate.sh             # every served release; existing files are kept
#   hack/velero/types/generate.sh v1.18.3     # only these releases (no probe)
#   FORCE=1 hack/velero/types/generate.sh     # regenerate existing files too
#
# A file is regenerated when it is missing, with FORCE=1, or when the generator (this module's
# Go files, go.mod and this script) changed since it was written here (_out/velero-types/<tag>/
# stamp). Each release gets a throw-away Go module in _out/velero-types/<tag>/ (git-ignored)
# that requires Velero at that tag and walks its config types with reflect; the first run
# compiles each distinct k8s.io dependency set once (minutes on 2 cores), the Go build cache
# keeps them. Then the README's probe and first-release sections are rewritten from the files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=$root/testdata/velero-types
work=$root/_out/velero-types
readme=$out/README.md
export GOTOOLCHAIN=local GOWORK=off
mkdir -p "$out" "$work/bin" "$work/probe"

log() { echo "velero-types: $*" >&2; }

(cd "$here" && nice go test ./... >&2 && nice go build -o "$work/bin/velero-types" ./cmd/velero-types)
stamp=$(cd "$here" && find . -type f \( -name '*.go' -o -name go.mod -o -name generate.sh \) | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1)

# The releases: `go list -m -versions` is incomplete on this workplace's proxy, so ask for each
# v1.MINOR.PATCH in turn until one is refused, then the next minor; a refused .0 ends it.
served=() refused=()
if [ $# -gt 0 ]; then
  served=("$@")
else
  minor=14
  while :; do
    patch=0
    while (cd "$work/probe" && go mod download -json "github.com/vmware-tanzu/velero@v1.$minor.$patch" >/dev/null 2>&1); do
      served+=("v1.$minor.$patch")
      patch=$((patch + 1))
    done
    refused+=("v1.$minor.$patch")
    [ "$patch" -gt 0 ] || break
    minor=$((minor + 1))
  done
  log "served by the module proxy: ${served[*]}"
  log "refused (where the probe stopped): ${refused[*]}"
fi

start=$(date +%s)
for tag in "${served[@]}"; do
  file=$out/$tag.json
  if [ -s "$file" ] && [ -z "${FORCE:-}" ] && { [ ! -f "$work/$tag/stamp" ] || [ "$(cat "$work/$tag/stamp")" = "$stamp" ]; }; then
    log "$tag: kept ${file#"$root"/}"
    continue
  fi
  log "$tag: generating"
  t0=$(date +%s)
  mkdir -p "$work/$tag"
  "$work/bin/velero-types" gen -tag "$tag" -out "$file" -work "$work/$tag" -tools "$here"
  echo "$stamp" >"$work/$tag/stamp"
  log "$tag: wrote ${file#"$root"/} in $(($(date +%s) - t0)) s"
done
log "done in $(($(date +%s) - start)) s"

# replace_section NAME TEXT: the README's lines between <!-- NAME:begin --> and <!-- NAME:end -->.
replace_section() {
  [ -f "$readme" ] || return 0
  local body
  body=$(mktemp)
  printf '%s\n' "$2" >"$body"
  awk -v begin="<!-- $1:begin -->" -v end="<!-- $1:end -->" -v body="$body" '
    $0 == begin { print; while ((getline line < body) > 0) print line; skip = 1; next }
    $0 == end { skip = 0 }
    !skip { print }' "$readme" >"$readme.tmp"
  mv "$readme.tmp" "$readme"
  rm -f "$body"
}

if [ ${#refused[@]} -gt 0 ]; then
  replace_section probe "Served: ${served[*]}.
Refused (where the probe stopped): ${refused[*]}."
fi
mapfile -t files < <(ls "$out"/v*.json)
replace_section first-release "$("$work/bin/velero-types" table "${files[@]}")"
