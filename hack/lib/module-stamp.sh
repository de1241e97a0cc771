# Sourced by the build scripts of the Go tools modules (hack/controlplane, hack/velero,
# hack/helm): a build is skipped while the module's go.mod and go.sum are what the last build
# was made from, and its binaries are there.

# module_stamp DIR: the sha256 of DIR's go.mod and go.sum.
module_stamp() {
  cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -d' ' -f1
}

# built_from STAMP_FILE STAMP BIN...: every BIN is executable and STAMP_FILE holds STAMP.
built_from() {
  local file=$1 stamp=$2 bin
  shift 2
  for bin in "$@"; do
    [ -x "$bin" ] || return 1
  done
  [ "$(cat "$file" 2>/dev/null)" = "$stamp" ]
}
